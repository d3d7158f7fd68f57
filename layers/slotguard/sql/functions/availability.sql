-- Availability: one interval's conflicts, and the free slots of a range, as a booking would
-- find them: its time padded by the calendar's buffers against the others' blocked time, and the
-- calendar's rules (hours, overrides, notice, horizon, durations; the slot step by default).
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

CREATE OR REPLACE FUNCTION slotguard.check_availability(
    p_org uuid, p_resource_id uuid, p_start timestamptz, p_duration_minutes integer
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_conflicts jsonb;
    v_rules jsonb;
    v_violation jsonb;
    v_end timestamptz := p_start + make_interval(mins => p_duration_minutes);
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    v_rules := slotguard._calendar_rules_of(p_org, p_resource_id);
    v_violation := CASE WHEN p_start < now()
                        THEN jsonb_build_object('code', 'in_the_past', 'message', 'the appointment starts in the past')
                        ELSE slotguard._rule_violation(v_rules, p_start, p_duration_minutes, now()) END;
    v_conflicts := slotguard._conflicts(
        p_org, p_resource_id,
        p_start - make_interval(mins => coalesce((v_rules->>'buffer_before_minutes')::integer, 0)),
        v_end + make_interval(mins => coalesce((v_rules->>'buffer_after_minutes')::integer, 0)));
    RETURN jsonb_build_object('available', (v_conflicts->>'conflict_count')::integer = 0 AND v_violation IS NULL,
                              'rule_violation', v_violation) || v_conflicts;
END
$$;

-- Free slots: bounded work. The busy time of the calendar in the range is read once (one
--    index scan) into a multirange; each candidate is then an in-memory test, not a probe.
--    At most 3000 candidates, steps of at least 5 minutes (the API refuses the same, 422).
CREATE OR REPLACE FUNCTION slotguard.find_free_slots(
    p_org uuid, p_resource_id uuid, p_from timestamptz, p_to timestamptz,
    p_duration_minutes integer, p_step_minutes integer, p_limit integer DEFAULT 1000
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_len interval := make_interval(mins => p_duration_minutes);
    v_step interval := make_interval(mins => p_step_minutes);
    v_busy tstzmultirange;
    v_rules jsonb;
    v_before interval;
    v_after interval;
    v_open tstzmultirange;
    v_earliest timestamptz;
    v_latest timestamptz;
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR p_duration_minutes IS NULL OR p_step_minutes IS NULL
       OR p_duration_minutes NOT BETWEEN 1 AND 1440 OR p_step_minutes NOT BETWEEN 5 AND 1440 THEN
        RAISE EXCEPTION 'duration_minutes must be 1..1440 and step_minutes 5..1440'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- (the API's filters: years 1969..2200 in any offset -12:00..+14:00)
    IF p_from < timestamptz '1968-12-31 10:00:00+00' OR p_to > timestamptz '2201-01-01 12:00:00+00' THEN
        RAISE EXCEPTION 'the search must lie inside the booking window' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_to - v_len >= p_from
       AND floor(extract(epoch FROM (p_to - v_len - p_from)) / extract(epoch FROM v_step)) + 1 > 3000 THEN
        RAISE EXCEPTION 'the search may test at most 3000 start times' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM slotguard._set_tenant(p_org);
    v_rules := slotguard._calendar_rules_of(p_org, p_resource_id);
    IF v_rules IS NOT NULL AND (
           p_duration_minutes < coalesce((v_rules->>'min_duration_minutes')::integer, 1)
           OR p_duration_minutes > coalesce((v_rules->>'max_duration_minutes')::integer, 1440)
           OR p_duration_minutes % coalesce((v_rules->>'duration_multiple_minutes')::integer, 1) <> 0) THEN
        RETURN '[]'::jsonb;  -- the calendar takes no appointment of this duration
    END IF;
    v_before := make_interval(mins => coalesce((v_rules->>'buffer_before_minutes')::integer, 0));
    v_after := make_interval(mins => coalesce((v_rules->>'buffer_after_minutes')::integer, 0));
    v_open := slotguard._open_hours(v_rules, p_from, p_to);
    v_earliest := now() + make_interval(mins => coalesce((v_rules->>'min_notice_minutes')::integer, 0));
    v_latest := now() + make_interval(days => (v_rules->>'max_horizon_days')::integer);
    SELECT coalesce(range_agg(tstzrange(coalesce(a.blocked_from, a.scheduled_at),
                                        coalesce(a.blocked_until, a.ends_at), '[)')), '{}'::tstzmultirange)
      INTO v_busy
      FROM slotguard.appointments a
     WHERE a.org_id = p_org
       AND coalesce(a.resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
           = coalesce(p_resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
       AND a.status = 'scheduled'
       AND tstzrange(coalesce(a.blocked_from, a.scheduled_at), coalesce(a.blocked_until, a.ends_at), '[)')
           && tstzrange(p_from - v_before, p_to + v_after, '[)');
    RETURN (
        SELECT coalesce(jsonb_agg(jsonb_build_object('start', s.start, 'end', s.start + v_len) ORDER BY s.start),
                        '[]'::jsonb)
        FROM (
            -- Candidates every step from the start of each open stretch (a calendar's local opening
            -- time, so a local 09:00 is offered whatever the offset that day), or from p_from
            -- where the calendar is open since before it (or has no hours).
            SELECT DISTINCT g.start
            FROM unnest(v_open) AS o(r),
                 LATERAL (SELECT CASE WHEN lower_inf(o.r) OR lower(o.r) >= p_from THEN coalesce(lower(o.r), p_from)
                                      ELSE lower(o.r) + v_step * ceil(extract(epoch FROM (p_from - lower(o.r)))
                                                                      / extract(epoch FROM v_step)) END AS first) f,
                 LATERAL generate_series(greatest(f.first, p_from), least(upper(o.r), p_to) - v_len, v_step) AS g(start)
            WHERE o.r && tstzrange(p_from, p_to, '[)')
              AND NOT v_busy && tstzrange(g.start - v_before, g.start + v_len + v_after, '[)')
              AND g.start >= now()  -- no bookings in the past, for every calendar
              AND (v_rules IS NULL OR (
                       g.start >= v_earliest
                       AND (v_latest IS NULL OR g.start <= v_latest)))
            ORDER BY g.start
            LIMIT greatest(1, least(coalesce(p_limit, 1000), 5000))
        ) s
    );
END
$$;

REVOKE EXECUTE ON FUNCTION
    slotguard.check_availability(uuid, uuid, timestamptz, integer),
    slotguard.find_free_slots(uuid, uuid, timestamptz, timestamptz, integer, integer, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.check_availability(uuid, uuid, timestamptz, integer),
    slotguard.find_free_slots(uuid, uuid, timestamptz, timestamptz, integer, integer, integer)
TO slotguard_app;

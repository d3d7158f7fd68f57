-- Calendar rules: set (admins, through the API), read, and their audit trail. A rule change takes
-- the org's settings lock exclusively; bookings hold it shared while they read and apply the
-- rules, so a change and the bookings serialize.
SET LOCAL ROLE slotguard_owner;

CREATE OR REPLACE FUNCTION slotguard._calendar_rules_json(r slotguard.calendar_rules) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$ SELECT jsonb_build_object('resource_id', r.resource_id, 'version', r.version, 'rules', r.rules,
                                'updated_at', r.updated_at, 'updated_by', r.updated_by) $$;

-- Replace a calendar's rules (version + 1, audited). Never touches an appointment: the answer
-- lists the calendar's future appointments that break the new rules (at most p_limit, with the
-- count): a rule each one breaks (_rule_violation's codes, or buffer_overlap when the new buffers
-- of two neighbours collide).
CREATE OR REPLACE FUNCTION slotguard.set_calendar_rules(
    p_org uuid, p_actor text, p_resource_id uuid, p_rules jsonb,
    p_lock_wait_ms integer DEFAULT 3000, p_limit integer DEFAULT 100
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_row slotguard.calendar_rules;
    v_gap interval;
    v_count bigint;
    v_items jsonb;
BEGIN
    IF p_org IS NULL OR p_actor IS NULL OR jsonb_typeof(p_rules) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'org, actor and a rules object are required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    BEGIN
        PERFORM now() AT TIME ZONE coalesce(p_rules->>'time_zone', 'UTC');
    EXCEPTION WHEN invalid_parameter_value THEN
        RAISE EXCEPTION 'time_zone: unknown time zone' USING ERRCODE = 'invalid_parameter_value';
    END;
    PERFORM slotguard._set_tenant(p_org), slotguard._set_lock_wait(p_lock_wait_ms);
    BEGIN
        PERFORM pg_advisory_xact_lock(slotguard.settings_lock_key(p_org));
    EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
        RETURN jsonb_build_object('status', 'busy');
    END;

    UPDATE slotguard.calendar_rules r
       SET version = r.version + 1, rules = p_rules, updated_at = now(), updated_by = p_actor
     WHERE r.org_id = p_org
       AND coalesce(r.resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
           = coalesce(p_resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        INSERT INTO slotguard.calendar_rules (org_id, resource_id, version, rules, updated_by)
        VALUES (p_org, p_resource_id, 1, p_rules, p_actor)
        RETURNING * INTO v_row;
    END IF;
    INSERT INTO slotguard.calendar_rules_audit (org_id, resource_id, version, actor, rules)
    VALUES (p_org, p_resource_id, v_row.version, p_actor, p_rules);

    v_gap := make_interval(mins => coalesce((p_rules->>'buffer_before_minutes')::integer, 0)
                                   + coalesce((p_rules->>'buffer_after_minutes')::integer, 0));
    WITH near AS (  -- the calendar's active appointments from a day ago on, with their neighbours
        SELECT a.*, lag(a.ends_at) OVER w AS prev_end, lead(a.scheduled_at) OVER w AS next_start
        FROM slotguard.appointments a
        WHERE a.org_id = p_org
          AND coalesce(a.resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
              = coalesce(p_resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
          AND a.status = 'scheduled' AND a.ends_at > now() - interval '1 day'
        WINDOW w AS (ORDER BY a.scheduled_at, a.id)
    ), broken AS (
        SELECT n.*, coalesce(
                   slotguard._rule_violation(p_rules, n.scheduled_at, n.duration_minutes, now()),
                   CASE WHEN n.prev_end + v_gap > n.scheduled_at OR n.ends_at + v_gap > n.next_start
                        THEN jsonb_build_object('code', 'buffer_overlap',
                                                'message', 'the new buffers collide with a neighbour''s') END
               ) AS violation
        FROM near n
        WHERE n.scheduled_at >= now()
    )
    SELECT count(*) FILTER (WHERE b.violation IS NOT NULL),
           coalesce((SELECT jsonb_agg(item ORDER BY ord) FROM (
               SELECT row_number() OVER (ORDER BY x.scheduled_at, x.id) AS ord,
                      jsonb_build_object('appointment', to_jsonb(x) - 'created_by' - 'cancelled_by' - 'prev_end'
                                                        - 'next_start' - 'violation')
                      || x.violation AS item
               FROM broken x WHERE x.violation IS NOT NULL
               ORDER BY x.scheduled_at, x.id
               LIMIT greatest(1, least(coalesce(p_limit, 100), 1000))) page), '[]'::jsonb)
      INTO v_count, v_items
      FROM broken b;

    RETURN jsonb_build_object('status', 'saved', 'calendar', slotguard._calendar_rules_json(v_row),
                              'violations', jsonb_build_object('count', v_count, 'items', v_items));
END
$$;

-- A calendar's rules (NULL: it has none).
CREATE OR REPLACE FUNCTION slotguard.get_calendar_rules(p_org uuid, p_resource_id uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_row slotguard.calendar_rules;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    SELECT * INTO v_row FROM slotguard.calendar_rules r
     WHERE r.org_id = p_org
       AND coalesce(r.resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
           = coalesce(p_resource_id, '00000000-0000-0000-0000-000000000000'::uuid);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN slotguard._calendar_rules_json(v_row);
END
$$;

-- The versions of a calendar's rules, bounded (issue 19: every answer under Lambda's 6 MB): the
-- newest ones whose rules add up to at most 2 MiB of JSON (at least the newest; one version's rules
-- are at most about 300 KB), oldest of those first, with the count of all versions.
CREATE OR REPLACE FUNCTION slotguard.calendar_rules_history(p_org uuid, p_resource_id uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_budget CONSTANT bigint := 2 * 1024 * 1024;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    RETURN (
        SELECT jsonb_build_object(
            'entries', coalesce(jsonb_agg(jsonb_build_object('version', h.version, 'actor', h.actor,
                                                             'at', h.at, 'rules', h.rules)
                                          ORDER BY h.version, h.id)
                                FILTER (WHERE h.newest = 1 OR h.running <= v_budget), '[]'::jsonb),
            'entry_count', count(*),
            'truncated', count(*) > count(*) FILTER (WHERE h.newest = 1 OR h.running <= v_budget))
        FROM (
            SELECT a.*, row_number() OVER w AS newest,
                   sum(octet_length(a.rules::text)) OVER (w ROWS UNBOUNDED PRECEDING) AS running
            FROM slotguard.calendar_rules_audit a
            WHERE a.org_id = p_org
              AND coalesce(a.resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
                  = coalesce(p_resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
            WINDOW w AS (ORDER BY a.version DESC, a.id DESC)
        ) h
    );
END
$$;

REVOKE EXECUTE ON FUNCTION
    slotguard._calendar_rules_json(slotguard.calendar_rules),
    slotguard.set_calendar_rules(uuid, text, uuid, jsonb, integer, integer),
    slotguard.get_calendar_rules(uuid, uuid),
    slotguard.calendar_rules_history(uuid, uuid)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.set_calendar_rules(uuid, text, uuid, jsonb, integer, integer),
    slotguard.get_calendar_rules(uuid, uuid),
    slotguard.calendar_rules_history(uuid, uuid)
TO slotguard_app;

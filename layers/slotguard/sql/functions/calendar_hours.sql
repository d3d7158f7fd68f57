-- A calendar's rules applied to an interval: its opening hours as instants, and the first rule
-- an appointment would break. `p_rules` is the calendar's rules document (calendar_rules.rules).
SET LOCAL ROLE slotguard_owner;

-- The calendar's open time around [p_from, p_to), as UTC instants. Hours are local wall times of
-- the calendar's time zone, per local date: the date's override if it has one, else its
-- weekday's intervals (no weekly_hours: open all day). A local 09:00-17:00 is 09:00-17:00 on
-- every date, across DST transitions. Each interval is clipped to its own local date, so a date
-- a zone skipped (Pacific/Apia, 2011-12-30) is never open. A local time that never occurs (the
-- spring gap) is moved forward by the gap (02:30 -> 03:30); one that occurs twice (autumn) is its
-- second occurrence (standard time), as PostgreSQL's AT TIME ZONE reads them. No rules, or rules
-- without hours: always open.
CREATE OR REPLACE FUNCTION slotguard._open_hours(p_rules jsonb, p_from timestamptz, p_to timestamptz)
RETURNS tstzmultirange
LANGUAGE sql STABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
    WITH cal AS (
        SELECT coalesce(p_rules->>'time_zone', 'UTC') AS tz,
               CASE WHEN jsonb_typeof(p_rules->'weekly_hours') = 'object' THEN p_rules->'weekly_hours' END AS weekly,
               CASE WHEN jsonb_typeof(p_rules->'date_overrides') = 'object' THEN p_rules->'date_overrides'
                    ELSE '{}'::jsonb END AS overrides
    ), days AS (
        SELECT g::date AS day, cal.tz,
               g AT TIME ZONE cal.tz AS day_start,
               (g + interval '1 day') AT TIME ZONE cal.tz AS day_end,
               coalesce(cal.overrides->(g::date::text),
                        CASE WHEN cal.weekly IS NULL THEN '[{"start": "00:00", "end": "24:00"}]'::jsonb
                             ELSE coalesce(cal.weekly->((ARRAY['monday', 'tuesday', 'wednesday', 'thursday', 'friday',
                                                                'saturday', 'sunday'])[extract(isodow FROM g)::integer]),
                                           '[]'::jsonb) END) AS hours
        FROM cal, generate_series(((p_from AT TIME ZONE cal.tz)::date - 1)::timestamp,
                                  ((p_to AT TIME ZONE cal.tz)::date + 1)::timestamp, interval '1 day') AS g
    ), spans AS (
        SELECT greatest((d.day + (iv->>'start')::time) AT TIME ZONE d.tz, d.day_start) AS s,
               least((d.day + (iv->>'end')::time) AT TIME ZONE d.tz, d.day_end) AS e
        FROM days d, jsonb_array_elements(d.hours) AS iv
    )
    SELECT CASE
        WHEN p_rules IS NULL OR ((SELECT weekly FROM cal) IS NULL AND (SELECT overrides FROM cal) = '{}'::jsonb)
            THEN tstzmultirange(tstzrange(NULL, NULL))
        ELSE coalesce((SELECT range_agg(tstzrange(s, e, '[)')) FROM spans WHERE s < e), '{}'::tstzmultirange)
    END
$$;

-- The first rule of p_rules that an appointment [p_start, p_start + p_duration) breaks at
-- p_now, as {code, message}; NULL when it breaks none (or there are no rules). Codes:
-- duration_not_allowed, too_soon (minimum notice), too_far (maximum horizon), outside_hours.
-- p_now NULL (a backfill) skips the rules relative to now (notice, horizon).
CREATE OR REPLACE FUNCTION slotguard._rule_violation(
    p_rules jsonb, p_start timestamptz, p_duration integer, p_now timestamptz
) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
DECLARE
    v_end timestamptz := p_start + make_interval(mins => p_duration);
    v_multiple integer := (p_rules->>'duration_multiple_minutes')::integer;
BEGIN
    IF p_rules IS NULL THEN
        RETURN NULL;
    END IF;
    IF p_duration < coalesce((p_rules->>'min_duration_minutes')::integer, 1)
       OR p_duration > coalesce((p_rules->>'max_duration_minutes')::integer, 1440)
       OR (v_multiple IS NOT NULL AND p_duration % v_multiple <> 0) THEN
        RETURN jsonb_build_object('code', 'duration_not_allowed',
            'message', 'this calendar does not take appointments of this duration');
    END IF;
    IF p_now IS NULL THEN
        NULL;
    ELSIF p_start < p_now + make_interval(mins => coalesce((p_rules->>'min_notice_minutes')::integer, 0)) THEN
        RETURN jsonb_build_object('code', 'too_soon', 'message', 'this calendar needs more notice');
    ELSIF p_rules->>'max_horizon_days' IS NOT NULL
       AND p_start > p_now + make_interval(days => (p_rules->>'max_horizon_days')::integer) THEN
        RETURN jsonb_build_object('code', 'too_far', 'message', 'this calendar does not book that far ahead');
    END IF;
    IF NOT slotguard._open_hours(p_rules, p_start, v_end) @> tstzrange(p_start, v_end, '[)') THEN
        RETURN jsonb_build_object('code', 'outside_hours', 'message', 'the appointment is outside the calendar''s hours');
    END IF;
    RETURN NULL;
END
$$;

-- A calendar's rules document (NULL: it has none), as the transaction's tenant sees it.
CREATE OR REPLACE FUNCTION slotguard._calendar_rules_of(p_org uuid, p_resource_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
    SELECT r.rules FROM slotguard.calendar_rules r
     WHERE r.org_id = p_org
       AND coalesce(r.resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
           = coalesce(p_resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
$$;

REVOKE EXECUTE ON FUNCTION
    slotguard._calendar_rules_of(uuid, uuid),
    slotguard._open_hours(jsonb, timestamptz, timestamptz),
    slotguard._rule_violation(jsonb, timestamptz, integer, timestamptz)
FROM PUBLIC;

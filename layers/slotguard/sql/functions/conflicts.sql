-- The active appointments overlapping an interval of a calendar (the 409's list), bounded:
-- {conflicts (at most 50), conflict_count, truncated}.
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

-- The appointments whose blocked time (their own, padded by their buffers) overlaps
-- [p_start, p_end) (the 409's list; booking, reschedule and check_availability read
-- it). PL/pgSQL, so its statement plan is prepared once per session: as a SQL function with a SET
-- clause (never inlined) it was planned anew on every call, the largest part of a hot slot's 409.
CREATE OR REPLACE FUNCTION slotguard._conflicts(
    p_org uuid, p_resource uuid, p_start timestamptz, p_end timestamptz, p_ignore uuid DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
DECLARE
    v_shown CONSTANT integer := 50;
BEGIN
    -- Bounded (issue 19): at most 50 appointments built as JSON (the first, in time order), all of
    -- them counted (an interval of at most a day overlaps at most 1,441 active ones).
    RETURN (
        SELECT jsonb_build_object(
            'conflicts', coalesce(jsonb_agg(slotguard._appointment_json(h.a) ORDER BY h.n)
                                  FILTER (WHERE h.n <= v_shown), '[]'::jsonb),
            'conflict_count', count(*),
            'truncated', count(*) > v_shown)
        FROM (
            SELECT a, row_number() OVER (ORDER BY a.scheduled_at, a.id) AS n
            FROM slotguard.appointments a
            WHERE a.org_id = p_org
              AND coalesce(a.resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
                  = coalesce(p_resource, '00000000-0000-0000-0000-000000000000'::uuid)
              AND tstzrange(coalesce(a.blocked_from, a.scheduled_at), coalesce(a.blocked_until, a.ends_at), '[)')
                  && tstzrange(p_start, p_end, '[)')
              AND a.status = 'scheduled'
              AND a.id IS DISTINCT FROM p_ignore
        ) h
    );
END
$$;

REVOKE EXECUTE ON FUNCTION
    slotguard._conflicts(uuid, uuid, timestamptz, timestamptz, uuid)
FROM PUBLIC;

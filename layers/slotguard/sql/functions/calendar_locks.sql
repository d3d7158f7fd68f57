-- The advisory-lock keys of a calendar interval and of an idempotency key, and the calendar lock.
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

-- The advisory-lock keys of a calendar interval: one per hour bucket it touches.
-- Two overlapping intervals always share a bucket, so they serialize; intervals in
-- different hours of one calendar do not wait for each other. Keys are derived here, from
-- (org, resource, bucket), so no caller can pass a wrong one. Callers lock them in
-- ascending key order, a single global order, so lockers never deadlock.
CREATE OR REPLACE FUNCTION slotguard.calendar_lock_keys(
    p_org uuid, p_resource uuid, p_start timestamptz, p_end timestamptz
) RETURNS SETOF bigint
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
    SELECT DISTINCT hashtextextended(
        'calendar:' || p_org::text || ':'
        || coalesce(p_resource, '00000000-0000-0000-0000-000000000000'::uuid)::text || ':' || bucket::text, 0)
    FROM generate_series(
        floor(extract(epoch FROM p_start) / 3600)::bigint,
        (ceil(extract(epoch FROM p_end) / 3600)::bigint - 1)
    ) AS bucket
    ORDER BY 1
$$;

CREATE OR REPLACE FUNCTION slotguard._lock_calendar(
    p_org uuid, p_resource uuid, p_start timestamptz, p_end timestamptz
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
DECLARE
    k bigint;
BEGIN
    FOR k IN SELECT * FROM slotguard.calendar_lock_keys(p_org, p_resource, p_start, p_end) ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION slotguard.idempotency_lock_key(p_org uuid, p_key text) RETURNS bigint
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$ SELECT hashtextextended('idempotency:' || p_org::text || ':' || p_key, 0) $$;

-- The key of an org's booking settings (its policy and its calendars' rules): a booking or a
-- reschedule holds it shared while it reads and applies them, a rule or policy change holds it
-- exclusively, so changes and bookings serialize. One key per org, not per calendar: one advisory
-- lock more per booking instead of two (each measured at about 30 us), at the price of a rule
-- change waiting for the org's bookings in flight (rule changes are rare). booking.sql inlines it.
CREATE OR REPLACE FUNCTION slotguard.settings_lock_key(p_org uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$ SELECT hashtextextended('settings:' || p_org::text, 0) $$;

REVOKE EXECUTE ON FUNCTION
    slotguard.calendar_lock_keys(uuid, uuid, timestamptz, timestamptz),
    slotguard._lock_calendar(uuid, uuid, timestamptz, timestamptz),
    slotguard.idempotency_lock_key(uuid, text),
    slotguard.settings_lock_key(uuid)
FROM PUBLIC;

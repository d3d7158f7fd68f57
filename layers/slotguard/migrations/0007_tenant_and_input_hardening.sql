-- Hardening: tenant isolation that does not rest on a settable GUC, a retention role of its
-- own, a booking window the table enforces, bounded slot searches, and a statement timeout
-- for the application. Runs as the administrator.
--
-- slotguard_janitor:   NOLOGIN. Owns the two cross-tenant maintenance functions (retention,
--                      and the local stack's re-enqueue of unfinished deliveries); the only
--                      role with a policy that sees every org's delivery-log rows and keys.
-- slotguard_retention: the retention cleanup's login (its own IAM database user in AWS). May
--                      execute purge_expired() and nothing else.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'slotguard_janitor') THEN
        CREATE ROLE slotguard_janitor NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'slotguard_retention') THEN
        CREATE ROLE slotguard_retention LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;
GRANT slotguard_janitor TO CURRENT_USER;
GRANT USAGE ON SCHEMA slotguard TO slotguard_janitor, slotguard_retention;

-- No statement of the application runs away with the shared database. The booking lock wait
-- (lock_timeout, at most 4 s) stays below it, so a busy calendar is still a clean 503 `busy`.
ALTER ROLE slotguard_app SET statement_timeout = '5s';
ALTER ROLE slotguard_app SET idle_in_transaction_session_timeout = '15s';
ALTER ROLE slotguard_retention SET statement_timeout = '60s';

SET LOCAL ROLE slotguard_owner;

-- 1. Every read goes through the API functions: the application role reads no table directly
--    (RLS trusted slotguard.org_id, which any session may set).
REVOKE ALL ON ALL TABLES IN SCHEMA slotguard FROM slotguard_app;

-- 2. The maintenance bypass depended on a GUC anyone could set; it now depends on the role.
DROP POLICY maintenance ON slotguard.webhook_delivery_log;
DROP POLICY maintenance ON slotguard.booking_idempotency_keys;
DROP FUNCTION slotguard.purge_expired(text, interval, integer);
DROP FUNCTION slotguard.unfinished_webhook_deliveries(integer);
DROP FUNCTION slotguard.maintenance_mode();

-- (UPDATE only because SELECT ... FOR UPDATE SKIP LOCKED needs it; no janitor function updates.)
GRANT SELECT, UPDATE, DELETE ON slotguard.webhook_delivery_log, slotguard.booking_idempotency_keys
    TO slotguard_janitor;
CREATE POLICY retention ON slotguard.webhook_delivery_log TO slotguard_janitor USING (true);
CREATE POLICY retention ON slotguard.booking_idempotency_keys TO slotguard_janitor USING (true);

-- 3. The booking window: the API takes times written with a year of 1970..2199 and an offset
--    of -12:00..+14:00, so every appointment lies in [1969-12-31 10:00, 2200-01-02 12:00] UTC
--    and each of its timestamps renders in any offset inside years 1..9999. NOT VALID:
--    a database holding rows outside it (written before this check) still migrates; new and
--    updated rows are checked.
ALTER TABLE slotguard.appointments ADD CONSTRAINT appointments_booking_window CHECK (
    scheduled_at >= timestamptz '1969-12-31 10:00:00+00' AND ends_at <= timestamptz '2200-01-02 12:00:00+00'
) NOT VALID;

-- 4. Idempotency keys live in two spaces, 'http:<Idempotency-Key>' and 'webhook:<webhook-id>',
--    so no HTTP client can reach a webhook's key. Existing keys move into their space.
ALTER TABLE slotguard.booking_idempotency_keys DROP CONSTRAINT booking_idempotency_keys_key_check;
ALTER TABLE slotguard.booking_idempotency_keys NO FORCE ROW LEVEL SECURITY;
UPDATE slotguard.booking_idempotency_keys SET key = 'http:' || key
 WHERE key NOT LIKE 'webhook:%' AND key NOT LIKE 'http:%';
ALTER TABLE slotguard.booking_idempotency_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE slotguard.booking_idempotency_keys ADD CONSTRAINT booking_idempotency_keys_scoped_key
    CHECK (key ~ '^(http|webhook):' AND char_length(key) BETWEEN 6 AND 300);

-- 5. Free slots: bounded work. The busy time of the calendar in the range is read once (one
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
    SELECT coalesce(range_agg(tstzrange(a.scheduled_at, a.ends_at, '[)')), '{}'::tstzmultirange)
      INTO v_busy
      FROM slotguard.appointments a
     WHERE a.org_id = p_org
       AND coalesce(a.resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
           = coalesce(p_resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
       AND a.status = 'scheduled'
       AND tstzrange(a.scheduled_at, a.ends_at, '[)') && tstzrange(p_from, p_to, '[)');
    RETURN (
        SELECT coalesce(jsonb_agg(jsonb_build_object('start', s.start, 'end', s.start + v_len) ORDER BY s.start),
                        '[]'::jsonb)
        FROM (
            SELECT g.start FROM generate_series(p_from, p_to - v_len, v_step) AS g(start)
            WHERE NOT v_busy && tstzrange(g.start, g.start + v_len, '[)')
            ORDER BY g.start
            LIMIT greatest(1, least(coalesce(p_limit, 1000), 5000))
        ) s
    );
END
$$;

-- 6. The maintenance functions, owned by the janitor (the owner never bypasses RLS again).
GRANT CREATE ON SCHEMA slotguard TO slotguard_janitor;
SET LOCAL ROLE slotguard_janitor;

-- Retention: delete at most p_batch expired rows per call (one short transaction each; the
-- caller loops). Intervals below the retention floors are refused: completed deliveries are
-- kept at least 1 day, failed and dead-lettered ones 7 days, idempotency keys the 24 hours
-- clients are promised.
CREATE FUNCTION slotguard.purge_expired(
    p_what text, p_older_than interval, p_batch integer DEFAULT 1000
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
DECLARE
    v_floor interval := CASE p_what WHEN 'completed' THEN interval '1 day'
                                    WHEN 'failed' THEN interval '7 days'
                                    WHEN 'idempotency_keys' THEN interval '24 hours' END;
    v_count integer;
BEGIN
    IF v_floor IS NULL THEN
        RAISE EXCEPTION 'unknown retention class %', p_what USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_older_than IS NULL OR p_older_than < v_floor THEN
        RAISE EXCEPTION 'retention for % must be at least %', p_what, v_floor
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_batch IS NULL OR p_batch NOT BETWEEN 1 AND 50000 THEN
        RAISE EXCEPTION 'batch must be 1..50000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_what = 'completed' THEN
        DELETE FROM slotguard.webhook_delivery_log WHERE id IN (
            SELECT id FROM slotguard.webhook_delivery_log
             WHERE status = 'completed'
               AND coalesce(completed_at, last_attempt_at, created_at) < now() - p_older_than
             LIMIT p_batch FOR UPDATE SKIP LOCKED);
    ELSIF p_what = 'failed' THEN
        DELETE FROM slotguard.webhook_delivery_log WHERE id IN (
            SELECT id FROM slotguard.webhook_delivery_log
             WHERE status IN ('failed', 'dead_letter')
               AND coalesce(completed_at, last_attempt_at, created_at) < now() - p_older_than
             LIMIT p_batch FOR UPDATE SKIP LOCKED);
    ELSE
        DELETE FROM slotguard.booking_idempotency_keys WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM slotguard.booking_idempotency_keys
             WHERE created_at < now() - p_older_than
             LIMIT p_batch FOR UPDATE SKIP LOCKED));
    END IF;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- Deliveries not yet completed or dead-lettered, across orgs: what must be re-enqueued when a
-- queue was lost (the local stack's in-memory emulator after a restart). Operators only.
CREATE FUNCTION slotguard.unfinished_webhook_deliveries(p_limit integer DEFAULT 10000) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('org_id', org_id, 'job_id', job_id, 'event_type', event_type,
                                                 'event_data', event_data, 'status', status) ORDER BY id),
                    '[]'::jsonb)
    FROM (SELECT * FROM slotguard.webhook_delivery_log
          WHERE status IN ('pending', 'processing', 'failed') ORDER BY id LIMIT p_limit) unfinished
$$;

REVOKE EXECUTE ON FUNCTION slotguard.purge_expired(text, interval, integer),
                           slotguard.unfinished_webhook_deliveries(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION slotguard.purge_expired(text, interval, integer) TO slotguard_retention;

RESET ROLE;
SET LOCAL ROLE slotguard_owner;
REVOKE CREATE ON SCHEMA slotguard FROM slotguard_janitor;
-- The booking lock wait stays below the role's statement timeout.
CREATE OR REPLACE FUNCTION slotguard._set_lock_wait(p_ms integer) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, slotguard, pg_temp
AS $$ SELECT set_config('lock_timeout', greatest(1, least(coalesce(p_ms, 3000), 4000))::text || 'ms', true) $$;

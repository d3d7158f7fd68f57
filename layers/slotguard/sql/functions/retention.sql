-- Maintenance functions, owned by slotguard_janitor.
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;
GRANT CREATE ON SCHEMA slotguard TO slotguard_janitor;  -- for CREATE OR REPLACE, until the end of this file
RESET ROLE;
SET LOCAL ROLE slotguard_janitor;

-- Retention: delete at most p_batch expired rows per call (one short transaction each; the
-- caller loops). Intervals below the retention floors are refused: completed deliveries are
-- kept at least 1 day, failed and dead-lettered ones 7 days, idempotency keys the 24 hours
-- clients are promised.
CREATE OR REPLACE FUNCTION slotguard.purge_expired(
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
CREATE OR REPLACE FUNCTION slotguard.unfinished_webhook_deliveries(p_limit integer DEFAULT 10000) RETURNS jsonb
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

-- Rows a redrive marked and never settled (it died between marking and settling: a timeout, a
-- killed container), in every org: a mark older than p_older_than_s (at least 120 s, well past
-- the API's timeout, so no live redrive holds it) goes back to what it was, a dead letter, listed
-- and redrivable. Whether SQS took its message is unknown; if it did, the processor's claim
-- acknowledges that copy without running it (a dead letter is final until redriven). At most
-- p_batch rows per call (the caller loops). Answers the number settled.
CREATE OR REPLACE FUNCTION slotguard.settle_stale_redrive_marks(
    p_older_than_s integer, p_batch integer DEFAULT 1000
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    IF p_older_than_s IS NULL OR p_older_than_s < 120 THEN
        RAISE EXCEPTION 'a redrive mark is settled after 120 s at the soonest' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_batch IS NULL OR p_batch NOT BETWEEN 1 AND 50000 THEN
        RAISE EXCEPTION 'batch must be 1..50000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE slotguard.webhook_delivery_log SET status = 'dead_letter', redrive_marked_at = NULL
     WHERE id IN (SELECT id FROM slotguard.webhook_delivery_log
                   WHERE redrive_marked_at IS NOT NULL AND status = 'pending'
                     AND redrive_marked_at < clock_timestamp() - make_interval(secs => p_older_than_s)
                   LIMIT p_batch FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

REVOKE EXECUTE ON FUNCTION
    slotguard.purge_expired(text, interval, integer),
    slotguard.unfinished_webhook_deliveries(integer),
    slotguard.settle_stale_redrive_marks(integer, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.purge_expired(text, interval, integer),
    slotguard.settle_stale_redrive_marks(integer, integer)
TO slotguard_retention;

RESET ROLE;
SET LOCAL ROLE slotguard_owner;
REVOKE CREATE ON SCHEMA slotguard FROM slotguard_janitor;

-- Webhook delivery log: one row per accepted webhook (org, job id), its state machine
-- pending -> processing -> completed | failed | dead_letter, and the functions that move it.
SET LOCAL ROLE slotguard_owner;

CREATE TABLE slotguard.webhook_delivery_log (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id           uuid NOT NULL,
    job_id           text NOT NULL CHECK (char_length(job_id) BETWEEN 1 AND 255),  -- the webhook-id
    event_type       text NOT NULL,
    event_data       jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'dead_letter')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer NOT NULL CHECK (max_attempts >= 1),
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    completed_at     timestamptz,
    error_message    text,
    processing_ms    integer CHECK (processing_ms >= 0),  -- the last attempt's duration
    outcome          text,   -- completed: applied | rejected | ignored; dead_letter: why
    outcome_detail   jsonb,
    -- a sender's webhook-id is unique within its org; two orgs may reuse one
    CONSTRAINT webhook_delivery_log_job UNIQUE (org_id, job_id)
);
-- Indexes for the metrics queries (all per org, over a time range, by status/type).
CREATE INDEX webhook_log_org_created ON slotguard.webhook_delivery_log (org_id, created_at);
CREATE INDEX webhook_log_org_status_attempt ON slotguard.webhook_delivery_log (org_id, status, last_attempt_at DESC);
CREATE INDEX webhook_log_org_type_created ON slotguard.webhook_delivery_log (org_id, event_type, created_at);
-- Retention: completed by completed_at, failed / dead-letter by last_attempt_at.
CREATE INDEX webhook_log_retention ON slotguard.webhook_delivery_log (status, coalesce(completed_at, last_attempt_at, created_at));

CREATE TABLE slotguard.webhook_redrive_audit (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id    uuid NOT NULL,
    job_id    text NOT NULL,
    actor     text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    attempts  integer NOT NULL
);
CREATE INDEX webhook_redrive_audit_org ON slotguard.webhook_redrive_audit (org_id, job_id);

ALTER TABLE slotguard.webhook_delivery_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE slotguard.webhook_delivery_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON slotguard.webhook_delivery_log
    USING (org_id = slotguard.current_org()) WITH CHECK (org_id = slotguard.current_org());
ALTER TABLE slotguard.webhook_redrive_audit ENABLE ROW LEVEL SECURITY;
ALTER TABLE slotguard.webhook_redrive_audit FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON slotguard.webhook_redrive_audit
    USING (org_id = slotguard.current_org()) WITH CHECK (org_id = slotguard.current_org());

-- Cross-tenant maintenance (retention cleanup) is allowed only to the owning role, i.e.
-- only inside the owner's SECURITY DEFINER functions, and only once they switch it on.
CREATE FUNCTION slotguard.maintenance_mode() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$ SELECT coalesce(current_setting('slotguard.maintenance', true), '') = 'on' $$;

CREATE POLICY maintenance ON slotguard.webhook_delivery_log TO slotguard_owner
    USING (slotguard.maintenance_mode());
CREATE POLICY maintenance ON slotguard.booking_idempotency_keys TO slotguard_owner
    USING (slotguard.maintenance_mode());

GRANT SELECT ON slotguard.webhook_delivery_log TO slotguard_app;

-- Claim a delivery for processing. Inserts the row on first sight; a row already
-- completed or dead-lettered is skipped (the SQS duplicate is acknowledged); a row being
-- processed by another worker is left alone unless its claim is older than p_stale_after_s
-- (that worker died). Every claim counts one attempt.
CREATE FUNCTION slotguard.claim_webhook_delivery(
    p_org uuid, p_job_id text, p_event_type text, p_event_data jsonb, p_max_attempts integer,
    p_stale_after_s integer DEFAULT 180
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_row slotguard.webhook_delivery_log;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    INSERT INTO slotguard.webhook_delivery_log
        (org_id, job_id, event_type, event_data, status, attempts, max_attempts, last_attempt_at)
    VALUES (p_org, p_job_id, p_event_type, p_event_data, 'processing', 1, p_max_attempts, clock_timestamp())
    ON CONFLICT ON CONSTRAINT webhook_delivery_log_job DO NOTHING
    RETURNING * INTO v_row;
    IF FOUND THEN
        RETURN jsonb_build_object('action', 'process', 'attempt', v_row.attempts, 'max_attempts', v_row.max_attempts);
    END IF;

    SELECT * INTO v_row FROM slotguard.webhook_delivery_log
     WHERE org_id = p_org AND job_id = p_job_id FOR UPDATE;
    IF v_row.status IN ('completed', 'dead_letter') THEN
        RETURN jsonb_build_object('action', 'skip', 'status', v_row.status, 'attempt', v_row.attempts);
    END IF;
    IF v_row.status = 'processing'
       AND v_row.last_attempt_at > clock_timestamp() - make_interval(secs => p_stale_after_s) THEN
        RETURN jsonb_build_object('action', 'in_progress', 'attempt', v_row.attempts);
    END IF;
    -- max_attempts stays the row's own: a redriven delivery carries a fresh budget (0005).
    UPDATE slotguard.webhook_delivery_log
       SET status = 'processing', attempts = attempts + 1, last_attempt_at = clock_timestamp()
     WHERE id = v_row.id
    RETURNING * INTO v_row;
    RETURN jsonb_build_object('action', 'process', 'attempt', v_row.attempts, 'max_attempts', v_row.max_attempts);
END
$$;

-- Mark a claimed delivery completed. Called in the same transaction as the event's effect,
-- so both commit or neither does. Refused (returns false) unless this claim still owns the
-- row: a late finisher whose delivery was re-claimed or dead-lettered must not complete it.
CREATE FUNCTION slotguard.complete_webhook_delivery(
    p_org uuid, p_job_id text, p_attempt integer, p_outcome text, p_detail jsonb, p_processing_ms integer
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    UPDATE slotguard.webhook_delivery_log
       SET status = 'completed', completed_at = clock_timestamp(), outcome = p_outcome,
           outcome_detail = p_detail, processing_ms = greatest(p_processing_ms, 0), error_message = NULL
     WHERE org_id = p_org AND job_id = p_job_id AND status = 'processing' AND attempts = p_attempt;
    RETURN FOUND;
END
$$;

-- Record a failed attempt: 'failed' (will be retried) or 'dead_letter' (given up).
CREATE FUNCTION slotguard.fail_webhook_delivery(
    p_org uuid, p_job_id text, p_attempt integer, p_error text, p_dead boolean, p_processing_ms integer,
    p_outcome text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    UPDATE slotguard.webhook_delivery_log
       SET status = CASE WHEN p_dead THEN 'dead_letter' ELSE 'failed' END,
           error_message = left(p_error, 2000), processing_ms = greatest(p_processing_ms, 0),
           outcome = coalesce(p_outcome, CASE WHEN p_dead THEN 'gave_up' END)
     WHERE org_id = p_org AND job_id = p_job_id AND status = 'processing' AND attempts = p_attempt;
    RETURN FOUND;
END
$$;

-- The dead-letter reconciler: a message that reached the SQS DLQ (the processor crashed or
-- timed out too often) becomes a dead_letter row, inserted if the webhook was never logged.
-- A completed row stays completed. Idempotent.
CREATE FUNCTION slotguard.dead_letter_webhook_delivery(
    p_org uuid, p_job_id text, p_event_type text, p_event_data jsonb, p_max_attempts integer,
    p_receive_count integer, p_error text
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_row slotguard.webhook_delivery_log;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    INSERT INTO slotguard.webhook_delivery_log
        (org_id, job_id, event_type, event_data, status, attempts, max_attempts, last_attempt_at,
         error_message, outcome)
    VALUES (p_org, p_job_id, p_event_type, p_event_data, 'dead_letter', greatest(p_receive_count, 0),
            p_max_attempts, clock_timestamp(), p_error, 'redrive_policy')
    ON CONFLICT ON CONSTRAINT webhook_delivery_log_job DO NOTHING
    RETURNING * INTO v_row;
    IF FOUND THEN
        RETURN jsonb_build_object('status', 'dead_letter', 'created', true);
    END IF;
    UPDATE slotguard.webhook_delivery_log
       SET status = 'dead_letter', last_attempt_at = clock_timestamp(),
           error_message = coalesce(error_message || ' | ', '') || p_error, outcome = 'redrive_policy',
           attempts = greatest(attempts, p_receive_count)
     WHERE org_id = p_org AND job_id = p_job_id AND status IN ('pending', 'processing', 'failed')
    RETURNING * INTO v_row;
    IF FOUND THEN
        RETURN jsonb_build_object('status', 'dead_letter', 'created', false);
    END IF;
    SELECT * INTO v_row FROM slotguard.webhook_delivery_log WHERE org_id = p_org AND job_id = p_job_id;
    RETURN jsonb_build_object('status', v_row.status, 'created', false);
END
$$;

-- Retention: delete at most p_batch expired rows per call (one short transaction each;
-- the caller loops), so a large backlog never holds long locks.
CREATE FUNCTION slotguard.purge_expired(
    p_what text, p_older_than interval, p_batch integer DEFAULT 1000
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM set_config('slotguard.maintenance', 'on', true);
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
    ELSIF p_what = 'idempotency_keys' THEN
        DELETE FROM slotguard.booking_idempotency_keys WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM slotguard.booking_idempotency_keys
             WHERE created_at < now() - p_older_than
             LIMIT p_batch FOR UPDATE SKIP LOCKED));
    ELSE
        RAISE EXCEPTION 'unknown retention class %', p_what USING ERRCODE = 'invalid_parameter_value';
    END IF;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM set_config('slotguard.maintenance', 'off', true);
    RETURN v_count;
END
$$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA slotguard FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.claim_webhook_delivery(uuid, text, text, jsonb, integer, integer),
    slotguard.complete_webhook_delivery(uuid, text, integer, text, jsonb, integer),
    slotguard.fail_webhook_delivery(uuid, text, integer, text, boolean, integer, text),
    slotguard.dead_letter_webhook_delivery(uuid, text, text, jsonb, integer, integer, text),
    slotguard.purge_expired(text, interval, integer),
    slotguard.maintenance_mode()
TO slotguard_app;

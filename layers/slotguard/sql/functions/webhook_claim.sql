-- Claiming one webhook delivery for processing: inserted as `processing` on first sight; a
-- completed or dead-lettered row is `skip`; a message reusing the webhook id with another type or
-- payload is `skip` (status `mismatch`) and never touches the row; a fresh claim of another
-- worker is `in_progress`, and so is a failed row whose backoff has not ended (status `backoff`,
-- with `retry_after_s`); otherwise (pending, failed, or a stale claim) it is claimed under a
-- new token. A claim spends no attempt: `attempt` is the one it will be if it reaches an outcome.
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

CREATE OR REPLACE FUNCTION slotguard.claim_webhook_delivery(
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
        (org_id, job_id, event_type, event_data, status, attempts, max_attempts, last_attempt_at, claim_token)
    VALUES (p_org, p_job_id, p_event_type, p_event_data, 'processing', 0, p_max_attempts, clock_timestamp(),
            gen_random_uuid())
    ON CONFLICT ON CONSTRAINT webhook_delivery_log_job DO NOTHING
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        SELECT * INTO v_row FROM slotguard.webhook_delivery_log
         WHERE org_id = p_org AND job_id = p_job_id FOR UPDATE;
        IF v_row.status IN ('completed', 'dead_letter') THEN
            RETURN jsonb_build_object('action', 'skip', 'status', v_row.status, 'attempt', v_row.attempts);
        END IF;
        -- The webhook id names one event: a message reusing it with another type or payload is
        -- not that event (a sender's bug, or a replay of the id with new content). It is answered
        -- `skip`, so its content is never applied and never completes the event's row; the
        -- event's own message still completes it.
        IF v_row.event_type IS DISTINCT FROM p_event_type OR v_row.event_data IS DISTINCT FROM p_event_data THEN
            RETURN jsonb_build_object('action', 'skip', 'status', 'mismatch', 'attempt', v_row.attempts);
        END IF;
        IF v_row.status = 'processing'
           AND v_row.last_attempt_at > clock_timestamp() - make_interval(secs => p_stale_after_s) THEN
            RETURN jsonb_build_object('action', 'in_progress', 'attempt', v_row.attempts + 1);
        END IF;
        -- A failed attempt's backoff (retry_at, 0016) holds for every copy of the message: one
        -- arriving before it ends is told to wait the rest of it.
        IF v_row.status = 'failed' AND v_row.retry_at > clock_timestamp() THEN
            RETURN jsonb_build_object('action', 'in_progress', 'status', 'backoff', 'attempt', v_row.attempts + 1,
                                      'retry_after_s', ceil(extract(epoch FROM v_row.retry_at - clock_timestamp()))::integer);
        END IF;
        -- max_attempts stays the row's own: a redriven delivery carries a fresh budget (0005).
        UPDATE slotguard.webhook_delivery_log
           SET status = 'processing', last_attempt_at = clock_timestamp(), claim_token = gen_random_uuid()
         WHERE id = v_row.id
        RETURNING * INTO v_row;
    END IF;
    RETURN jsonb_build_object('action', 'process', 'attempt', v_row.attempts + 1,
                              'max_attempts', v_row.max_attempts, 'token', v_row.claim_token);
END
$$;

REVOKE EXECUTE ON FUNCTION
    slotguard.claim_webhook_delivery(uuid, text, text, jsonb, integer, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.claim_webhook_delivery(uuid, text, text, jsonb, integer, integer)
TO slotguard_app;

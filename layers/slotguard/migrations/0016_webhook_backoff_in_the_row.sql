-- A retriable failure's backoff is kept in the row, so every copy of the message honours it
-- (issue 19, item 8).
--
-- The backoff lived only in the failed message's visibility. A second copy of the same webhook
-- (the sender posted it twice; SQS delivered a message twice) in the same batch, or arriving
-- meanwhile, claimed the `failed` row at once and ran the handler again, skipping the backoff
-- the first copy had just recorded. Now:
--   * fail_webhook_delivery() has an 8-argument form taking p_retry_after_s: a `failed` row
--     records `retry_at` = now + that backoff (NULL when dead-lettered). The 7-argument form
--     (0010) stays for the previous release's code and records no retry_at.
--   * claim_webhook_delivery() (0012, otherwise unchanged) answers a `failed` row whose
--     retry_at is still ahead {action: in_progress, status: backoff, retry_after_s}: the
--     processor hides that copy for the rest of the backoff instead of running it. The
--     previous release's processor reads it as in_progress, as before (hand the copy back).
-- The failed message itself becomes visible again at its backoff's end, after retry_at (its
-- visibility is set once the failure is recorded), so its own retry is never held back.
SET LOCAL ROLE slotguard_owner;

ALTER TABLE slotguard.webhook_delivery_log ADD COLUMN retry_at timestamptz;

CREATE FUNCTION slotguard.fail_webhook_delivery(
    p_org uuid, p_job_id text, p_token uuid, p_error text, p_dead boolean, p_processing_ms integer,
    p_outcome text, p_retry_after_s integer
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    UPDATE slotguard.webhook_delivery_log
       SET status = CASE WHEN p_dead THEN 'dead_letter' ELSE 'failed' END,
           attempts = attempts + 1, claim_token = NULL,
           error_message = left(p_error, 2000), processing_ms = greatest(p_processing_ms, 0),
           outcome = coalesce(p_outcome, CASE WHEN p_dead THEN 'gave_up' END),
           retry_at = CASE WHEN p_dead OR p_retry_after_s IS NULL THEN NULL
                           ELSE clock_timestamp() + make_interval(secs => greatest(p_retry_after_s, 0)) END
     WHERE org_id = p_org AND job_id = p_job_id AND status = 'processing' AND claim_token = p_token;
    RETURN FOUND;
END
$$;

-- As 0012, plus the backoff check (marked below).
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
        IF v_row.event_type IS DISTINCT FROM p_event_type OR v_row.event_data IS DISTINCT FROM p_event_data THEN
            RETURN jsonb_build_object('action', 'skip', 'status', 'mismatch', 'attempt', v_row.attempts);
        END IF;
        IF v_row.status = 'processing'
           AND v_row.last_attempt_at > clock_timestamp() - make_interval(secs => p_stale_after_s) THEN
            RETURN jsonb_build_object('action', 'in_progress', 'attempt', v_row.attempts + 1);
        END IF;
        -- 0016: a failed attempt's backoff holds for every copy of the message.
        IF v_row.status = 'failed' AND v_row.retry_at > clock_timestamp() THEN
            RETURN jsonb_build_object('action', 'in_progress', 'status', 'backoff', 'attempt', v_row.attempts + 1,
                                      'retry_after_s', ceil(extract(epoch FROM v_row.retry_at - clock_timestamp()))::integer);
        END IF;
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
    slotguard.fail_webhook_delivery(uuid, text, uuid, text, boolean, integer, text, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.fail_webhook_delivery(uuid, text, uuid, text, boolean, integer, text, integer)
TO slotguard_app;

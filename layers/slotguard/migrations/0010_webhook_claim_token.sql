-- Only a handler run that reaches an outcome spends an attempt (issue 10, item 2).
--
-- Until now every claim counted one attempt, so a claim whose handler never got to an outcome
-- spent one of the delivery's max_attempts all the same: the database went away before or
-- while the effect was applied, the invocation died (crash, timeout) before it reached a
-- record its batch claim (0009) had claimed. Now a claim is a token (claim_token, a fresh uuid
-- per claim; last_attempt_at stays the claim's time, which staleness is measured from) and
-- `attempts` counts recorded outcomes: complete_webhook_delivery() and fail_webhook_delivery()
-- each add one, under the token they were given. So:
--   * a claim spends nothing; its answer's `attempt` is the attempt it will be if it reaches
--     an outcome (attempts + 1), and a stale claim is re-claimed, under a new token, as the
--     same attempt;
--   * a late finisher whose claim was taken over (re-claimed once stale, dead-lettered by the
--     reconciler, completed by the new owner) holds an old token: it can neither complete nor
--     fail the delivery, and its effect rolls back with the refused completion;
--   * release_webhook_delivery() gives a claim back unspent (the database went away under
--     the handler and is back): the row returns to what it was before the claim.
-- A delivery whose handler never reaches an outcome (it crashes the whole function every
-- time) is bounded by the queue's redrive policy (maxReceiveCount receives), after which the
-- reconciler makes it a dead_letter row (0004, unchanged: attempts = greatest(attempts,
-- receive count)).
--
-- complete/fail take the token instead of the attempt number (the old signatures are
-- dropped: a processor of the previous release, running while a deploy applies this, fails
-- those calls, so its effect rolls back and SQS redelivers the record to the new release).
SET LOCAL ROLE slotguard_owner;

ALTER TABLE slotguard.webhook_delivery_log ADD COLUMN claim_token uuid;
-- Claims taken before this migration have no token: they can no longer be completed (their
-- processor is the previous release), so they are re-claimed once stale, as if it had died.

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
        IF v_row.status = 'processing'
           AND v_row.last_attempt_at > clock_timestamp() - make_interval(secs => p_stale_after_s) THEN
            RETURN jsonb_build_object('action', 'in_progress', 'attempt', v_row.attempts + 1);
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

DROP FUNCTION slotguard.complete_webhook_delivery(uuid, text, integer, text, jsonb, integer);
DROP FUNCTION slotguard.fail_webhook_delivery(uuid, text, integer, text, boolean, integer, text);

-- Mark a claimed delivery completed: one attempt, the one that succeeded. Called in the same
-- transaction as the event's effect, so both commit or neither does. Refused (false) unless
-- p_token is still the row's claim.
CREATE FUNCTION slotguard.complete_webhook_delivery(
    p_org uuid, p_job_id text, p_token uuid, p_outcome text, p_detail jsonb, p_processing_ms integer
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    UPDATE slotguard.webhook_delivery_log
       SET status = 'completed', attempts = attempts + 1, claim_token = NULL,
           completed_at = clock_timestamp(), outcome = p_outcome, outcome_detail = p_detail,
           processing_ms = greatest(p_processing_ms, 0), error_message = NULL
     WHERE org_id = p_org AND job_id = p_job_id AND status = 'processing' AND claim_token = p_token;
    RETURN FOUND;
END
$$;

-- Record a failed attempt (the handler ran and failed): 'failed' (will be retried) or
-- 'dead_letter' (given up). Refused (false) unless p_token is still the row's claim.
CREATE FUNCTION slotguard.fail_webhook_delivery(
    p_org uuid, p_job_id text, p_token uuid, p_error text, p_dead boolean, p_processing_ms integer,
    p_outcome text DEFAULT NULL
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
           outcome = coalesce(p_outcome, CASE WHEN p_dead THEN 'gave_up' END)
     WHERE org_id = p_org AND job_id = p_job_id AND status = 'processing' AND claim_token = p_token;
    RETURN FOUND;
END
$$;

-- Give a claim back unspent: its handler never reached an outcome (the database went away
-- under it). The row is again what it was before the claim ('failed' after earlier failed
-- attempts, else 'pending') and any copy of the message may claim it at once. Refused (false)
-- unless p_token is still the row's claim (e.g. the effect's commit did reach the database).
CREATE FUNCTION slotguard.release_webhook_delivery(p_org uuid, p_job_id text, p_token uuid)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    UPDATE slotguard.webhook_delivery_log
       SET status = CASE WHEN attempts > 0 THEN 'failed' ELSE 'pending' END, claim_token = NULL
     WHERE org_id = p_org AND job_id = p_job_id AND status = 'processing' AND claim_token = p_token;
    RETURN FOUND;
END
$$;

REVOKE EXECUTE ON FUNCTION
    slotguard.complete_webhook_delivery(uuid, text, uuid, text, jsonb, integer),
    slotguard.fail_webhook_delivery(uuid, text, uuid, text, boolean, integer, text),
    slotguard.release_webhook_delivery(uuid, text, uuid)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.complete_webhook_delivery(uuid, text, uuid, text, jsonb, integer),
    slotguard.fail_webhook_delivery(uuid, text, uuid, text, boolean, integer, text),
    slotguard.release_webhook_delivery(uuid, text, uuid)
TO slotguard_app;

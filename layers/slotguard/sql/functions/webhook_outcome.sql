-- A claimed delivery's outcome: completed, failed, or given back unspent.
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

-- Mark a claimed delivery completed: one attempt, the one that succeeded. Called in the same
-- transaction as the event's effect, so both commit or neither does. Refused (false) unless
-- p_token is still the row's claim.
CREATE OR REPLACE FUNCTION slotguard.complete_webhook_delivery(
    p_org uuid, p_job_id text, p_token uuid, p_outcome text, p_detail jsonb, p_processing_ms integer
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
DECLARE
    v_id bigint;
    v_attempt integer;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    UPDATE slotguard.webhook_delivery_log
       SET status = 'completed', attempts = attempts + 1, claim_token = NULL,
           completed_at = clock_timestamp(), outcome = p_outcome, outcome_detail = p_detail,
           processing_ms = greatest(p_processing_ms, 0), error_message = NULL
     WHERE org_id = p_org AND job_id = p_job_id AND status = 'processing' AND claim_token = p_token
    RETURNING id, attempts INTO v_id, v_attempt;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO slotguard.webhook_delivery_attempts (delivery_id, org_id, attempt, result, processing_ms)
    VALUES (v_id, p_org, v_attempt, 'completed', greatest(p_processing_ms, 0));
    RETURN true;
END
$$;

-- fail_webhook_delivery(), recording when the backoff of a retriable failure ends (`retry_at`,
-- 0016): every copy of the message is held back until then (claim_webhook_delivery).
-- fail_webhook_delivery() stays for the previous release's code and records no retry_at.
CREATE OR REPLACE FUNCTION slotguard.fail_webhook_delivery_with_backoff(
    p_org uuid, p_job_id text, p_token uuid, p_error text, p_dead boolean, p_processing_ms integer,
    p_outcome text, p_retry_after_s integer
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
DECLARE
    v_id bigint;
    v_attempt integer;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    UPDATE slotguard.webhook_delivery_log
       SET status = CASE WHEN p_dead THEN 'dead_letter' ELSE 'failed' END,
           attempts = attempts + 1, claim_token = NULL,
           error_message = left(p_error, 2000), processing_ms = greatest(p_processing_ms, 0),
           outcome = coalesce(p_outcome, CASE WHEN p_dead THEN 'gave_up' END),
           retry_at = CASE WHEN p_dead OR p_retry_after_s IS NULL THEN NULL
                           ELSE clock_timestamp() + make_interval(secs => greatest(p_retry_after_s, 0)) END
     WHERE org_id = p_org AND job_id = p_job_id AND status = 'processing' AND claim_token = p_token
    RETURNING id, attempts INTO v_id, v_attempt;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- Each attempt's own row (the webhook lookup's history: 0030).
    INSERT INTO slotguard.webhook_delivery_attempts
        (delivery_id, org_id, attempt, result, error_message, processing_ms)
    VALUES (v_id, p_org, v_attempt, CASE WHEN p_dead THEN 'dead_letter' ELSE 'failed' END,
            left(p_error, 2000), greatest(p_processing_ms, 0));
    RETURN true;
END
$$;

-- Record a failed attempt (the handler ran and failed): 'failed' (will be retried) or
-- 'dead_letter' (given up). Refused (false) unless p_token is still the row's claim. The previous
-- release's form: fail_webhook_delivery_with_backoff() above with no backoff recorded.
CREATE OR REPLACE FUNCTION slotguard.fail_webhook_delivery(
    p_org uuid, p_job_id text, p_token uuid, p_error text, p_dead boolean, p_processing_ms integer,
    p_outcome text DEFAULT NULL
) RETURNS boolean
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
    SELECT slotguard.fail_webhook_delivery_with_backoff(
        p_org, p_job_id, p_token, p_error, p_dead, p_processing_ms, p_outcome, NULL)
$$;

-- Give a claim back unspent: its handler never reached an outcome (the database went away
-- under it). The row is again what it was before the claim ('failed' after earlier failed
-- attempts, else 'pending') and any copy of the message may claim it at once. Refused (false)
-- unless p_token is still the row's claim (e.g. the effect's commit did reach the database).
CREATE OR REPLACE FUNCTION slotguard.release_webhook_delivery(p_org uuid, p_job_id text, p_token uuid)
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
    slotguard.fail_webhook_delivery_with_backoff(uuid, text, uuid, text, boolean, integer, text, integer),
    slotguard.release_webhook_delivery(uuid, text, uuid)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.complete_webhook_delivery(uuid, text, uuid, text, jsonb, integer),
    slotguard.fail_webhook_delivery(uuid, text, uuid, text, boolean, integer, text),
    slotguard.fail_webhook_delivery_with_backoff(uuid, text, uuid, text, boolean, integer, text, integer),
    slotguard.release_webhook_delivery(uuid, text, uuid)
TO slotguard_app;

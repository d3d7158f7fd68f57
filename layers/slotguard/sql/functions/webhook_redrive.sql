-- The dead-letter redrive and its audit trail.
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

-- Put dead-letter deliveries back to 'pending' (attempts kept, a fresh retry budget) and
-- audit who did it. Row locks are held until the caller's transaction ends: the caller
-- re-enqueues the returned deliveries inside that same transaction, so a processor that
-- receives one waits for the commit and then sees 'pending'; if enqueueing fails, the
-- rollback leaves them dead-lettered.
CREATE OR REPLACE FUNCTION slotguard.redrive_webhook_deliveries(
    p_org uuid, p_actor text, p_job_ids text[], p_retry_budget integer
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_items jsonb;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    WITH redriven AS (
        UPDATE slotguard.webhook_delivery_log l
           SET status = 'pending', max_attempts = l.attempts + greatest(p_retry_budget, 1),
               error_message = NULL, outcome = NULL, completed_at = NULL
         WHERE l.org_id = p_org AND l.status = 'dead_letter'
           AND (p_job_ids IS NULL OR l.job_id = ANY (p_job_ids))
        RETURNING l.job_id, l.event_type, l.event_data, l.attempts
    ), audited AS (
        INSERT INTO slotguard.webhook_redrive_audit (org_id, job_id, actor, attempts)
        SELECT p_org, job_id, p_actor, attempts FROM redriven
        RETURNING job_id
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('job_id', r.job_id, 'event_type', r.event_type,
                                                 'event_data', r.event_data) ORDER BY r.job_id), '[]'::jsonb)
      INTO v_items
      FROM redriven r;
    RETURN v_items;
END
$$;

CREATE OR REPLACE FUNCTION slotguard.webhook_redrive_history(p_org uuid, p_job_id text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    RETURN coalesce((SELECT jsonb_agg(jsonb_build_object('actor', actor, 'at', at, 'attempts', attempts) ORDER BY id)
                     FROM slotguard.webhook_redrive_audit WHERE org_id = p_org AND job_id = p_job_id), '[]'::jsonb);
END
$$;

REVOKE EXECUTE ON FUNCTION
    slotguard.redrive_webhook_deliveries(uuid, text, text[], integer),
    slotguard.webhook_redrive_history(uuid, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.redrive_webhook_deliveries(uuid, text, text[], integer),
    slotguard.webhook_redrive_history(uuid, text)
TO slotguard_app;

-- Redrive in bounded batches (issue 19, item 2; the schema: migration 0015): mark, send, settle.
-- Step 1. Answers [{id, job_id, event_type, event_data, resend}] in id order: first the org's rows
-- an earlier redrive marked and never settled (resend: true), then dead letters after p_after.
CREATE OR REPLACE FUNCTION slotguard.redrive_mark_webhook_deliveries(
    p_org uuid, p_job_ids text[], p_after bigint, p_limit integer, p_retry_budget integer,
    p_unconfirmed_after_s integer
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_limit integer := greatest(1, least(coalesce(p_limit, 10), 100));
    v_items jsonb;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    WITH unsettled AS (
        SELECT l.id, true AS resend FROM slotguard.webhook_delivery_log l
         WHERE l.org_id = p_org AND l.redrive_marked_at IS NOT NULL AND l.status = 'pending'
           AND l.redrive_marked_at < clock_timestamp() - make_interval(secs => greatest(p_unconfirmed_after_s, 1))
           AND (p_job_ids IS NULL OR l.job_id = ANY (p_job_ids))
         ORDER BY l.id LIMIT v_limit FOR UPDATE SKIP LOCKED
    ), dead AS (
        SELECT l.id, false AS resend FROM slotguard.webhook_delivery_log l
         WHERE l.org_id = p_org AND l.status = 'dead_letter' AND l.id > coalesce(p_after, 0)
           AND (p_job_ids IS NULL OR l.job_id = ANY (p_job_ids))
         ORDER BY l.id LIMIT v_limit FOR UPDATE SKIP LOCKED
    ), picked AS (
        SELECT * FROM (SELECT * FROM unsettled UNION ALL SELECT * FROM dead) both_kinds
         ORDER BY resend DESC, id LIMIT v_limit
    ), marked AS (
        UPDATE slotguard.webhook_delivery_log l
           SET status = 'pending', redrive_marked_at = clock_timestamp(),
               max_attempts = CASE WHEN p.resend THEN l.max_attempts
                                   ELSE l.attempts + greatest(p_retry_budget, 1) END
          FROM picked p
         WHERE l.id = p.id
        RETURNING l.id, l.job_id, l.event_type, l.event_data, p.resend
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('id', m.id, 'job_id', m.job_id, 'event_type', m.event_type,
                                                 'event_data', m.event_data, 'resend', m.resend)
                              ORDER BY m.resend DESC, m.id), '[]'::jsonb)
      INTO v_items
      FROM marked m;
    RETURN v_items;
END
$$;

-- Step 3. p_sent: job ids SQS took (their mark cleared, their old error cleared while they are
-- still pending, audited as redriven by p_actor); p_unsent: job ids it refused, back to
-- dead_letter if still pending under the mark. Answers the number of rows audited.
CREATE OR REPLACE FUNCTION slotguard.redrive_settle_webhook_deliveries(
    p_org uuid, p_actor text, p_sent text[], p_unsent text[]
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_audited integer;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    UPDATE slotguard.webhook_delivery_log
       SET status = 'dead_letter', redrive_marked_at = NULL
     WHERE org_id = p_org AND job_id = ANY (coalesce(p_unsent, '{}')) AND status = 'pending'
       AND redrive_marked_at IS NOT NULL;
    WITH sent AS (
        UPDATE slotguard.webhook_delivery_log l
           SET redrive_marked_at = NULL, redriven_at = clock_timestamp(),
               -- a row the processor already picked up keeps what it recorded since
               error_message = CASE WHEN l.status = 'pending' THEN NULL ELSE l.error_message END,
               outcome = CASE WHEN l.status = 'pending' THEN NULL ELSE l.outcome END,
               completed_at = CASE WHEN l.status = 'pending' THEN NULL ELSE l.completed_at END
         WHERE l.org_id = p_org AND l.job_id = ANY (coalesce(p_sent, '{}')) AND l.redrive_marked_at IS NOT NULL
        RETURNING l.job_id, l.attempts
    )
    INSERT INTO slotguard.webhook_redrive_audit (org_id, job_id, actor, attempts)
    SELECT p_org, job_id, p_actor, attempts FROM sent;
    GET DIAGNOSTICS v_audited = ROW_COUNT;
    RETURN v_audited;
END
$$;

-- The org's redriven deliveries not finished yet (pending, processing, failed): those a redrive
-- settled (redriven_at, 0031) and those a live redrive holds marked (a mark younger than
-- p_unconfirmed_after_s; an older one belongs to a redrive that died, which the next redrive
-- resends). Counted up to p_cap + 1 only: the caller needs to know whether the cap is reached.
CREATE OR REPLACE FUNCTION slotguard.redrive_pending_count(
    p_org uuid, p_cap integer, p_unconfirmed_after_s integer
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_cap integer := greatest(coalesce(p_cap, 0), 0) + 1;
    v_live timestamptz := clock_timestamp() - make_interval(secs => greatest(p_unconfirmed_after_s, 1));
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    RETURN least(v_cap,
        (SELECT count(*) FROM (SELECT 1 FROM slotguard.webhook_delivery_log
                                WHERE org_id = p_org AND redriven_at IS NOT NULL
                                  AND status IN ('pending', 'processing', 'failed')
                                  AND (redrive_marked_at IS NULL OR redrive_marked_at >= v_live)
                                LIMIT v_cap) settled)
      + (SELECT count(*) FROM (SELECT 1 FROM slotguard.webhook_delivery_log
                                WHERE org_id = p_org AND redrive_marked_at >= v_live AND redriven_at IS NULL
                                  AND status = 'pending'
                                LIMIT v_cap) marked));
END
$$;

REVOKE EXECUTE ON FUNCTION
    slotguard.redrive_mark_webhook_deliveries(uuid, text[], bigint, integer, integer, integer),
    slotguard.redrive_settle_webhook_deliveries(uuid, text, text[], text[]),
    slotguard.redrive_pending_count(uuid, integer, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.redrive_mark_webhook_deliveries(uuid, text[], bigint, integer, integer, integer),
    slotguard.redrive_settle_webhook_deliveries(uuid, text, text[], text[]),
    slotguard.redrive_pending_count(uuid, integer, integer)
TO slotguard_app;

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

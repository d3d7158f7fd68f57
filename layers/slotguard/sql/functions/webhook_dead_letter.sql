-- The dead-letter reconciler's function.
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

-- The dead-letter reconciler: a message that reached the SQS DLQ (the processor crashed or
-- timed out too often) becomes a dead_letter row, inserted if the webhook was never logged.
-- A completed row stays completed. Idempotent.
CREATE OR REPLACE FUNCTION slotguard.dead_letter_webhook_delivery(
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

REVOKE EXECUTE ON FUNCTION
    slotguard.dead_letter_webhook_delivery(uuid, text, text, jsonb, integer, integer, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.dead_letter_webhook_delivery(uuid, text, text, jsonb, integer, integer, text)
TO slotguard_app;

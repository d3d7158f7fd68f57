-- Claiming an SQS batch of deliveries in one statement: each item answered exactly as
-- claim_webhook_delivery() answers it. An item carrying `complete` {outcome, detail,
-- processing_ms} (a handler with no database effect) is completed by the claim itself.
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

CREATE OR REPLACE FUNCTION slotguard.claim_webhook_deliveries(
    p_items jsonb, p_max_attempts integer, p_stale_after_s integer DEFAULT 180
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_item jsonb;
    v_done jsonb;
    v_claim jsonb;
    v_org uuid;
    v_tenant uuid;  -- the org the transaction's tenant is set to
    v_now timestamptz;
    v_id bigint;
    v_out jsonb := '[]'::jsonb;
BEGIN
    IF jsonb_typeof(p_items) IS DISTINCT FROM 'array' OR jsonb_array_length(p_items) > 100 THEN
        RAISE EXCEPTION 'items must be an array of at most 100 deliveries' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR v_item IN SELECT e.item FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(item, n) ORDER BY e.n LOOP
        v_org := (v_item->>'org_id')::uuid;
        v_done := v_item->'complete';
        IF jsonb_typeof(v_done) IS DISTINCT FROM 'object' THEN
            v_out := v_out || jsonb_build_array(slotguard.claim_webhook_delivery(
                v_org, v_item->>'job_id', v_item->>'event_type', v_item->'event_data',
                p_max_attempts, p_stale_after_s));
            v_tenant := v_org;  -- the claim set it
            CONTINUE;
        END IF;
        IF v_tenant IS DISTINCT FROM v_org THEN  -- once per org, not per item
            PERFORM slotguard._set_tenant(v_org);
            v_tenant := v_org;
        END IF;
        v_now := clock_timestamp();
        INSERT INTO slotguard.webhook_delivery_log
            (org_id, job_id, event_type, event_data, status, attempts, max_attempts, last_attempt_at,
             completed_at, outcome, outcome_detail, processing_ms)
        VALUES (v_org, v_item->>'job_id', v_item->>'event_type', v_item->'event_data', 'completed', 1,
                p_max_attempts, v_now, v_now, v_done->>'outcome', coalesce(v_done->'detail', '{}'::jsonb),
                greatest(coalesce((v_done->>'processing_ms')::integer, 0), 0))
        ON CONFLICT ON CONSTRAINT webhook_delivery_log_job DO NOTHING
        RETURNING id INTO v_id;
        IF FOUND THEN
            -- its one attempt, as complete_webhook_delivery() records one
            INSERT INTO slotguard.webhook_delivery_attempts (delivery_id, org_id, attempt, at, result, processing_ms)
            VALUES (v_id, v_org, 1, v_now, 'completed', greatest(coalesce((v_done->>'processing_ms')::integer, 0), 0));
            v_out := v_out || jsonb_build_array(jsonb_build_object(
                'action', 'completed', 'attempt', 1, 'outcome', v_done->>'outcome'));
            CONTINUE;
        END IF;
        v_claim := slotguard.claim_webhook_delivery(
            v_org, v_item->>'job_id', v_item->>'event_type', v_item->'event_data', p_max_attempts, p_stale_after_s);
        IF v_claim->>'action' = 'process' THEN
            IF slotguard.complete_webhook_delivery(
                   v_org, v_item->>'job_id', (v_claim->>'token')::uuid, v_done->>'outcome',
                   coalesce(v_done->'detail', '{}'::jsonb), coalesce((v_done->>'processing_ms')::integer, 0)) THEN
                v_claim := jsonb_build_object(
                    'action', 'completed', 'attempt', (v_claim->>'attempt')::integer, 'outcome', v_done->>'outcome');
            END IF;
        END IF;
        v_out := v_out || jsonb_build_array(v_claim);
    END LOOP;
    RETURN v_out;
END
$$;

REVOKE EXECUTE ON FUNCTION
    slotguard.claim_webhook_deliveries(jsonb, integer, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.claim_webhook_deliveries(jsonb, integer, integer)
TO slotguard_app;

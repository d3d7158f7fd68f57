-- A batch's records whose handler has no database effect (an unknown event type: outcome
-- `ignored`) are completed by the batch's claim itself (issue 11): one statement for the
-- whole batch instead of one completion round trip per record.
--
-- claim_webhook_deliveries() (0009) keeps its signature and its answers for every item as it
-- was called until now. An item may now carry `complete`: {outcome, detail, processing_ms},
-- the outcome its (effect-free) handler already produced. Such an item is
--   * inserted as `completed` (attempts 1) when the delivery is new; or
--   * claimed exactly as claim_webhook_delivery() claims it (0010), and when that claim is
--     `process`, completed under its token in the same statement, which is what
--     complete_webhook_delivery() does (attempts + 1);
-- and answered {action: 'completed', attempt, outcome}. A delivery that is already completed
-- or dead-lettered is `skip`, one another worker holds is `in_progress`, exactly as before.
-- Records with an effect are only claimed here: their effect and their `completed` mark still
-- commit together in one transaction of their own.
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
        ON CONFLICT ON CONSTRAINT webhook_delivery_log_job DO NOTHING;
        IF FOUND THEN
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

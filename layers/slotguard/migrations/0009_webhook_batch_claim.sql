-- The webhook processor claims a whole SQS batch in one statement (issue 11): the same claim
-- as claim_webhook_delivery() (0004), item by item in the batch's order, in one round trip
-- instead of one per record. Each answer is exactly what claim_webhook_delivery() answers
-- for its item. Finishing stays per record: an effect and its `completed` mark commit in one
-- transaction of their own.
SET LOCAL ROLE slotguard_owner;

CREATE FUNCTION slotguard.claim_webhook_deliveries(
    p_items jsonb, p_max_attempts integer, p_stale_after_s integer DEFAULT 180
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_item jsonb;
    v_out jsonb := '[]'::jsonb;
BEGIN
    IF jsonb_typeof(p_items) IS DISTINCT FROM 'array' OR jsonb_array_length(p_items) > 100 THEN
        RAISE EXCEPTION 'items must be an array of at most 100 deliveries' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR v_item IN SELECT e.item FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(item, n) ORDER BY e.n LOOP
        v_out := v_out || jsonb_build_array(slotguard.claim_webhook_delivery(
            (v_item->>'org_id')::uuid, v_item->>'job_id', v_item->>'event_type', v_item->'event_data',
            p_max_attempts, p_stale_after_s));
    END LOOP;
    RETURN v_out;
END
$$;

REVOKE EXECUTE ON FUNCTION slotguard.claim_webhook_deliveries(jsonb, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION slotguard.claim_webhook_deliveries(jsonb, integer, integer) TO slotguard_app;

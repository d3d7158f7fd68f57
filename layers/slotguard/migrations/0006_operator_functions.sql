-- Operator-only functions (not granted to the application role).
SET LOCAL ROLE slotguard_owner;

-- Deliveries not yet completed or dead-lettered, across orgs: what must be re-enqueued when a
-- queue was lost (the local stack's in-memory emulator after a restart).
CREATE FUNCTION slotguard.unfinished_webhook_deliveries(p_limit integer DEFAULT 10000) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
BEGIN
    PERFORM set_config('slotguard.maintenance', 'on', true);
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object('org_id', org_id, 'job_id', job_id, 'event_type', event_type,
                                            'event_data', event_data, 'status', status) ORDER BY id)
        FROM (SELECT * FROM slotguard.webhook_delivery_log
              WHERE status IN ('pending', 'processing', 'failed') ORDER BY id LIMIT p_limit) unfinished
    ), '[]'::jsonb);
END
$$;

REVOKE EXECUTE ON FUNCTION slotguard.unfinished_webhook_deliveries(integer) FROM PUBLIC;

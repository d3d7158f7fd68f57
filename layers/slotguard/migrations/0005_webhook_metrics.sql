-- Webhook metrics (per org, computed in SQL: percentiles too) and the dead-letter redrive.
SET LOCAL ROLE slotguard_owner;

-- The org's deliveries created in [now - p_range, now): totals, per event type, and a trend
-- of p_bucket-wide buckets (empty buckets included, oldest first).
CREATE FUNCTION slotguard.webhook_delivery_stats(p_org uuid, p_range interval, p_bucket interval)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_now timestamptz := now();
    v_since timestamptz := now() - p_range;
    v_origin timestamptz := date_bin(p_bucket, now() - p_range, 'epoch'::timestamptz);
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    RETURN (
        WITH rows AS (
            SELECT event_type, status, processing_ms, created_at
            FROM slotguard.webhook_delivery_log
            WHERE org_id = p_org AND created_at >= v_since AND created_at < v_now
        ),
        per_type AS (
            SELECT event_type,
                   count(*) AS total,
                   count(*) FILTER (WHERE status = 'completed') AS completed,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE status = 'dead_letter') AS dead_letter,
                   count(*) FILTER (WHERE status IN ('pending', 'processing')) AS in_progress,
                   round(avg(processing_ms) FILTER (WHERE status = 'completed'), 2) AS avg_processing_ms
            FROM rows GROUP BY event_type
        ),
        totals AS (
            SELECT count(*) AS total,
                   count(*) FILTER (WHERE status = 'completed') AS completed,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE status = 'dead_letter') AS dead_letter,
                   count(*) FILTER (WHERE status IN ('pending', 'processing')) AS in_progress,
                   round(avg(processing_ms) FILTER (WHERE status = 'completed'), 2) AS avg_processing_ms
            FROM rows
        ),
        buckets AS (
            SELECT b AS bucket_start FROM generate_series(v_origin, v_now, p_bucket) AS b
        ),
        trend AS (
            SELECT bk.bucket_start,
                   count(r.*) AS total,
                   count(r.*) FILTER (WHERE r.status = 'completed') AS completed,
                   count(r.*) FILTER (WHERE r.status = 'failed') AS failed,
                   count(r.*) FILTER (WHERE r.status = 'dead_letter') AS dead_letter
            FROM buckets bk
            LEFT JOIN rows r ON date_bin(p_bucket, r.created_at, 'epoch'::timestamptz) = bk.bucket_start
            GROUP BY bk.bucket_start
        )
        SELECT jsonb_build_object(
            'since', v_since,
            'until', v_now,
            'totals', (SELECT jsonb_build_object(
                'total', t.total, 'completed', t.completed, 'failed', t.failed, 'dead_letter', t.dead_letter,
                'in_progress', t.in_progress,
                'success_rate', CASE WHEN t.total = 0 THEN 0 ELSE round(t.completed::numeric / t.total, 4) END,
                'avg_processing_ms', coalesce(t.avg_processing_ms, 0)) FROM totals t),
            'by_event_type', coalesce((SELECT jsonb_agg(jsonb_build_object(
                'event_type', p.event_type, 'total', p.total, 'completed', p.completed, 'failed', p.failed,
                'dead_letter', p.dead_letter, 'in_progress', p.in_progress,
                'success_rate', CASE WHEN p.total = 0 THEN 0 ELSE round(p.completed::numeric / p.total, 4) END,
                'avg_processing_ms', coalesce(p.avg_processing_ms, 0)) ORDER BY p.event_type) FROM per_type p),
                '[]'::jsonb),
            'trend', coalesce((SELECT jsonb_agg(jsonb_build_object(
                'bucket_start', tr.bucket_start, 'total', tr.total, 'completed', tr.completed,
                'failed', tr.failed, 'dead_letter', tr.dead_letter) ORDER BY tr.bucket_start) FROM trend tr),
                '[]'::jsonb)
        )
    );
END
$$;

-- Processing-time percentiles (ms) of the org's completed deliveries in the range.
CREATE FUNCTION slotguard.webhook_processing_time(p_org uuid, p_range interval) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    RETURN (
        WITH rows AS (
            SELECT event_type, processing_ms::double precision AS ms
            FROM slotguard.webhook_delivery_log
            WHERE org_id = p_org AND status = 'completed' AND processing_ms IS NOT NULL
              AND created_at >= now() - p_range
        ),
        overall AS (
            SELECT count(*) AS count,
                   percentile_cont(0.50) WITHIN GROUP (ORDER BY ms) AS p50,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
                   avg(ms) AS avg, max(ms) AS max
            FROM rows
        ),
        per_type AS (
            SELECT event_type, count(*) AS count,
                   percentile_cont(0.50) WITHIN GROUP (ORDER BY ms) AS p50,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
                   avg(ms) AS avg, max(ms) AS max
            FROM rows GROUP BY event_type
        )
        SELECT jsonb_build_object(
            'overall', (SELECT jsonb_build_object('count', o.count,
                'p50', coalesce(round(o.p50::numeric, 2), 0), 'p95', coalesce(round(o.p95::numeric, 2), 0),
                'p99', coalesce(round(o.p99::numeric, 2), 0), 'avg', coalesce(round(o.avg::numeric, 2), 0),
                'max', coalesce(round(o.max::numeric, 2), 0)) FROM overall o),
            'by_event_type', coalesce((SELECT jsonb_agg(jsonb_build_object('event_type', p.event_type,
                'count', p.count, 'p50', round(p.p50::numeric, 2), 'p95', round(p.p95::numeric, 2),
                'p99', round(p.p99::numeric, 2), 'avg', round(p.avg::numeric, 2), 'max', round(p.max::numeric, 2))
                ORDER BY p.event_type) FROM per_type p), '[]'::jsonb)
        )
    );
END
$$;

-- Newest failed / dead-letter deliveries (p_with_payload adds the event data).
CREATE FUNCTION slotguard.webhook_failures(
    p_org uuid, p_statuses text[], p_limit integer, p_with_payload boolean
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    RETURN jsonb_build_object(
        'total', (SELECT count(*) FROM slotguard.webhook_delivery_log
                   WHERE org_id = p_org AND status = ANY (p_statuses)),
        'items', coalesce((
            SELECT jsonb_agg(item ORDER BY ord) FROM (
                SELECT row_number() OVER (ORDER BY l.last_attempt_at DESC NULLS LAST, l.id DESC) AS ord,
                       jsonb_build_object(
                           'job_id', l.job_id, 'event_type', l.event_type, 'status', l.status,
                           'attempts', l.attempts, 'max_attempts', l.max_attempts,
                           'error_message', l.error_message, 'outcome', l.outcome,
                           'created_at', l.created_at, 'last_attempt_at', l.last_attempt_at)
                       || CASE WHEN p_with_payload THEN jsonb_build_object('event_data', l.event_data)
                               ELSE '{}'::jsonb END AS item
                FROM slotguard.webhook_delivery_log l
                WHERE l.org_id = p_org AND l.status = ANY (p_statuses)
                ORDER BY l.last_attempt_at DESC NULLS LAST, l.id DESC
                LIMIT greatest(1, least(p_limit, 500))
            ) page), '[]'::jsonb)
    );
END
$$;

-- The org's delivery counts by status (queue health).
CREATE FUNCTION slotguard.webhook_status_counts(p_org uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    RETURN (
        SELECT jsonb_build_object(
            'pending', count(*) FILTER (WHERE status = 'pending'),
            'processing', count(*) FILTER (WHERE status = 'processing'),
            'failed', count(*) FILTER (WHERE status = 'failed'),
            'dead_letter', count(*) FILTER (WHERE status = 'dead_letter'),
            'oldest_unfinished_at', min(created_at) FILTER (WHERE status IN ('pending', 'processing', 'failed')))
        FROM slotguard.webhook_delivery_log WHERE org_id = p_org
    );
END
$$;

-- Put dead-letter deliveries back to 'pending' (attempts kept, a fresh retry budget) and
-- audit who did it. Row locks are held until the caller's transaction ends: the caller
-- re-enqueues the returned deliveries inside that same transaction, so a processor that
-- receives one waits for the commit and then sees 'pending'; if enqueueing fails, the
-- rollback leaves them dead-lettered.
CREATE FUNCTION slotguard.redrive_webhook_deliveries(
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

CREATE FUNCTION slotguard.webhook_redrive_history(p_org uuid, p_job_id text) RETURNS jsonb
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

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA slotguard FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.webhook_delivery_stats(uuid, interval, interval),
    slotguard.webhook_processing_time(uuid, interval),
    slotguard.webhook_failures(uuid, text[], integer, boolean),
    slotguard.webhook_status_counts(uuid),
    slotguard.redrive_webhook_deliveries(uuid, text, text[], integer),
    slotguard.webhook_redrive_history(uuid, text)
TO slotguard_app;

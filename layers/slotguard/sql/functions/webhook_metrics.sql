-- Webhook metrics, per org, computed in SQL.
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

-- The org's deliveries created in [now - p_range, now): totals, per event type, and a trend
-- of p_bucket-wide buckets (empty buckets included, oldest first).
CREATE OR REPLACE FUNCTION slotguard.webhook_delivery_stats(p_org uuid, p_range interval, p_bucket interval)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_now timestamptz := now();
    v_since timestamptz := now() - p_range;
    v_origin timestamptz := date_bin(p_bucket, now() - p_range, 'epoch'::timestamptz);
    v_types_shown CONSTANT integer := 100;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    RETURN (
        WITH rows AS (
            SELECT event_type, status, processing_ms, created_at, outcome
            FROM slotguard.webhook_delivery_log
            WHERE org_id = p_org AND created_at >= v_since AND created_at < v_now
        ),
        -- One pass for the totals (grouping set ()) and each event type; () yields a row even
        -- when there are no deliveries, so an empty range answers zeros.
        grouped AS (
            SELECT grouping(event_type) = 1 AS is_total, event_type, jsonb_build_object(
                       'total', count(*),
                       'completed', count(*) FILTER (WHERE status = 'completed'),
                       'failed', count(*) FILTER (WHERE status = 'failed'),
                       'dead_letter', count(*) FILTER (WHERE status = 'dead_letter'),
                       'in_progress', count(*) FILTER (WHERE status IN ('pending', 'processing')),
                       'success_rate', CASE WHEN count(*) = 0 THEN 0
                           ELSE round((count(*) FILTER (WHERE status = 'completed'))::numeric / count(*), 4) END,
                       'avg_processing_ms',
                           coalesce(round(avg(processing_ms) FILTER (WHERE status = 'completed'), 2), 0),
                       -- the business outcomes (README, "A webhook's outcome")
                       'outcomes', jsonb_build_object(
                           'applied', count(*) FILTER (WHERE outcome = 'applied'),
                           'refused', count(*) FILTER (WHERE outcome = 'rejected'),
                           'ignored', count(*) FILTER (WHERE outcome = 'ignored'),
                           'invalid', count(*) FILTER (WHERE outcome = 'invalid_payload'))
                   ) AS stats
            FROM rows GROUP BY GROUPING SETS ((), (event_type))
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
            'totals', (SELECT g.stats FROM grouped g WHERE g.is_total),
            'by_event_type', coalesce((SELECT jsonb_agg(jsonb_build_object('event_type', t.event_type) || t.stats
                                                        ORDER BY t.event_type)
                                       FROM (SELECT g.event_type, g.stats FROM grouped g WHERE NOT g.is_total
                                             ORDER BY (g.stats->>'total')::bigint DESC, g.event_type
                                             LIMIT v_types_shown) t), '[]'::jsonb),
            'event_type_count', (SELECT count(*) FROM grouped g WHERE NOT g.is_total),
            'truncated', (SELECT count(*) FROM grouped g WHERE NOT g.is_total) > v_types_shown,
            'trend', coalesce((SELECT jsonb_agg(jsonb_build_object(
                'bucket_start', tr.bucket_start, 'total', tr.total, 'completed', tr.completed,
                'failed', tr.failed, 'dead_letter', tr.dead_letter) ORDER BY tr.bucket_start) FROM trend tr),
                '[]'::jsonb)
        )
    );
END
$$;

-- Processing-time percentiles (ms) of the org's completed deliveries in the range.
CREATE OR REPLACE FUNCTION slotguard.webhook_processing_time(p_org uuid, p_range interval) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_types_shown CONSTANT integer := 100;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    RETURN (
        WITH rows AS (
            SELECT event_type, processing_ms::double precision AS ms
            FROM slotguard.webhook_delivery_log
            WHERE org_id = p_org AND status = 'completed' AND processing_ms IS NOT NULL
              AND created_at >= now() - p_range
        ),
        grouped AS (  -- the overall row (grouping set ()) and one per event type, in one pass
            SELECT grouping(event_type) = 1 AS is_overall, event_type, jsonb_build_object(
                       'count', count(*),
                       'p50', coalesce(round((percentile_cont(0.50) WITHIN GROUP (ORDER BY ms))::numeric, 2), 0),
                       'p95', coalesce(round((percentile_cont(0.95) WITHIN GROUP (ORDER BY ms))::numeric, 2), 0),
                       'p99', coalesce(round((percentile_cont(0.99) WITHIN GROUP (ORDER BY ms))::numeric, 2), 0),
                       'avg', coalesce(round(avg(ms)::numeric, 2), 0),
                       'max', coalesce(round(max(ms)::numeric, 2), 0)
                   ) AS stats
            FROM rows GROUP BY GROUPING SETS ((), (event_type))
        )
        SELECT jsonb_build_object(
            'overall', (SELECT g.stats FROM grouped g WHERE g.is_overall),
            'by_event_type', coalesce((SELECT jsonb_agg(jsonb_build_object('event_type', t.event_type) || t.stats
                                                        ORDER BY t.event_type)
                                       FROM (SELECT g.event_type, g.stats FROM grouped g WHERE NOT g.is_overall
                                             ORDER BY (g.stats->>'count')::bigint DESC, g.event_type
                                             LIMIT v_types_shown) t), '[]'::jsonb),
            'event_type_count', (SELECT count(*) FROM grouped g WHERE NOT g.is_overall),
            'truncated', (SELECT count(*) FROM grouped g WHERE NOT g.is_overall) > v_types_shown
        )
    );
END
$$;

-- Processing-time percentiles (ms) of the org's completed deliveries in the range, per p_bucket-wide
-- bucket of their creation (empty buckets included, oldest first; their figures 0 and count 0).
CREATE OR REPLACE FUNCTION slotguard.webhook_processing_time_trend(p_org uuid, p_range interval, p_bucket interval)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_now timestamptz := now();
    v_origin timestamptz := date_bin(p_bucket, now() - p_range, 'epoch'::timestamptz);
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    RETURN (
        WITH rows AS (
            SELECT date_bin(p_bucket, created_at, 'epoch'::timestamptz) AS bucket_start,
                   processing_ms::double precision AS ms
            FROM slotguard.webhook_delivery_log
            WHERE org_id = p_org AND status = 'completed' AND processing_ms IS NOT NULL
              AND created_at >= v_now - p_range AND created_at < v_now
        ),
        per_bucket AS (
            SELECT bucket_start, count(*) AS n,
                   round((percentile_cont(0.50) WITHIN GROUP (ORDER BY ms))::numeric, 2) AS p50,
                   round((percentile_cont(0.95) WITHIN GROUP (ORDER BY ms))::numeric, 2) AS p95,
                   round((percentile_cont(0.99) WITHIN GROUP (ORDER BY ms))::numeric, 2) AS p99
            FROM rows GROUP BY bucket_start
        )
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'bucket_start', b, 'count', coalesce(p.n, 0), 'p50', coalesce(p.p50, 0),
                   'p95', coalesce(p.p95, 0), 'p99', coalesce(p.p99, 0)) ORDER BY b), '[]'::jsonb)
        FROM generate_series(v_origin, v_now, p_bucket) AS b
        LEFT JOIN per_bucket p ON p.bucket_start = b
    );
END
$$;

-- Newest failed / dead-letter deliveries (p_with_payload adds the event data).
-- Payloads are shown newest first while the ones shown stay within the budget, measured as jsonb
-- writes them (event_data_bytes, stored with the row: 0031); a payload over what is left is
-- omitted and uses none of it, so one oversized payload hides no other. A payload is read only
-- to be shown.
CREATE OR REPLACE FUNCTION slotguard.webhook_failures(
    p_org uuid, p_statuses text[], p_limit integer, p_with_payload boolean
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_payload_budget CONSTANT bigint := 1048576;  -- bytes of payloads (as jsonb writes them) in one answer
    v_used bigint := 0;
    v_rows bigint[] := '{}';
    v_shown bigint[] := '{}';
    v_row record;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    FOR v_row IN
        SELECT l.id, l.event_data_bytes FROM slotguard.webhook_delivery_log l
         WHERE l.org_id = p_org AND l.status = ANY (p_statuses)
         ORDER BY l.last_attempt_at DESC NULLS LAST, l.id DESC
         LIMIT greatest(1, least(p_limit, 500))
    LOOP
        v_rows := v_rows || v_row.id;
        IF p_with_payload AND v_used + v_row.event_data_bytes <= v_payload_budget THEN
            v_used := v_used + v_row.event_data_bytes;
            v_shown := v_shown || v_row.id;
        END IF;
    END LOOP;
    RETURN jsonb_build_object(
        'total', (SELECT count(*) FROM slotguard.webhook_delivery_log
                   WHERE org_id = p_org AND status = ANY (p_statuses)),
        'items', coalesce((
            SELECT jsonb_agg(
                       jsonb_build_object(
                           'job_id', l.job_id, 'event_type', left(l.event_type, 200), 'status', l.status,
                           'attempts', l.attempts, 'max_attempts', l.max_attempts,
                           'error_message', left(l.error_message, 2000), 'outcome', left(l.outcome, 200),
                           'created_at', l.created_at, 'last_attempt_at', l.last_attempt_at)
                       || CASE WHEN NOT p_with_payload THEN '{}'::jsonb
                               WHEN l.id = ANY (v_shown) THEN jsonb_build_object('event_data', l.event_data)
                               ELSE jsonb_build_object('event_data_omitted', true) END
                       ORDER BY r.ord)
              FROM unnest(v_rows) WITH ORDINALITY AS r(id, ord)
              JOIN slotguard.webhook_delivery_log l ON l.id = r.id), '[]'::jsonb)
    );
END
$$;

-- One delivery of the org by its webhook id: what the log holds (never the payload), each
-- attempt recorded (webhook_delivery_attempts, oldest first, at most the 100 newest) and the
-- redrives of it. NULL when the org has no such webhook.
CREATE OR REPLACE FUNCTION slotguard.webhook_delivery(p_org uuid, p_job_id text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    RETURN (
        SELECT jsonb_build_object(
            'job_id', l.job_id, 'event_type', left(l.event_type, 200), 'status', l.status,
            'attempts', l.attempts, 'max_attempts', l.max_attempts,
            'created_at', l.created_at, 'last_attempt_at', l.last_attempt_at, 'completed_at', l.completed_at,
            'error_message', left(l.error_message, 2000), 'outcome', left(l.outcome, 200),
            'outcome_detail', l.outcome_detail, 'processing_ms', l.processing_ms,
            'attempt_history', coalesce((
                SELECT jsonb_agg(jsonb_build_object(
                           'attempt', a.attempt, 'at', a.at, 'result', a.result,
                           'error', a.error_message, 'processing_ms', a.processing_ms) ORDER BY a.id)
                FROM (SELECT * FROM slotguard.webhook_delivery_attempts
                      WHERE delivery_id = l.id ORDER BY id DESC LIMIT 100) a), '[]'::jsonb),
            'redrives', coalesce((
                SELECT jsonb_agg(jsonb_build_object('at', r.at, 'attempts', r.attempts) ORDER BY r.id)
                FROM (SELECT * FROM slotguard.webhook_redrive_audit
                      WHERE org_id = p_org AND job_id = p_job_id ORDER BY id DESC LIMIT 100) r), '[]'::jsonb))
        FROM slotguard.webhook_delivery_log l
        WHERE l.org_id = p_org AND l.job_id = p_job_id
    );
END
$$;

-- The org's delivery counts by status (queue health).
CREATE OR REPLACE FUNCTION slotguard.webhook_status_counts(p_org uuid) RETURNS jsonb
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

REVOKE EXECUTE ON FUNCTION
    slotguard.webhook_delivery_stats(uuid, interval, interval),
    slotguard.webhook_processing_time(uuid, interval),
    slotguard.webhook_processing_time_trend(uuid, interval, interval),
    slotguard.webhook_failures(uuid, text[], integer, boolean),
    slotguard.webhook_status_counts(uuid),
    slotguard.webhook_delivery(uuid, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.webhook_delivery_stats(uuid, interval, interval),
    slotguard.webhook_processing_time(uuid, interval),
    slotguard.webhook_processing_time_trend(uuid, interval, interval),
    slotguard.webhook_failures(uuid, text[], integer, boolean),
    slotguard.webhook_status_counts(uuid),
    slotguard.webhook_delivery(uuid, text)
TO slotguard_app;

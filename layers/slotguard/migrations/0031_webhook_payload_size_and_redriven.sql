-- A delivery's payload size as jsonb writes it, kept beside the payload, and when the row was
-- last redriven (security review of issue 19: M3/L2, M4).
--
-- The dead-letter list shows payloads newest first within a 1 MiB budget, measured as jsonb
-- writes them: octet_length(event_data::text) for every listed row, on every call. A payload
-- stored before the receiver bounded payloads as stored can be 12 MB of digits (jsonb writes
-- 1e308 as 309 of them), so the measure alone took seconds. Stored once, when the row is written,
-- it is read for free; the list reads a payload only to show it (webhook_metrics.sql).
--
-- A stored generated column: every writer (claims, the reconciler, backfills) fills it without a
-- change, and the previous release's code, which names its columns, reads and writes the table
-- as before. Adding it rewrites the table once, computing the size of the rows already there
-- (the delivery log holds at most 30 days: retention).
SET LOCAL ROLE slotguard_owner;

ALTER TABLE slotguard.webhook_delivery_log
    ADD COLUMN event_data_bytes bigint GENERATED ALWAYS AS (octet_length(event_data::text)) STORED;

-- When a redrive last put the row back on the queue (security review of issue 19, M4). A redrive
-- is refused while the org already has 1,000 redriven deliveries unfinished (pending, processing,
-- failed): one org's admin could otherwise refill the shared queue again and again (its own
-- sender makes dead letters at will) while every other org's webhooks wait behind them. Set by
-- redrive_settle_webhook_deliveries() (webhook_redrive.sql); counted through the index below,
-- which holds only the unfinished redriven rows.
ALTER TABLE slotguard.webhook_delivery_log ADD COLUMN redriven_at timestamptz;
CREATE INDEX webhook_log_org_redriven_unfinished ON slotguard.webhook_delivery_log (org_id)
    WHERE redriven_at IS NOT NULL AND status IN ('pending', 'processing', 'failed');

-- A delivery's payload size as jsonb writes it, kept beside the payload (security review of
-- issue 19, M3/L2).
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

-- Each attempt of a webhook delivery, for the lookup by webhook id (issue 21, item 4b): when it
-- ran, how it ended (completed / failed / dead_letter), its error and duration. The delivery log
-- keeps only the last attempt's; complete_webhook_delivery() and fail_webhook_delivery() (both
-- forms, sql/functions/webhook_outcome.sql) add one row here per attempt they record, in the same
-- statement's transaction. A delivery's attempts go with it (ON DELETE CASCADE: the retention
-- cleanup's deletes). The previous release's code calls the same functions: it records them too.
SET LOCAL ROLE slotguard_owner;

CREATE TABLE slotguard.webhook_delivery_attempts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id    bigint NOT NULL REFERENCES slotguard.webhook_delivery_log (id) ON DELETE CASCADE,
    org_id         uuid NOT NULL,
    attempt        integer NOT NULL CHECK (attempt >= 1),
    at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    result         text NOT NULL CHECK (result IN ('completed', 'failed', 'dead_letter')),
    error_message  text CHECK (char_length(error_message) <= 2000),
    processing_ms  integer CHECK (processing_ms >= 0)
);
CREATE INDEX webhook_delivery_attempts_delivery ON slotguard.webhook_delivery_attempts (delivery_id, attempt);

ALTER TABLE slotguard.webhook_delivery_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE slotguard.webhook_delivery_attempts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON slotguard.webhook_delivery_attempts
    USING (org_id = slotguard.current_org()) WITH CHECK (org_id = slotguard.current_org());

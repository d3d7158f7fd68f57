-- Redrive in bounded batches (issue 19, item 2).
--
-- redrive_webhook_deliveries() (0005) put every dead letter of a request back to `pending` in one
-- statement and left the rows locked until the caller had sent one SQS message per row: with
-- 2,000 dead letters the transaction outlived the API's timeout (nothing redriven, yet 2,000
-- messages sent) and the processor's claims waited on the locked rows. Now a redrive is a loop of
-- small batches, each three short steps with no transaction held in between:
--   1. redrive_mark_webhook_deliveries(): up to p_limit rows (<= 10, one SendMessageBatch) go back
--      to `pending` with a fresh retry budget and `redrive_marked_at` set, in one statement;
--   2. the caller sends them (no row is locked meanwhile);
--   3. redrive_settle_webhook_deliveries(): the rows SQS took lose their mark, get their error
--      cleared and are audited (who, when); the rows it refused go back to `dead_letter`, as if
--      never touched. Nothing stays marked redriven that was not sent.
-- Should the caller die between 1 and 3, its rows stay `pending` with their mark: the next
-- redrive (of the org, or of those ids) sends them again once the mark is p_unconfirmed_after_s
-- old, since whether SQS took them is unknown (a second copy is a duplicate the processor's claim
-- acknowledges). The rows are picked in id order after the caller's cursor (p_after), so a
-- caller continues where the previous answer stopped, past rows SQS refused.
--
-- redrive_webhook_deliveries() stays as it was for the previous release's code. The two new
-- functions are in sql/functions/webhook_redrive.sql; this migration holds the schema they use.
SET LOCAL ROLE slotguard_owner;

ALTER TABLE slotguard.webhook_delivery_log ADD COLUMN redrive_marked_at timestamptz;

-- Dead letters of an org in id order (the redrive's cursor), and rows a redrive left marked.
CREATE INDEX webhook_log_org_dead_letter_id ON slotguard.webhook_delivery_log (org_id, id)
    WHERE status = 'dead_letter';
CREATE INDEX webhook_log_org_redrive_marked ON slotguard.webhook_delivery_log (org_id, redrive_marked_at)
    WHERE redrive_marked_at IS NOT NULL;

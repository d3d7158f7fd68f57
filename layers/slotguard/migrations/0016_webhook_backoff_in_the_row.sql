-- A retriable failure's backoff is kept in the row, so every copy of the message honours it
-- (issue 19, item 8).
--
-- The backoff lived only in the failed message's visibility. A second copy of the same webhook
-- (the sender posted it twice; SQS delivered a message twice) in the same batch, or arriving
-- meanwhile, claimed the `failed` row at once and ran the handler again, skipping the backoff
-- the first copy had just recorded. Now:
--   * fail_webhook_delivery_with_backoff() is fail_webhook_delivery() taking p_retry_after_s: a
--     `failed` row records `retry_at` = now + that backoff (NULL when dead-lettered).
--     fail_webhook_delivery() stays for the previous release's code and records no retry_at.
--   * claim_webhook_delivery() (0012, otherwise unchanged) answers a `failed` row whose
--     retry_at is still ahead {action: in_progress, status: backoff, retry_after_s}: the
--     processor hides that copy for the rest of the backoff instead of running it. The
--     previous release's processor reads it as in_progress, as before (hand the copy back).
-- The failed message itself becomes visible again at its backoff's end, after retry_at (its
-- visibility is set once the failure is recorded), so its own retry is never held back.
-- The functions are in sql/functions/webhook_outcome.sql and webhook_claim.sql; this migration
-- holds the column they use.
SET LOCAL ROLE slotguard_owner;

ALTER TABLE slotguard.webhook_delivery_log ADD COLUMN retry_at timestamptz;

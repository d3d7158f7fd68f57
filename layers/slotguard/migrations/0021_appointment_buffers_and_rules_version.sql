-- Buffers are part of the no-overlap guarantee (issue 20, item 2). Each appointment records the
-- time it blocks on its calendar, [blocked_from, blocked_until): its own time padded by its
-- calendar's buffers when it was booked (NULL: no buffer, the appointment's own bound), and the
-- version of its calendar's rules it was checked against (NULL: the calendar had none).
-- The exclusion constraint now covers the blocked ranges: two active appointments' times and
-- buffers never overlap, whatever path wrote the rows (docs/decisions.md, "Buffer vs buffer").
-- Existing rows keep NULLs, so their blocked range is their own time, as before.
SET LOCAL ROLE slotguard_owner;

ALTER TABLE slotguard.appointments
    ADD COLUMN blocked_from timestamptz,
    ADD COLUMN blocked_until timestamptz,
    ADD COLUMN rules_version integer,
    ADD CONSTRAINT appointments_blocked_covers_time CHECK (
        (blocked_from IS NULL OR blocked_from <= scheduled_at) AND (blocked_until IS NULL OR blocked_until >= ends_at)
    );

-- Same name, same columns but the range: ON CONFLICT DO NOTHING and every reader keep working.
-- (Rebuilding it holds the table's lock for one index build.)
ALTER TABLE slotguard.appointments DROP CONSTRAINT appointments_no_overlap;
ALTER TABLE slotguard.appointments ADD CONSTRAINT appointments_no_overlap EXCLUDE USING gist (
    org_id WITH =,
    (coalesce(resource_id, '00000000-0000-0000-0000-000000000000'::uuid)) WITH =,
    tstzrange(coalesce(blocked_from, scheduled_at), coalesce(blocked_until, ends_at), '[)') WITH &&
) WHERE (status = 'scheduled');

-- No bookings in the past (issue 20, item 3): booking and rescheduling take a backfill flag
-- (an admin recording a past appointment), so their signatures gain a parameter. The old
-- signatures are dropped here; sql/functions/booking.sql and reschedule.sql create the new ones
-- in the same transaction (the flag defaults to false, so a caller of the old argument list
-- still works).
SET LOCAL ROLE slotguard_owner;

DROP FUNCTION slotguard.book_appointment_with_lock(
    uuid, text, uuid, uuid, timestamptz, integer, text, jsonb, text, text, integer);
DROP FUNCTION slotguard.reschedule_appointment(uuid, text, uuid, timestamptz, integer, integer);

-- A contact in two places at once (issue 20, item 3b). An org policy, off by default: when on,
-- a contact's active appointments never overlap across the org's calendars. Each appointment
-- records whether it was booked under the policy (contact_exclusive), and an exclusion constraint
-- over those rows holds the rule whatever path wrote them; the booking functions also lock the
-- contact (sql/functions/booking.sql, reschedule.sql, org_policy.sql).
SET LOCAL ROLE slotguard_owner;

CREATE TABLE slotguard.org_policies (
    org_id              uuid PRIMARY KEY,
    contact_no_overlap  boolean NOT NULL DEFAULT false,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    updated_by          text NOT NULL
);
ALTER TABLE slotguard.org_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE slotguard.org_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON slotguard.org_policies
    USING (org_id = slotguard.current_org()) WITH CHECK (org_id = slotguard.current_org());
REVOKE ALL ON slotguard.org_policies FROM PUBLIC;

ALTER TABLE slotguard.appointments ADD COLUMN contact_exclusive boolean NOT NULL DEFAULT false;
ALTER TABLE slotguard.appointments ADD CONSTRAINT appointments_contact_no_overlap EXCLUDE USING gist (
    org_id WITH =,
    contact_id WITH =,
    tstzrange(scheduled_at, ends_at, '[)') WITH &&
) WHERE (status = 'scheduled' AND contact_exclusive);

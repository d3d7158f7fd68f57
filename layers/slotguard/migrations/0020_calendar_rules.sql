-- Calendars with rules, as data (issue 20, item 1). A calendar is what bookings already name:
-- the org's default calendar (resource_id NULL) and one per resource_id. A calendar without a
-- row here has no rules (today's behaviour). `rules` is the document the API validated
-- (slotguard.models.CalendarRules); `version` counts its changes, each kept in the audit trail.
-- The functions that read and write these tables are in sql/functions/calendar_rules.sql.
SET LOCAL ROLE slotguard_owner;

CREATE TABLE slotguard.calendar_rules (
    org_id      uuid NOT NULL,
    resource_id uuid,                               -- NULL: the org's default calendar
    version     integer NOT NULL CHECK (version >= 1),
    rules       jsonb NOT NULL CHECK (jsonb_typeof(rules) = 'object'),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL
);
-- One row per calendar, keyed as the exclusion constraint keys appointments' calendars.
CREATE UNIQUE INDEX calendar_rules_calendar ON slotguard.calendar_rules
    (org_id, (coalesce(resource_id, '00000000-0000-0000-0000-000000000000'::uuid)));

CREATE TABLE slotguard.calendar_rules_audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      uuid NOT NULL,
    resource_id uuid,
    version     integer NOT NULL,
    actor       text NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    rules       jsonb NOT NULL
);
CREATE INDEX calendar_rules_audit_calendar ON slotguard.calendar_rules_audit (org_id, resource_id, version);

ALTER TABLE slotguard.calendar_rules ENABLE ROW LEVEL SECURITY;
ALTER TABLE slotguard.calendar_rules FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON slotguard.calendar_rules
    USING (org_id = slotguard.current_org()) WITH CHECK (org_id = slotguard.current_org());
ALTER TABLE slotguard.calendar_rules_audit ENABLE ROW LEVEL SECURITY;
ALTER TABLE slotguard.calendar_rules_audit FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON slotguard.calendar_rules_audit
    USING (org_id = slotguard.current_org()) WITH CHECK (org_id = slotguard.current_org());

-- Read and written only through the API functions.
REVOKE ALL ON slotguard.calendar_rules, slotguard.calendar_rules_audit FROM PUBLIC;

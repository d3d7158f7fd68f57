-- Booking tables: appointments, their audit trail, and booking idempotency keys.
SET LOCAL ROLE slotguard_owner;

-- The tenant of the current transaction, set by the API functions with set_config(..., true).
-- NULL when unset, so a session that never set it sees no rows at all.
CREATE FUNCTION slotguard.current_org() RETURNS uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$ SELECT nullif(current_setting('slotguard.org_id', true), '')::uuid $$;

CREATE TABLE slotguard.appointments (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id              uuid NOT NULL,
    contact_id          uuid NOT NULL,
    resource_id         uuid,                   -- NULL: the org's default calendar
    scheduled_at        timestamptz NOT NULL,
    ends_at             timestamptz NOT NULL,
    duration_minutes    integer NOT NULL CHECK (duration_minutes BETWEEN 1 AND 1440),
    status              text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'cancelled')),
    notes               text CHECK (char_length(notes) <= 2000),
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    created_by          text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    cancelled_at        timestamptz,
    cancelled_by        text,
    cancellation_reason text,
    rescheduled_from    uuid REFERENCES slotguard.appointments (id),
    rescheduled_to      uuid REFERENCES slotguard.appointments (id),
    CHECK (ends_at = scheduled_at + make_interval(mins => duration_minutes)),
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL)),
    -- The second guarantee: two active appointments of one calendar can never overlap,
    -- whatever code path wrote them. '[)' ranges: 10:00-11:00 and 11:00-12:00 touch, no overlap.
    CONSTRAINT appointments_no_overlap EXCLUDE USING gist (
        org_id WITH =,
        (coalesce(resource_id, '00000000-0000-0000-0000-000000000000'::uuid)) WITH =,
        tstzrange(scheduled_at, ends_at, '[)') WITH &&
    ) WHERE (status = 'scheduled')
);
CREATE INDEX appointments_org_time ON slotguard.appointments (org_id, scheduled_at, id);
CREATE INDEX appointments_org_resource_time ON slotguard.appointments (org_id, resource_id, scheduled_at);

CREATE TABLE slotguard.appointment_audit (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          uuid NOT NULL,
    appointment_id  uuid NOT NULL REFERENCES slotguard.appointments (id),
    action          text NOT NULL CHECK (action IN ('created', 'cancelled', 'rescheduled')),
    actor           text NOT NULL,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    changes         jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX appointment_audit_appointment ON slotguard.appointment_audit (org_id, appointment_id, id);

CREATE TABLE slotguard.booking_idempotency_keys (
    org_id          uuid NOT NULL,
    key             text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    request_hash    text NOT NULL,
    appointment_id  uuid NOT NULL REFERENCES slotguard.appointments (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL DEFAULT now() + interval '24 hours',
    PRIMARY KEY (org_id, key)
);
CREATE INDEX booking_idempotency_keys_expiry ON slotguard.booking_idempotency_keys (expires_at);

-- Row-level security, forced so the owning role is bound by it too.
ALTER TABLE slotguard.appointments ENABLE ROW LEVEL SECURITY;
ALTER TABLE slotguard.appointments FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON slotguard.appointments
    USING (org_id = slotguard.current_org()) WITH CHECK (org_id = slotguard.current_org());

ALTER TABLE slotguard.appointment_audit ENABLE ROW LEVEL SECURITY;
ALTER TABLE slotguard.appointment_audit FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON slotguard.appointment_audit
    USING (org_id = slotguard.current_org()) WITH CHECK (org_id = slotguard.current_org());

ALTER TABLE slotguard.booking_idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE slotguard.booking_idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON slotguard.booking_idempotency_keys
    USING (org_id = slotguard.current_org()) WITH CHECK (org_id = slotguard.current_org());

-- The application role reads through RLS and writes only through the API functions.
REVOKE ALL ON ALL TABLES IN SCHEMA slotguard FROM PUBLIC;
GRANT SELECT ON slotguard.appointments, slotguard.appointment_audit TO slotguard_app;

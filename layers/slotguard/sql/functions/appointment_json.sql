-- An appointment as the API answers it.
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

CREATE OR REPLACE FUNCTION slotguard._appointment_json(a slotguard.appointments) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$ SELECT to_jsonb(a) - 'created_by' - 'cancelled_by' $$;

REVOKE EXECUTE ON FUNCTION
    slotguard._appointment_json(slotguard.appointments)
FROM PUBLIC;

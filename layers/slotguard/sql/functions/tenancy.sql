-- The tenant of a transaction, and its bounded lock wait.
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

-- The tenant of the current transaction, set by the API functions with set_config(..., true).
-- NULL when unset, so a session that never set it sees no rows at all.
CREATE OR REPLACE FUNCTION slotguard.current_org() RETURNS uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$ SELECT nullif(current_setting('slotguard.org_id', true), '')::uuid $$;

-- Sets the tenant of the current transaction (RLS reads it through current_org()).
CREATE OR REPLACE FUNCTION slotguard._set_tenant(p_org uuid) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, slotguard, pg_temp
AS $$ SELECT set_config('slotguard.org_id', p_org::text, true) $$;

-- The booking lock wait stays below the role's statement timeout.
CREATE OR REPLACE FUNCTION slotguard._set_lock_wait(p_ms integer) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, slotguard, pg_temp
AS $$ SELECT set_config('lock_timeout', greatest(1, least(coalesce(p_ms, 3000), 4000))::text || 'ms', true) $$;

REVOKE EXECUTE ON FUNCTION
    slotguard.current_org(),
    slotguard._set_tenant(uuid),
    slotguard._set_lock_wait(integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.current_org()
TO slotguard_app;

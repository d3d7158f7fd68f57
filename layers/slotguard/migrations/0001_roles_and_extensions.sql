-- Roles and extensions. Runs as the administrator (RDS master user or the local superuser).
--
-- slotguard_owner: owns every table and function; NOLOGIN; no BYPASSRLS, and row-level
--                  security is FORCEd on its tables, so even the owner's SECURITY DEFINER
--                  functions see only the tenant they set.
-- slotguard_app:   the application's login role. It may EXECUTE the API functions and
--                  SELECT (through RLS) and nothing else: it owns nothing, writes nothing.
CREATE EXTENSION IF NOT EXISTS btree_gist;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'slotguard_owner') THEN
        CREATE ROLE slotguard_owner NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'slotguard_app') THEN
        CREATE ROLE slotguard_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

-- The administrator creates objects as slotguard_owner (SET ROLE in later migrations).
GRANT slotguard_owner TO CURRENT_USER;

CREATE SCHEMA IF NOT EXISTS slotguard AUTHORIZATION slotguard_owner;
REVOKE ALL ON SCHEMA slotguard FROM PUBLIC;
GRANT USAGE ON SCHEMA slotguard TO slotguard_app;
-- Nobody but the owner creates objects in public.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Reading appointments: one, a page, an audit trail.
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

CREATE OR REPLACE FUNCTION slotguard.get_appointment(p_org uuid, p_id uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_appt slotguard.appointments;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    SELECT * INTO v_appt FROM slotguard.appointments WHERE id = p_id AND org_id = p_org;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN slotguard._appointment_json(v_appt);
END
$$;

-- Keyset pagination on (scheduled_at, id): p_after_* is the last row of the previous page.
CREATE OR REPLACE FUNCTION slotguard.list_appointments(
    p_org uuid, p_from timestamptz, p_to timestamptz, p_resource_id uuid, p_status text,
    p_limit integer, p_after_scheduled_at timestamptz DEFAULT NULL, p_after_id uuid DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    RETURN (
        SELECT coalesce(jsonb_agg(slotguard._appointment_json(page) ORDER BY page.scheduled_at, page.id), '[]'::jsonb)
        FROM (
            SELECT a.* FROM slotguard.appointments a
            WHERE a.org_id = p_org
              AND (p_from IS NULL OR a.ends_at > p_from)
              AND (p_to IS NULL OR a.scheduled_at < p_to)
              AND (p_resource_id IS NULL OR a.resource_id = p_resource_id)
              AND (p_status IS NULL OR a.status = p_status)
              AND (p_after_scheduled_at IS NULL OR (a.scheduled_at, a.id) > (p_after_scheduled_at, p_after_id))
            ORDER BY a.scheduled_at, a.id
            LIMIT greatest(1, least(coalesce(p_limit, 50), 500))
        ) page
    );
END
$$;

-- NULL when the appointment is not the org's; otherwise its audit rows, oldest first.
CREATE OR REPLACE FUNCTION slotguard.appointment_history(p_org uuid, p_id uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    IF NOT EXISTS (SELECT 1 FROM slotguard.appointments WHERE id = p_id AND org_id = p_org) THEN
        RETURN NULL;
    END IF;
    RETURN (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'id', h.id, 'appointment_id', h.appointment_id, 'action', h.action,
                   'actor', h.actor, 'at', h.at, 'changes', h.changes) ORDER BY h.id), '[]'::jsonb)
        FROM slotguard.appointment_audit h
        WHERE h.org_id = p_org AND h.appointment_id = p_id
    );
END
$$;

REVOKE EXECUTE ON FUNCTION
    slotguard.get_appointment(uuid, uuid),
    slotguard.list_appointments(uuid, timestamptz, timestamptz, uuid, text, integer, timestamptz, uuid),
    slotguard.appointment_history(uuid, uuid)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.get_appointment(uuid, uuid),
    slotguard.list_appointments(uuid, timestamptz, timestamptz, uuid, text, integer, timestamptz, uuid),
    slotguard.appointment_history(uuid, uuid)
TO slotguard_app;

-- NULL when the appointment is not the org's; otherwise its oldest 100 audit rows and their count.
-- A new function beside appointment_history(), whose answer (an array) the previous release
-- reads: a rollback runs that release on this schema, so it keeps its function as it was.
CREATE OR REPLACE FUNCTION slotguard.appointment_history_bounded(p_org uuid, p_id uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_shown CONSTANT integer := 100;
    v_count integer;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    IF NOT EXISTS (SELECT 1 FROM slotguard.appointments WHERE id = p_id AND org_id = p_org) THEN
        RETURN NULL;
    END IF;
    SELECT count(*) INTO v_count FROM slotguard.appointment_audit WHERE org_id = p_org AND appointment_id = p_id;
    RETURN jsonb_build_object(
        'entries', (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'id', h.id, 'appointment_id', h.appointment_id, 'action', h.action,
                       'actor', h.actor, 'at', h.at, 'changes', h.changes) ORDER BY h.id), '[]'::jsonb)
            FROM (SELECT * FROM slotguard.appointment_audit
                  WHERE org_id = p_org AND appointment_id = p_id ORDER BY id LIMIT v_shown) h),
        'entry_count', v_count,
        'truncated', v_count > v_shown);
END
$$;
REVOKE EXECUTE ON FUNCTION slotguard.appointment_history_bounded(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION slotguard.appointment_history_bounded(uuid, uuid) TO slotguard_app;

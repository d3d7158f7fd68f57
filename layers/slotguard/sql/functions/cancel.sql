-- Cancelling an appointment.
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

CREATE OR REPLACE FUNCTION slotguard.cancel_appointment(
    p_org uuid, p_actor text, p_id uuid, p_reason text DEFAULT NULL, p_lock_wait_ms integer DEFAULT 3000
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_appt slotguard.appointments;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    PERFORM slotguard._set_lock_wait(p_lock_wait_ms);
    BEGIN
        SELECT * INTO v_appt FROM slotguard.appointments WHERE id = p_id AND org_id = p_org FOR UPDATE;
    EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
        RETURN jsonb_build_object('status', 'busy');
    END;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'not_found');
    END IF;
    IF v_appt.status = 'cancelled' THEN
        RETURN jsonb_build_object('status', 'already_cancelled', 'appointment', slotguard._appointment_json(v_appt));
    END IF;

    UPDATE slotguard.appointments
       SET status = 'cancelled', cancelled_at = now(), cancelled_by = p_actor,
           cancellation_reason = p_reason, updated_at = now()
     WHERE id = p_id
    RETURNING * INTO v_appt;

    INSERT INTO slotguard.appointment_audit (org_id, appointment_id, action, actor, changes)
    VALUES (p_org, p_id, 'cancelled', p_actor, jsonb_build_object(
        'status', jsonb_build_object('from', 'scheduled', 'to', 'cancelled'), 'reason', p_reason));

    RETURN jsonb_build_object('status', 'cancelled', 'appointment', slotguard._appointment_json(v_appt));
END
$$;

REVOKE EXECUTE ON FUNCTION
    slotguard.cancel_appointment(uuid, text, uuid, text, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.cancel_appointment(uuid, text, uuid, text, integer)
TO slotguard_app;

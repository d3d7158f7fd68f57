-- Rescheduling an appointment: the old one cancelled, a new one booked, in one transaction.
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

CREATE OR REPLACE FUNCTION slotguard.reschedule_appointment(
    p_org uuid, p_actor text, p_id uuid, p_scheduled_at timestamptz,
    p_duration_minutes integer DEFAULT NULL, p_lock_wait_ms integer DEFAULT 3000
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_old slotguard.appointments;
    v_new slotguard.appointments;
    v_duration integer;
    v_end timestamptz;
    v_conflicts jsonb;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    PERFORM slotguard._set_lock_wait(p_lock_wait_ms);
    BEGIN
        SELECT * INTO v_old FROM slotguard.appointments WHERE id = p_id AND org_id = p_org FOR UPDATE;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('status', 'not_found');
        END IF;
        IF v_old.status <> 'scheduled' THEN
            RETURN jsonb_build_object('status', 'not_scheduled', 'appointment', slotguard._appointment_json(v_old));
        END IF;
        v_duration := coalesce(p_duration_minutes, v_old.duration_minutes);
        IF v_duration NOT BETWEEN 1 AND 1440 OR p_scheduled_at IS NULL THEN
            RETURN jsonb_build_object('status', 'invalid', 'message', 'duration_minutes must be 1..1440');
        END IF;
        v_end := p_scheduled_at + make_interval(mins => v_duration);
        PERFORM slotguard._lock_calendar(p_org, v_old.resource_id, p_scheduled_at, v_end);
    EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
        RETURN jsonb_build_object('status', 'busy');
    END;

    v_conflicts := slotguard._conflicts(p_org, v_old.resource_id, p_scheduled_at, v_end, p_id);
    IF jsonb_array_length(v_conflicts) > 0 THEN
        RETURN jsonb_build_object('status', 'conflict', 'conflicts', v_conflicts);
    END IF;

    BEGIN
        UPDATE slotguard.appointments
           SET status = 'cancelled', cancelled_at = now(), cancelled_by = p_actor,
               cancellation_reason = 'rescheduled', updated_at = now()
         WHERE id = p_id;
        INSERT INTO slotguard.appointments
            (org_id, contact_id, resource_id, scheduled_at, ends_at, duration_minutes, notes, metadata,
             created_by, rescheduled_from)
        VALUES
            (p_org, v_old.contact_id, v_old.resource_id, p_scheduled_at, v_end, v_duration, v_old.notes,
             v_old.metadata, p_actor, p_id)
        RETURNING * INTO v_new;
    EXCEPTION WHEN exclusion_violation THEN
        -- The subtransaction rollback restores the original appointment untouched.
        RETURN jsonb_build_object('status', 'conflict',
            'conflicts', slotguard._conflicts(p_org, v_old.resource_id, p_scheduled_at, v_end, p_id));
    END;

    UPDATE slotguard.appointments SET rescheduled_to = v_new.id WHERE id = p_id RETURNING * INTO v_old;

    INSERT INTO slotguard.appointment_audit (org_id, appointment_id, action, actor, changes) VALUES
        (p_org, p_id, 'rescheduled', p_actor, jsonb_build_object(
            'status', jsonb_build_object('from', 'scheduled', 'to', 'cancelled'),
            'rescheduled_to', v_new.id,
            'scheduled_at', jsonb_build_object('from', v_old.scheduled_at, 'to', v_new.scheduled_at),
            'duration_minutes', jsonb_build_object('from', v_old.duration_minutes, 'to', v_new.duration_minutes))),
        (p_org, v_new.id, 'created', p_actor, jsonb_build_object(
            'scheduled_at', v_new.scheduled_at, 'ends_at', v_new.ends_at,
            'duration_minutes', v_new.duration_minutes, 'resource_id', v_new.resource_id,
            'rescheduled_from', p_id));

    RETURN jsonb_build_object('status', 'rescheduled',
        'appointment', slotguard._appointment_json(v_new),
        'previous', slotguard._appointment_json(v_old));
END
$$;

REVOKE EXECUTE ON FUNCTION
    slotguard.reschedule_appointment(uuid, text, uuid, timestamptz, integer, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.reschedule_appointment(uuid, text, uuid, timestamptz, integer, integer)
TO slotguard_app;

-- Rescheduling an appointment: the old one cancelled, a new one booked, in one transaction.
-- The new time is not in the past (unless p_backfill) and follows the calendar's current rules
-- as a booking does (read under the org's settings lock held shared; a refusal is `rule_violation` with the rule's code, and the new appointment
-- records the rules' version and blocks its time padded by the current buffers).
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

CREATE OR REPLACE FUNCTION slotguard.reschedule_appointment(
    p_org uuid, p_actor text, p_id uuid, p_scheduled_at timestamptz,
    p_duration_minutes integer DEFAULT NULL, p_lock_wait_ms integer DEFAULT 3000, p_backfill boolean DEFAULT false
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
    v_rules jsonb;
    v_version integer;
    v_violation jsonb;
    v_from timestamptz;
    v_to timestamptz;
    v_exclusive boolean;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    PERFORM slotguard._set_lock_wait(p_lock_wait_ms);
    -- The org's settings lock first (before any row lock: a policy change updates rows).
    IF NOT slotguard._lock_settings_shared(p_org) THEN
        RETURN jsonb_build_object('status', 'busy');
    END IF;
    v_exclusive := coalesce((SELECT p.contact_no_overlap FROM slotguard.org_policies p WHERE p.org_id = p_org), false);
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
        IF p_scheduled_at < now() AND NOT coalesce(p_backfill, false) THEN
            RETURN jsonb_build_object('status', 'rule_violation', 'code', 'in_the_past',
                                      'message', 'the appointment starts in the past');
        END IF;
        SELECT r.rules, r.version INTO v_rules, v_version FROM slotguard.calendar_rules r
         WHERE r.org_id = p_org
           AND coalesce(r.resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
               = coalesce(v_old.resource_id, '00000000-0000-0000-0000-000000000000'::uuid);
        v_from := p_scheduled_at;
        v_to := v_end;
        IF v_rules IS NOT NULL THEN
            v_violation := slotguard._rule_violation(v_rules, p_scheduled_at, v_duration,
                                                     CASE WHEN NOT coalesce(p_backfill, false) THEN now() END);
            IF v_violation IS NOT NULL THEN
                RETURN jsonb_build_object('status', 'rule_violation', 'rules_version', v_version) || v_violation;
            END IF;
            v_from := p_scheduled_at - make_interval(mins => coalesce((v_rules->>'buffer_before_minutes')::integer, 0));
            v_to := v_end + make_interval(mins => coalesce((v_rules->>'buffer_after_minutes')::integer, 0));
        END IF;
        IF v_exclusive AND NOT slotguard._lock_contact(p_org, v_old.contact_id) THEN
            RETURN jsonb_build_object('status', 'busy');
        END IF;
        PERFORM slotguard._lock_calendar(p_org, v_old.resource_id, v_from, v_to);
    EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
        RETURN jsonb_build_object('status', 'busy');
    END;

    v_conflicts := slotguard._conflicts(p_org, v_old.resource_id, v_from, v_to, p_id);
    IF (v_conflicts->>'conflict_count')::integer > 0 THEN
        RETURN jsonb_build_object('status', 'conflict') || v_conflicts;
    END IF;
    IF v_exclusive THEN
        v_conflicts := slotguard._contact_conflicts(p_org, v_old.contact_id, p_scheduled_at, v_end, p_id);
        IF jsonb_array_length(v_conflicts) > 0 THEN
            RETURN jsonb_build_object('status', 'contact_conflict', 'conflicts', v_conflicts);
        END IF;
    END IF;

    BEGIN
        UPDATE slotguard.appointments
           SET status = 'cancelled', cancelled_at = now(), cancelled_by = p_actor,
               cancellation_reason = 'rescheduled', updated_at = now()
         WHERE id = p_id;
        INSERT INTO slotguard.appointments
            (org_id, contact_id, resource_id, scheduled_at, ends_at, duration_minutes, notes, metadata,
             created_by, rescheduled_from, blocked_from, blocked_until, rules_version, contact_exclusive)
        VALUES
            (p_org, v_old.contact_id, v_old.resource_id, p_scheduled_at, v_end, v_duration, v_old.notes,
             v_old.metadata, p_actor, p_id, nullif(v_from, p_scheduled_at), nullif(v_to, v_end), v_version, v_exclusive)
        RETURNING * INTO v_new;
    EXCEPTION WHEN exclusion_violation THEN
        -- The subtransaction rollback restores the original appointment untouched.
        IF v_exclusive AND (slotguard._conflicts(p_org, v_old.resource_id, v_from, v_to, p_id)->>'conflict_count')::integer = 0 THEN
            RETURN jsonb_build_object('status', 'contact_conflict',
                'conflicts', slotguard._contact_conflicts(p_org, v_old.contact_id, p_scheduled_at, v_end, p_id));
        END IF;
        RETURN jsonb_build_object('status', 'conflict')
            || slotguard._conflicts(p_org, v_old.resource_id, v_from, v_to, p_id);
    END;

    UPDATE slotguard.appointments SET rescheduled_to = v_new.id WHERE id = p_id RETURNING * INTO v_old;

    INSERT INTO slotguard.appointment_audit (org_id, appointment_id, action, actor, changes) VALUES
        (p_org, p_id, 'rescheduled', p_actor, jsonb_build_object(
            'status', jsonb_build_object('from', 'scheduled', 'to', 'cancelled'),
            'rescheduled_to', v_new.id,
            'scheduled_at', jsonb_build_object('from', v_old.scheduled_at, 'to', v_new.scheduled_at),
            'duration_minutes', jsonb_build_object('from', v_old.duration_minutes, 'to', v_new.duration_minutes))
            || CASE WHEN p_backfill THEN jsonb_build_object('backfill', true) ELSE '{}'::jsonb END),
        (p_org, v_new.id, 'created', p_actor, jsonb_build_object(
            'scheduled_at', v_new.scheduled_at, 'ends_at', v_new.ends_at,
            'duration_minutes', v_new.duration_minutes, 'resource_id', v_new.resource_id,
            'rescheduled_from', p_id, 'rules_version', v_version)
            || CASE WHEN p_backfill THEN jsonb_build_object('backfill', true) ELSE '{}'::jsonb END);

    RETURN jsonb_build_object('status', 'rescheduled',
        'appointment', slotguard._appointment_json(v_new),
        'previous', slotguard._appointment_json(v_old));
END
$$;

REVOKE EXECUTE ON FUNCTION
    slotguard.reschedule_appointment(uuid, text, uuid, timestamptz, integer, integer, boolean)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.reschedule_appointment(uuid, text, uuid, timestamptz, integer, integer, boolean)
TO slotguard_app;

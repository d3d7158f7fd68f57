-- The booking API of the database. Each write is one function call = one transaction =
-- one round trip. Every function sets the tenant for its own transaction, so RLS applies
-- and the client never needs SET / set_config / advisory-lock calls of its own (any of
-- those would pin an RDS Proxy connection).
SET LOCAL ROLE slotguard_owner;

-- Sets the tenant of the current transaction (RLS reads it through current_org()).
CREATE FUNCTION slotguard._set_tenant(p_org uuid) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, slotguard, pg_temp
AS $$ SELECT set_config('slotguard.org_id', p_org::text, true) $$;

-- Bounded wait for locks within the calling transaction (milliseconds, 1..10000).
CREATE FUNCTION slotguard._set_lock_wait(p_ms integer) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, slotguard, pg_temp
AS $$ SELECT set_config('lock_timeout', greatest(1, least(coalesce(p_ms, 3000), 10000))::text || 'ms', true) $$;

-- The advisory-lock keys of a calendar interval: one per hour bucket it touches.
-- Two overlapping intervals always share a bucket, so they serialize; intervals in
-- different hours of one calendar do not wait for each other. Keys are derived here, from
-- (org, resource, bucket), so no caller can pass a wrong one. Callers lock them in
-- ascending key order, a single global order, so lockers never deadlock.
CREATE FUNCTION slotguard.calendar_lock_keys(
    p_org uuid, p_resource uuid, p_start timestamptz, p_end timestamptz
) RETURNS SETOF bigint
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
    SELECT DISTINCT hashtextextended(
        'calendar:' || p_org::text || ':' || coalesce(p_resource::text, '-') || ':' || bucket::text, 0)
    FROM generate_series(
        floor(extract(epoch FROM p_start) / 3600)::bigint,
        (ceil(extract(epoch FROM p_end) / 3600)::bigint - 1)
    ) AS bucket
    ORDER BY 1
$$;

CREATE FUNCTION slotguard._lock_calendar(
    p_org uuid, p_resource uuid, p_start timestamptz, p_end timestamptz
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
DECLARE
    k bigint;
BEGIN
    FOR k IN SELECT * FROM slotguard.calendar_lock_keys(p_org, p_resource, p_start, p_end) ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
END
$$;

CREATE FUNCTION slotguard.idempotency_lock_key(p_org uuid, p_key text) RETURNS bigint
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$ SELECT hashtextextended('idempotency:' || p_org::text || ':' || p_key, 0) $$;

CREATE FUNCTION slotguard._appointment_json(a slotguard.appointments) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$ SELECT to_jsonb(a) - 'created_by' - 'cancelled_by' $$;

-- Active appointments of the calendar overlapping [p_start, p_end), optionally ignoring one.
CREATE FUNCTION slotguard._conflicts(
    p_org uuid, p_resource uuid, p_start timestamptz, p_end timestamptz, p_ignore uuid DEFAULT NULL
) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(slotguard._appointment_json(a) ORDER BY a.scheduled_at, a.id), '[]'::jsonb)
    FROM slotguard.appointments a
    WHERE a.org_id = p_org
      AND coalesce(a.resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
          = coalesce(p_resource, '00000000-0000-0000-0000-000000000000'::uuid)
      AND tstzrange(a.scheduled_at, a.ends_at, '[)') && tstzrange(p_start, p_end, '[)')
      AND a.status = 'scheduled'
      AND a.id IS DISTINCT FROM p_ignore
$$;

CREATE FUNCTION slotguard.book_appointment_with_lock(
    p_org uuid,
    p_actor text,
    p_contact_id uuid,
    p_resource_id uuid,
    p_scheduled_at timestamptz,
    p_duration_minutes integer,
    p_notes text DEFAULT NULL,
    p_metadata jsonb DEFAULT '{}'::jsonb,
    p_idempotency_key text DEFAULT NULL,
    p_request_hash text DEFAULT NULL,
    p_lock_wait_ms integer DEFAULT 3000
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_end timestamptz;
    v_key slotguard.booking_idempotency_keys;
    v_appt slotguard.appointments;
    v_conflicts jsonb;
BEGIN
    IF p_org IS NULL OR p_actor IS NULL OR p_contact_id IS NULL OR p_scheduled_at IS NULL THEN
        RETURN jsonb_build_object('status', 'invalid', 'message', 'org, actor, contact and start are required');
    END IF;
    IF p_duration_minutes IS NULL OR p_duration_minutes NOT BETWEEN 1 AND 1440 THEN
        RETURN jsonb_build_object('status', 'invalid', 'message', 'duration_minutes must be 1..1440');
    END IF;
    v_end := p_scheduled_at + make_interval(mins => p_duration_minutes);
    PERFORM slotguard._set_tenant(p_org);
    PERFORM slotguard._set_lock_wait(p_lock_wait_ms);

    BEGIN
        IF p_idempotency_key IS NOT NULL THEN
            -- Same key: one request at a time, so a concurrent retry replays instead of conflicting.
            PERFORM pg_advisory_xact_lock(slotguard.idempotency_lock_key(p_org, p_idempotency_key));
            SELECT * INTO v_key FROM slotguard.booking_idempotency_keys
             WHERE org_id = p_org AND key = p_idempotency_key AND expires_at > now();
            IF FOUND THEN
                IF v_key.request_hash IS DISTINCT FROM p_request_hash THEN
                    RETURN jsonb_build_object('status', 'idempotency_mismatch');
                END IF;
                SELECT * INTO v_appt FROM slotguard.appointments WHERE id = v_key.appointment_id;
                RETURN jsonb_build_object('status', 'replayed', 'appointment', slotguard._appointment_json(v_appt));
            END IF;
        END IF;
        PERFORM slotguard._lock_calendar(p_org, p_resource_id, p_scheduled_at, v_end);
    EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
        RETURN jsonb_build_object('status', 'busy');
    END;

    v_conflicts := slotguard._conflicts(p_org, p_resource_id, p_scheduled_at, v_end);
    IF jsonb_array_length(v_conflicts) > 0 THEN
        RETURN jsonb_build_object('status', 'conflict', 'conflicts', v_conflicts);
    END IF;

    BEGIN
        INSERT INTO slotguard.appointments
            (org_id, contact_id, resource_id, scheduled_at, ends_at, duration_minutes, notes, metadata, created_by)
        VALUES
            (p_org, p_contact_id, p_resource_id, p_scheduled_at, v_end, p_duration_minutes, p_notes,
             coalesce(p_metadata, '{}'::jsonb), p_actor)
        RETURNING * INTO v_appt;
    EXCEPTION WHEN exclusion_violation THEN
        -- Only reachable if some writer skipped the calendar lock; the constraint holds anyway.
        RETURN jsonb_build_object('status', 'conflict',
            'conflicts', slotguard._conflicts(p_org, p_resource_id, p_scheduled_at, v_end));
    END;

    INSERT INTO slotguard.appointment_audit (org_id, appointment_id, action, actor, changes)
    VALUES (p_org, v_appt.id, 'created', p_actor, jsonb_build_object(
        'scheduled_at', v_appt.scheduled_at, 'ends_at', v_appt.ends_at,
        'duration_minutes', v_appt.duration_minutes, 'resource_id', v_appt.resource_id));

    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO slotguard.booking_idempotency_keys (org_id, key, request_hash, appointment_id)
        VALUES (p_org, p_idempotency_key, p_request_hash, v_appt.id)
        ON CONFLICT (org_id, key) DO UPDATE  -- an expired key not yet swept by the cleanup
           SET request_hash = EXCLUDED.request_hash, appointment_id = EXCLUDED.appointment_id,
               created_at = now(), expires_at = now() + interval '24 hours';
    END IF;

    RETURN jsonb_build_object('status', 'created', 'appointment', slotguard._appointment_json(v_appt));
END
$$;

CREATE FUNCTION slotguard.cancel_appointment(
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

CREATE FUNCTION slotguard.reschedule_appointment(
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

CREATE FUNCTION slotguard.get_appointment(p_org uuid, p_id uuid) RETURNS jsonb
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
CREATE FUNCTION slotguard.list_appointments(
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
CREATE FUNCTION slotguard.appointment_history(p_org uuid, p_id uuid) RETURNS jsonb
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

CREATE FUNCTION slotguard.check_availability(
    p_org uuid, p_resource_id uuid, p_start timestamptz, p_duration_minutes integer
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_conflicts jsonb;
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    v_conflicts := slotguard._conflicts(p_org, p_resource_id, p_start,
                                        p_start + make_interval(mins => p_duration_minutes));
    RETURN jsonb_build_object('available', jsonb_array_length(v_conflicts) = 0, 'conflicts', v_conflicts);
END
$$;

-- Free start times in [p_from, p_to) every p_step minutes where p_duration fits.
CREATE FUNCTION slotguard.find_free_slots(
    p_org uuid, p_resource_id uuid, p_from timestamptz, p_to timestamptz,
    p_duration_minutes integer, p_step_minutes integer, p_limit integer DEFAULT 1000
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    RETURN (
        SELECT coalesce(jsonb_agg(jsonb_build_object('start', s.start, 'end', s.start + d.len) ORDER BY s.start),
                        '[]'::jsonb)
        FROM (SELECT make_interval(mins => p_duration_minutes) AS len) d,
        LATERAL (
            SELECT g.start FROM generate_series(
                p_from, p_to - make_interval(mins => p_duration_minutes),
                make_interval(mins => greatest(p_step_minutes, 1))) AS g(start)
            WHERE NOT EXISTS (
                SELECT 1 FROM slotguard.appointments a
                WHERE a.org_id = p_org
                  AND coalesce(a.resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
                      = coalesce(p_resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
                  AND a.status = 'scheduled'
                  AND tstzrange(a.scheduled_at, a.ends_at, '[)') && tstzrange(g.start, g.start + d.len, '[)'))
            ORDER BY g.start
            LIMIT greatest(1, least(coalesce(p_limit, 1000), 5000))
        ) s
    );
END
$$;

-- The database's API: the application role may execute these and nothing else.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA slotguard FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.book_appointment_with_lock(uuid, text, uuid, uuid, timestamptz, integer, text, jsonb, text, text, integer),
    slotguard.cancel_appointment(uuid, text, uuid, text, integer),
    slotguard.reschedule_appointment(uuid, text, uuid, timestamptz, integer, integer),
    slotguard.get_appointment(uuid, uuid),
    slotguard.list_appointments(uuid, timestamptz, timestamptz, uuid, text, integer, timestamptz, uuid),
    slotguard.appointment_history(uuid, uuid),
    slotguard.check_availability(uuid, uuid, timestamptz, integer),
    slotguard.find_free_slots(uuid, uuid, timestamptz, timestamptz, integer, integer, integer),
    slotguard.current_org()
TO slotguard_app;

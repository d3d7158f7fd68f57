-- Issue 19: bounded answers (item 1), and the all-zero resource id as the default calendar for
-- the locks too (item 4). CREATE OR REPLACE of the functions that change, nothing else.
--
-- Item 1. A 409's conflicts and availability's overlaps were every overlapping appointment: a day
-- of 1,440 one-minute appointments with maximal notes and metadata made a 47 MB answer (Lambda
-- refuses over 6 MB). _conflicts() now builds at most 50 of them, in time order, and counts them
-- all ({conflicts, conflict_count, truncated}); its callers (book, reschedule, check_availability)
-- pass that on (a conflict answer only gains keys: the previous release, which a rollback runs
-- on this schema, reads it as before). A history lists at most 100 entries, with their count,
-- through a new function (appointment_history() stays as the previous release reads it).
--
-- Item 4.
-- The exclusion constraint appointments_no_overlap compares
-- coalesce(resource_id, '00000000-0000-0000-0000-000000000000'), so a booking with the all-zero
-- id and one without a resource are one calendar; but the advisory-lock keys were derived from
-- coalesce(resource_id::text, '-'), so the two never queued on the same lock. A booking of one
-- spelling made while one of the other was in flight skipped the lock and waited on the
-- constraint instead, past lock_timeout, outside any handler of it (a 503 that dropped the
-- connection). The keys now come from the constraint's own expression, in the two places that
-- derive them: calendar_lock_keys() (reschedules, and bookings over several hours) and the
-- single-hour key book_appointment_with_lock() inlines. Keys of other resources are unchanged;
-- the default calendar's change (a deploy-time moment where an old and a new transaction do not
-- share a key) is covered by the constraint, and a lock wait there is `busy`, not an error.
SET LOCAL ROLE slotguard_owner;

CREATE OR REPLACE FUNCTION slotguard.calendar_lock_keys(
    p_org uuid, p_resource uuid, p_start timestamptz, p_end timestamptz
) RETURNS SETOF bigint
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
    SELECT DISTINCT hashtextextended('calendar:' || p_org::text || ':'
        || coalesce(p_resource, '00000000-0000-0000-0000-000000000000'::uuid)::text || ':' || bucket::text, 0)
    FROM generate_series(
        floor(extract(epoch FROM p_start) / 3600)::bigint,
        (ceil(extract(epoch FROM p_end) / 3600)::bigint - 1)
    ) AS bucket
    ORDER BY 1
$$;

-- 0008's function, with the single-hour key derived as calendar_lock_keys() now derives it and
-- _conflicts()' bounded answer passed on as the 409.
CREATE OR REPLACE FUNCTION slotguard.book_appointment_with_lock(
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
    v_first bigint;
    v_last bigint;
    v_keys bigint[];
    v_idem bigint;
    v_i integer;
    v_j integer;
    v_waited boolean := false;
BEGIN
    IF p_org IS NULL OR p_actor IS NULL OR p_contact_id IS NULL OR p_scheduled_at IS NULL THEN
        RETURN jsonb_build_object('status', 'invalid', 'message', 'org, actor, contact and start are required');
    END IF;
    IF p_duration_minutes IS NULL OR p_duration_minutes NOT BETWEEN 1 AND 1440 THEN
        RETURN jsonb_build_object('status', 'invalid', 'message', 'duration_minutes must be 1..1440');
    END IF;
    v_end := p_scheduled_at + make_interval(mins => p_duration_minutes);
    -- slotguard._set_tenant() and slotguard._set_lock_wait() (0007's bound), inlined.
    PERFORM set_config('slotguard.org_id', p_org::text, true),
            set_config('lock_timeout', greatest(1, least(coalesce(p_lock_wait_ms, 3000), 4000))::text || 'ms', true);

    IF p_idempotency_key IS NOT NULL THEN
        -- Same key: one request at a time, so a concurrent retry replays instead of conflicting.
        v_idem := hashtextextended('idempotency:' || p_org::text || ':' || p_idempotency_key, 0);
        IF NOT pg_try_advisory_xact_lock(v_idem) THEN
            BEGIN
                PERFORM pg_advisory_xact_lock(v_idem);
            EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
                RETURN jsonb_build_object('status', 'busy');
            END;
        END IF;
        SELECT * INTO v_key FROM slotguard.booking_idempotency_keys
         WHERE org_id = p_org AND key = p_idempotency_key AND expires_at > now();
        IF FOUND THEN
            IF v_key.request_hash IS DISTINCT FROM p_request_hash THEN
                RETURN jsonb_build_object('status', 'idempotency_mismatch');
            END IF;
            SELECT * INTO v_appt FROM slotguard.appointments WHERE id = v_key.appointment_id;
            RETURN jsonb_build_object('status', 'replayed',
                                      'appointment', to_jsonb(v_appt) - 'created_by' - 'cancelled_by');
        END IF;
    END IF;

    -- The calendar's lock keys, as slotguard.calendar_lock_keys() derives them, in ascending order.
    v_first := floor(extract(epoch FROM p_scheduled_at) / 3600)::bigint;
    v_last := ceil(extract(epoch FROM v_end) / 3600)::bigint - 1;
    IF v_first = v_last THEN
        v_keys := ARRAY[hashtextextended('calendar:' || p_org::text || ':'
            || coalesce(p_resource_id, '00000000-0000-0000-0000-000000000000'::uuid)::text || ':' || v_first::text, 0)];
    ELSE
        v_keys := ARRAY(SELECT k FROM slotguard.calendar_lock_keys(p_org, p_resource_id, p_scheduled_at, v_end) AS k
                        ORDER BY 1);
    END IF;
    FOR v_i IN 1 .. cardinality(v_keys) LOOP
        IF NOT pg_try_advisory_xact_lock(v_keys[v_i]) THEN
            -- Held by another booking. If a committed booking already overlaps, that is the answer
            -- (a 409 naming it), with no place in the queue: at a hot slot every attempt after the
            -- winner's commit answers at once instead of taking the lock in turn.
            v_conflicts := slotguard._conflicts(p_org, p_resource_id, p_scheduled_at, v_end);
            IF (v_conflicts->>'conflict_count')::integer > 0 THEN
                RETURN jsonb_build_object('status', 'conflict') || v_conflicts;
            END IF;
            -- Free as far as committed bookings show: wait for the lock and the rest, in order, for
            -- at most lock_timeout, then decide under it.
            v_waited := true;
            BEGIN
                FOR v_j IN v_i .. cardinality(v_keys) LOOP
                    PERFORM pg_advisory_xact_lock(v_keys[v_j]);
                END LOOP;
            EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
                RETURN jsonb_build_object('status', 'busy');
            END;
            EXIT;
        END IF;
    END LOOP;

    LOOP
        IF v_waited THEN
            -- We queued behind another booking of this hour, most often one of the same slot (a hot
            -- slot): read the overlaps first, so the likely 409 costs no refused INSERT.
            v_conflicts := slotguard._conflicts(p_org, p_resource_id, p_scheduled_at, v_end);
            IF (v_conflicts->>'conflict_count')::integer > 0 THEN
                RETURN jsonb_build_object('status', 'conflict') || v_conflicts;
            END IF;
        END IF;
        INSERT INTO slotguard.appointments
            (org_id, contact_id, resource_id, scheduled_at, ends_at, duration_minutes, notes, metadata, created_by)
        VALUES
            (p_org, p_contact_id, p_resource_id, p_scheduled_at, v_end, p_duration_minutes, p_notes,
             coalesce(p_metadata, '{}'::jsonb), p_actor)
        ON CONFLICT DO NOTHING  -- the exclusion constraint appointments_no_overlap: the slot is taken
        RETURNING * INTO v_appt;
        EXIT WHEN FOUND;
        v_conflicts := slotguard._conflicts(p_org, p_resource_id, p_scheduled_at, v_end);
        IF (v_conflicts->>'conflict_count')::integer > 0 THEN
            RETURN jsonb_build_object('status', 'conflict') || v_conflicts;
        END IF;
        -- The overlap was cancelled between the INSERT and the read: the slot is free, try again.
    END LOOP;

    INSERT INTO slotguard.appointment_audit (org_id, appointment_id, action, actor, changes)
    VALUES (p_org, v_appt.id, 'created', p_actor, jsonb_build_object(
        'scheduled_at', p_scheduled_at, 'ends_at', v_end,
        'duration_minutes', p_duration_minutes, 'resource_id', p_resource_id));

    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO slotguard.booking_idempotency_keys (org_id, key, request_hash, appointment_id)
        VALUES (p_org, p_idempotency_key, p_request_hash, v_appt.id)
        ON CONFLICT (org_id, key) DO UPDATE  -- an expired key not yet swept by the cleanup
           SET request_hash = EXCLUDED.request_hash, appointment_id = EXCLUDED.appointment_id,
               created_at = now(), expires_at = now() + interval '24 hours';
    END IF;

    RETURN jsonb_build_object('status', 'created', 'appointment', to_jsonb(v_appt) - 'created_by' - 'cancelled_by');
END
$$;

-- The overlaps of an interval, bounded: at most 50 appointments (the first, in time order) built
-- as JSON, all of them counted (an interval of at most a day overlaps at most 1,441 active ones).
CREATE OR REPLACE FUNCTION slotguard._conflicts(
    p_org uuid, p_resource uuid, p_start timestamptz, p_end timestamptz, p_ignore uuid DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
DECLARE
    v_shown CONSTANT integer := 50;
BEGIN
    RETURN (
        SELECT jsonb_build_object(
            'conflicts', coalesce(jsonb_agg(slotguard._appointment_json(h.a) ORDER BY h.n)
                                  FILTER (WHERE h.n <= v_shown), '[]'::jsonb),
            'conflict_count', count(*),
            'truncated', count(*) > v_shown)
        FROM (
            SELECT a, row_number() OVER (ORDER BY a.scheduled_at, a.id) AS n
            FROM slotguard.appointments a
            WHERE a.org_id = p_org
              AND coalesce(a.resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
                  = coalesce(p_resource, '00000000-0000-0000-0000-000000000000'::uuid)
              AND tstzrange(a.scheduled_at, a.ends_at, '[)') && tstzrange(p_start, p_end, '[)')
              AND a.status = 'scheduled'
              AND a.id IS DISTINCT FROM p_ignore
        ) h
    );
END
$$;

CREATE OR REPLACE FUNCTION slotguard.check_availability(
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
    RETURN jsonb_build_object('available', (v_conflicts->>'conflict_count')::integer = 0) || v_conflicts;
END
$$;

-- NULL when the appointment is not the org's; otherwise its oldest 100 audit rows and their count.
-- A new function beside appointment_history(), whose answer (an array) the previous release
-- reads: a rollback runs that release on this schema, so it keeps its function as it was.
CREATE FUNCTION slotguard.appointment_history_bounded(p_org uuid, p_id uuid) RETURNS jsonb
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

-- 0003's function, passing _conflicts()' bounded answer on as the 409.
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
    IF (v_conflicts->>'conflict_count')::integer > 0 THEN
        RETURN jsonb_build_object('status', 'conflict') || v_conflicts;
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
        RETURN jsonb_build_object('status', 'conflict')
            || slotguard._conflicts(p_org, v_old.resource_id, p_scheduled_at, v_end, p_id);
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

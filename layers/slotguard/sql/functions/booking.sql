-- Booking: book_appointment_with_lock(), one call = one transaction = one round trip.
--
-- No appointment starts in the past (`rule_violation` in_the_past) unless p_backfill (an admin
-- recording one; the API checks the role, the audit row records the flag). Then the org's policy
-- and the calendar's rules, read under the org's settings lock held shared (a rule or policy
-- change holds it exclusively: they serialize): a booking that breaks the rules is refused with
-- the rule's code (`rule_violation`), one that keeps them records their version and blocks its
-- time padded by the buffers (blocked_from, blocked_until), which the exclusion constraint
-- covers; under contact_no_overlap the contact is locked and its overlaps refused
-- (`contact_conflict`). Under the calendar's hour-striped advisory locks over the padded time
-- (keys as calendar_lock_keys() derives them, taken in ascending order; the single-hour key is
-- derived inline) it inserts with ON CONFLICT
-- DO NOTHING, which the exclusion constraint appointments_no_overlap answers; only a refused
-- INSERT reads the overlaps (the 409's list). A booking whose lock is held by another first
-- reads the committed overlaps (a taken slot answers 409 at once), and after waiting reads
-- them before inserting. Locks are tried with pg_try_advisory_xact_lock() first; only a wait
-- runs in the sub-transaction that turns lock_timeout into `busy`. Tenant and lock wait are
-- set inline (the same expressions as _set_tenant() and _set_lock_wait()). Measured part by
-- part in docs/benchmarks.md ("Where the booking function's time went").
-- (Applied after the versioned migrations whenever this file changes: see slotguard/db/migrate.py.)
SET LOCAL ROLE slotguard_owner;

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
    p_lock_wait_ms integer DEFAULT 3000,
    p_backfill boolean DEFAULT false
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
    v_rules jsonb;
    v_version integer;
    v_violation jsonb;
    v_from timestamptz;  -- the blocked time: [p_scheduled_at, v_end) padded by the buffers
    v_to timestamptz;
    v_settings_key bigint;
    v_exclusive boolean;  -- the org's contact_no_overlap policy
BEGIN
    IF p_org IS NULL OR p_actor IS NULL OR p_contact_id IS NULL OR p_scheduled_at IS NULL THEN
        RETURN jsonb_build_object('status', 'invalid', 'message', 'org, actor, contact and start are required');
    END IF;
    IF p_duration_minutes IS NULL OR p_duration_minutes NOT BETWEEN 1 AND 1440 THEN
        RETURN jsonb_build_object('status', 'invalid', 'message', 'duration_minutes must be 1..1440');
    END IF;
    v_end := p_scheduled_at + make_interval(mins => p_duration_minutes);
    IF p_scheduled_at < now() AND NOT coalesce(p_backfill, false) THEN
        RETURN jsonb_build_object('status', 'rule_violation', 'code', 'in_the_past',
                                  'message', 'the appointment starts in the past');
    END IF;
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

    -- The org's policy and the calendar's rules, read under the org's settings lock held shared
    -- (a rule or policy change holds it exclusively: slotguard.settings_lock_key(), inlined).
    v_settings_key := hashtextextended('settings:' || p_org::text, 0);
    IF NOT pg_try_advisory_xact_lock_shared(v_settings_key) THEN
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(v_settings_key);
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            RETURN jsonb_build_object('status', 'busy');
        END;
    END IF;
    SELECT coalesce(p.contact_no_overlap, false), r.rules, r.version INTO v_exclusive, v_rules, v_version
      FROM (SELECT) AS one
      LEFT JOIN slotguard.org_policies p ON p.org_id = p_org
      LEFT JOIN slotguard.calendar_rules r
        ON r.org_id = p_org
       AND coalesce(r.resource_id, '00000000-0000-0000-0000-000000000000'::uuid)
           = coalesce(p_resource_id, '00000000-0000-0000-0000-000000000000'::uuid);
    v_from := p_scheduled_at;
    v_to := v_end;
    IF v_rules IS NOT NULL THEN
        v_violation := slotguard._rule_violation(v_rules, p_scheduled_at, p_duration_minutes,
                                                 CASE WHEN NOT coalesce(p_backfill, false) THEN now() END);
        IF v_violation IS NOT NULL THEN
            RETURN jsonb_build_object('status', 'rule_violation', 'rules_version', v_version) || v_violation;
        END IF;
        v_from := p_scheduled_at - make_interval(mins => coalesce((v_rules->>'buffer_before_minutes')::integer, 0));
        v_to := v_end + make_interval(mins => coalesce((v_rules->>'buffer_after_minutes')::integer, 0));
    END IF;

    IF v_exclusive THEN
        IF NOT slotguard._lock_contact(p_org, p_contact_id) THEN
            RETURN jsonb_build_object('status', 'busy');
        END IF;
        v_conflicts := slotguard._contact_conflicts(p_org, p_contact_id, p_scheduled_at, v_end);
        IF jsonb_array_length(v_conflicts) > 0 THEN
            RETURN jsonb_build_object('status', 'contact_conflict', 'conflicts', v_conflicts);
        END IF;
    END IF;

    -- The calendar's lock keys over the blocked time, as slotguard.calendar_lock_keys() derives
    -- them, in ascending order.
    v_first := floor(extract(epoch FROM v_from) / 3600)::bigint;
    v_last := ceil(extract(epoch FROM v_to) / 3600)::bigint - 1;
    IF v_first = v_last THEN
        v_keys := ARRAY[hashtextextended(
            'calendar:' || p_org::text || ':'
            || coalesce(p_resource_id, '00000000-0000-0000-0000-000000000000'::uuid)::text || ':' || v_first::text, 0)];
    ELSE
        v_keys := ARRAY(SELECT k FROM slotguard.calendar_lock_keys(p_org, p_resource_id, v_from, v_to) AS k
                        ORDER BY 1);
    END IF;
    FOR v_i IN 1 .. cardinality(v_keys) LOOP
        IF NOT pg_try_advisory_xact_lock(v_keys[v_i]) THEN
            -- Held by another booking. If a committed booking already overlaps, that is the answer
            -- (a 409 naming it), with no place in the queue: at a hot slot every attempt after the
            -- winner's commit answers at once instead of taking the lock in turn.
            v_conflicts := slotguard._conflicts(p_org, p_resource_id, v_from, v_to);
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
            v_conflicts := slotguard._conflicts(p_org, p_resource_id, v_from, v_to);
            IF (v_conflicts->>'conflict_count')::integer > 0 THEN
                RETURN jsonb_build_object('status', 'conflict') || v_conflicts;
            END IF;
        END IF;
        INSERT INTO slotguard.appointments
            (org_id, contact_id, resource_id, scheduled_at, ends_at, duration_minutes, notes, metadata, created_by,
             blocked_from, blocked_until, rules_version, contact_exclusive)
        VALUES
            (p_org, p_contact_id, p_resource_id, p_scheduled_at, v_end, p_duration_minutes, p_notes,
             coalesce(p_metadata, '{}'::jsonb), p_actor,
             nullif(v_from, p_scheduled_at), nullif(v_to, v_end), v_version, v_exclusive)
        ON CONFLICT DO NOTHING  -- the exclusion constraint appointments_no_overlap: the slot is taken
        RETURNING * INTO v_appt;
        EXIT WHEN FOUND;
        v_conflicts := slotguard._conflicts(p_org, p_resource_id, v_from, v_to);
        IF (v_conflicts->>'conflict_count')::integer > 0 THEN
            RETURN jsonb_build_object('status', 'conflict') || v_conflicts;
        END IF;
        IF v_exclusive THEN  -- refused by appointments_contact_no_overlap (a writer that skipped the lock)
            v_conflicts := slotguard._contact_conflicts(p_org, p_contact_id, p_scheduled_at, v_end);
            IF jsonb_array_length(v_conflicts) > 0 THEN
                RETURN jsonb_build_object('status', 'contact_conflict', 'conflicts', v_conflicts);
            END IF;
        END IF;
        -- The overlap was cancelled between the INSERT and the read: the slot is free, try again.
    END LOOP;

    INSERT INTO slotguard.appointment_audit (org_id, appointment_id, action, actor, changes)
    VALUES (p_org, v_appt.id, 'created', p_actor, jsonb_build_object(
        'scheduled_at', p_scheduled_at, 'ends_at', v_end,
        'duration_minutes', p_duration_minutes, 'resource_id', p_resource_id, 'rules_version', v_version)
        || CASE WHEN p_backfill THEN jsonb_build_object('backfill', true) ELSE '{}'::jsonb END);

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

REVOKE EXECUTE ON FUNCTION
    slotguard.book_appointment_with_lock(
        uuid, text, uuid, uuid, timestamptz, integer, text, jsonb, text, text, integer, boolean)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.book_appointment_with_lock(
        uuid, text, uuid, uuid, timestamptz, integer, text, jsonb, text, text, integer, boolean)
TO slotguard_app;

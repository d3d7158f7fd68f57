-- The org's booking policy (issue 20, item 3b): contact_no_overlap. Bookings read it under the
-- org's settings lock held shared; a change holds it exclusively, so the two serialize.
SET LOCAL ROLE slotguard_owner;

-- The contact's active appointments booked under the policy that overlap [p_start, p_end),
-- optionally ignoring one (the 409's list).
CREATE OR REPLACE FUNCTION slotguard._contact_conflicts(
    p_org uuid, p_contact uuid, p_start timestamptz, p_end timestamptz, p_ignore uuid DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
BEGIN
    RETURN (
        -- Bounded (issue 19): the first 50, in time order.
        SELECT coalesce(jsonb_agg(slotguard._appointment_json(f) ORDER BY f.scheduled_at, f.id), '[]'::jsonb)
        FROM (
            SELECT a.* FROM slotguard.appointments a
            WHERE a.org_id = p_org AND a.contact_id = p_contact
              AND tstzrange(a.scheduled_at, a.ends_at, '[)') && tstzrange(p_start, p_end, '[)')
              AND a.status = 'scheduled'
              AND a.id IS DISTINCT FROM p_ignore
            ORDER BY a.scheduled_at, a.id
            LIMIT 50
        ) f
    );
END
$$;

-- Takes the org's settings lock shared (lock_timeout bounded): true when granted, false when not
-- in time. Held until the transaction ends.
CREATE OR REPLACE FUNCTION slotguard._lock_settings_shared(p_org uuid) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
DECLARE
    v_key bigint := slotguard.settings_lock_key(p_org);
BEGIN
    IF NOT pg_try_advisory_xact_lock_shared(v_key) THEN
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(v_key);
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            RETURN false;
        END;
    END IF;
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION slotguard._lock_contact(p_org uuid, p_contact uuid) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, slotguard, pg_temp
AS $$
DECLARE
    v_key bigint := hashtextextended('contact:' || p_org::text || ':' || p_contact::text, 0);
BEGIN
    IF NOT pg_try_advisory_xact_lock(v_key) THEN
        BEGIN
            PERFORM pg_advisory_xact_lock(v_key);
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            RETURN false;
        END;
    END IF;
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION slotguard.get_org_policy(p_org uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
BEGIN
    PERFORM slotguard._set_tenant(p_org);
    RETURN jsonb_build_object('contact_no_overlap',
        coalesce((SELECT p.contact_no_overlap FROM slotguard.org_policies p WHERE p.org_id = p_org), false));
END
$$;

-- Turning contact_no_overlap on marks the org's active appointments that have not ended as
-- booked under it, so the constraint covers them; when some contact already overlaps itself,
-- nothing changes and the answer is `contact_conflict` listing those appointments (at most 100).
-- Turning it off unmarks every marked appointment. Both are one statement under the app role's
-- statement timeout, so both are bounded (docs/capacity.md, "Admin operations"): at most 20,000
-- appointments to mark, 50,000 to unmark; past that nothing changes and the answer is
-- `too_many_appointments` with the bound, not a timeout that no retry would get past.
CREATE OR REPLACE FUNCTION slotguard.set_org_policy(
    p_org uuid, p_actor text, p_contact_no_overlap boolean, p_lock_wait_ms integer DEFAULT 3000
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, slotguard, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    v_conflicts jsonb;
    v_max integer;
BEGIN
    IF p_org IS NULL OR p_actor IS NULL OR p_contact_no_overlap IS NULL THEN
        RAISE EXCEPTION 'org, actor and contact_no_overlap are required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM slotguard._set_tenant(p_org), slotguard._set_lock_wait(p_lock_wait_ms);
    BEGIN
        PERFORM pg_advisory_xact_lock(slotguard.settings_lock_key(p_org));
        v_max := CASE WHEN p_contact_no_overlap THEN 20000 ELSE 50000 END;
        IF (SELECT count(*) FROM (
                SELECT 1 FROM slotguard.appointments
                 WHERE org_id = p_org AND contact_exclusive IS DISTINCT FROM p_contact_no_overlap
                   AND (NOT p_contact_no_overlap OR (status = 'scheduled' AND ends_at > now()))
                 LIMIT v_max + 1) s) > v_max THEN
            RETURN jsonb_build_object('status', 'too_many_appointments', 'max', v_max);
        END IF;
        UPDATE slotguard.appointments SET contact_exclusive = p_contact_no_overlap
         WHERE org_id = p_org AND contact_exclusive IS DISTINCT FROM p_contact_no_overlap
           AND (NOT p_contact_no_overlap OR (status = 'scheduled' AND ends_at > now()));
    EXCEPTION
        WHEN lock_not_available OR deadlock_detected THEN
            RETURN jsonb_build_object('status', 'busy');
        WHEN exclusion_violation THEN
            SELECT coalesce(jsonb_agg(slotguard._appointment_json(a) ORDER BY a.scheduled_at, a.id), '[]'::jsonb)
              INTO v_conflicts
              FROM (SELECT DISTINCT ON (x.id) x.* FROM slotguard.appointments x
                    JOIN slotguard.appointments y
                      ON y.org_id = x.org_id AND y.contact_id = x.contact_id AND y.id <> x.id
                     AND y.status = 'scheduled' AND y.ends_at > now()
                     AND tstzrange(x.scheduled_at, x.ends_at, '[)') && tstzrange(y.scheduled_at, y.ends_at, '[)')
                    WHERE x.org_id = p_org AND x.status = 'scheduled' AND x.ends_at > now()
                    ORDER BY x.id LIMIT 100) a;
            RETURN jsonb_build_object('status', 'contact_conflict', 'conflicts', v_conflicts);
    END;
    INSERT INTO slotguard.org_policies (org_id, contact_no_overlap, updated_by)
    VALUES (p_org, p_contact_no_overlap, p_actor)
    ON CONFLICT (org_id) DO UPDATE
       SET contact_no_overlap = EXCLUDED.contact_no_overlap, updated_at = now(), updated_by = EXCLUDED.updated_by;
    RETURN jsonb_build_object('status', 'saved', 'policy', jsonb_build_object('contact_no_overlap', p_contact_no_overlap));
END
$$;

REVOKE EXECUTE ON FUNCTION
    slotguard._contact_conflicts(uuid, uuid, timestamptz, timestamptz, uuid),
    slotguard._lock_settings_shared(uuid),
    slotguard._lock_contact(uuid, uuid),
    slotguard.get_org_policy(uuid),
    slotguard.set_org_policy(uuid, text, boolean, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    slotguard.get_org_policy(uuid),
    slotguard.set_org_policy(uuid, text, boolean, integer)
TO slotguard_app;

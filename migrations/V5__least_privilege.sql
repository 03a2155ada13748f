-- Each role gets only what it needs; permissions change only with their registry entry;
-- a skewed reader clock no longer decides presence.
--
-- Before this migration one role, `latch_app`, had plain INSERT/UPDATE/DELETE on every
-- table but the registry, so the login the API runs with could mint admin tokens, revoke or
-- delete grants without a trace, delete outbox rows, and insert actions of any kind (which
-- the worker would then deliver, signed). Now:
--
-- - `latch_app` (the API) reads the site model and writes only what a request writes:
--   reader events into `actions` (a row-level policy admits the reader kinds only, each
--   with its reader), `presence`, the idempotency and reader-seq stores, and the two
--   reader-health columns of `readers`. Administrative changes go through the functions
--   below, which check the caller's admin token and record the action in the same
--   transaction; the API holds no other write on doors, holders, readers, grants or admins.
-- - `latch_relayer` (the relay) reads and deletes outbox rows and arms the wake-up; the
--   claim's row lock (FOR UPDATE) needs an UPDATE right on some column, so it has one on
--   `created_at` and on nothing else.
-- - `latch_operator` (`latch outbox status`, `latch dlq`, `latch events republish`) reads
--   the registry and the outbox, records `dlq_replayed` actions, and re-queues recorded
--   events through `latch_republish` (it cannot write outbox rows of its own).
-- - Admin tokens are managed by the schema's owner only (`latch admins add/revoke`),
--   through functions that record `admin_created` / `admin_revoked` actions.
-- - The outbox trigger runs as the owner, so no role needs any right on `outbox` to
--   record an action.
--
-- The worker does not connect to PostgreSQL at all.

DO $$
BEGIN
    CREATE ROLE latch_relayer NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;
DO $$
BEGIN
    CREATE ROLE latch_operator NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

REVOKE ALL ON doors, holders, admins, readers, grants, presence, outbox, idempotency,
    reader_seqs, outbox_wake, actions FROM latch_app;

GRANT SELECT ON doors, holders, admins, readers, grants TO latch_app;
GRANT UPDATE (last_seen_at, online) ON readers TO latch_app;
GRANT SELECT, INSERT, UPDATE ON presence TO latch_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency, reader_seqs TO latch_app;
GRANT SELECT, INSERT ON actions TO latch_app;

GRANT SELECT, DELETE ON outbox TO latch_relayer;
GRANT UPDATE (created_at) ON outbox TO latch_relayer;
GRANT SELECT, UPDATE ON outbox_wake TO latch_relayer;

GRANT SELECT ON outbox TO latch_operator;
GRANT SELECT, INSERT ON actions TO latch_operator;

-- The registry admits, from the API, reader events only (the owner — and so the
-- functions below, which run as the owner — bypasses these policies).
ALTER TABLE actions ENABLE ROW LEVEL SECURITY;
CREATE POLICY actions_readable ON actions FOR SELECT TO latch_app, latch_operator USING (true);
CREATE POLICY reader_events ON actions FOR INSERT TO latch_app WITH CHECK (
    kind IN ('check_in', 'check_out', 'unlock_granted', 'unlock_denied',
             'offline_decision_disputed', 'door_forced_open', 'door_forced_open_restored',
             'door_held_open', 'door_held_open_restored', 'reader_tamper',
             'reader_tamper_restored', 'reader_offline', 'reader_online')
    AND reader_id IS NOT NULL AND actor_id IS NULL
);
CREATE POLICY replay_records ON actions FOR INSERT TO latch_operator WITH CHECK (
    kind = 'dlq_replayed' AND reader_id IS NULL AND actor_id IS NULL
);

-- The outbox trigger as V4 wrote it, now running as its owner (with a fixed search_path,
-- so that a caller's temporary tables cannot stand in for the outbox).
ALTER FUNCTION latch_action_to_outbox() SECURITY DEFINER SET search_path = public, pg_temp;

-- Partitions: a bounded number of months ahead.
CREATE OR REPLACE FUNCTION latch_ensure_action_partitions(months_ahead int) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    month_start timestamptz;
    part text;
    created int := 0;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 24 THEN
        RAISE EXCEPTION 'months_ahead must be 0 to 24, got %', months_ahead
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 0..months_ahead LOOP
        month_start := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                       + make_interval(months => i);
        part := 'actions_' || to_char(month_start AT TIME ZONE 'UTC', 'YYYY_MM');
        IF to_regclass(part) IS NULL THEN
            BEGIN
                EXECUTE format('CREATE TABLE %I PARTITION OF actions FOR VALUES FROM (%L) TO (%L)',
                               part, month_start, month_start + interval '1 month');
                created := created + 1;
            EXCEPTION WHEN duplicate_table THEN
                NULL;
            END;
        END IF;
    END LOOP;
    RETURN created;
END
$$;

-- A reader's clock never decides presence: the roll-call orders check-ins and check-outs
-- by the reader's clock capped at the server's (and a live post whose clock was flagged
-- skewed by the server's clock alone). Rows a future-dated event pinned come back to now.
UPDATE presence SET as_of = now() WHERE as_of > now();

-- Administrative changes. Each takes the SHA-256 of the caller's admin token (checked here,
-- so that the API's login cannot act without one), the new action's id and the request's
-- traceparent, and answers what happened as a word, never an error: `done`, or why not
-- (`unauthorized`, `conflict`, `not_found`, `door_not_found`, `holder_not_found`,
-- `already`). The change and its action commit together.

CREATE FUNCTION latch_admin_id(p_token bytea) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT id FROM admins WHERE token_hash = p_token AND revoked_at IS NULL
$$;

CREATE FUNCTION latch_record_admin_action(
    p_action uuid, p_kind text, p_actor uuid, p_trace text, p_site text,
    p_door uuid DEFAULT NULL, p_holder uuid DEFAULT NULL, p_reader uuid DEFAULT NULL,
    p_grant uuid DEFAULT NULL, p_reason text DEFAULT NULL
) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO actions (id, kind, site, door_id, holder_id, reader_id, grant_id, actor_id,
                         reason, occurred_at, trace_parent)
    VALUES (p_action, p_kind, p_site, p_door, p_holder, p_reader, p_grant, p_actor, p_reason,
            now(), p_trace)
$$;

CREATE FUNCTION latch_create_door(p_token bytea, p_action uuid, p_trace text, p_id uuid,
                                  p_site text, p_name text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    INSERT INTO doors (id, site, name) VALUES (p_id, p_site, p_name)
        ON CONFLICT (site, name) DO NOTHING;
    IF NOT FOUND THEN RETURN 'conflict'; END IF;
    PERFORM latch_record_admin_action(p_action, 'door_created', actor, p_trace, p_site,
                                      p_door => p_id);
    RETURN 'done';
END
$$;

CREATE FUNCTION latch_create_holder(p_token bytea, p_action uuid, p_trace text, p_id uuid,
                                    p_card text, p_name text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    INSERT INTO holders (id, card_id, name) VALUES (p_id, p_card, p_name)
        ON CONFLICT (card_id) DO NOTHING;
    IF NOT FOUND THEN RETURN 'conflict'; END IF;
    PERFORM latch_record_admin_action(p_action, 'holder_created', actor, p_trace, NULL,
                                      p_holder => p_id);
    RETURN 'done';
END
$$;

CREATE FUNCTION latch_update_holder(p_token bytea, p_action uuid, p_trace text, p_id uuid,
                                    p_active boolean, p_name text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    UPDATE holders SET active = COALESCE(p_active, active), name = COALESCE(p_name, name)
        WHERE id = p_id;
    IF NOT FOUND THEN RETURN 'not_found'; END IF;
    PERFORM latch_record_admin_action(p_action, 'holder_updated', actor, p_trace, NULL,
                                      p_holder => p_id);
    RETURN 'done';
END
$$;

CREATE FUNCTION latch_enrol_reader(p_token bytea, p_action uuid, p_trace text, p_id uuid,
                                   p_door uuid, p_name text, p_key_hash bytea,
                                   p_offline_after_secs bigint) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
    door_site text;
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    SELECT site INTO door_site FROM doors WHERE id = p_door FOR KEY SHARE;
    IF NOT FOUND THEN RETURN 'door_not_found'; END IF;
    INSERT INTO readers (id, door_id, name, key_hash, offline_after)
    VALUES (p_id, p_door, p_name, p_key_hash,
            COALESCE(p_offline_after_secs * interval '1 second', interval '5 minutes'));
    PERFORM latch_record_admin_action(p_action, 'reader_enrolled', actor, p_trace, door_site,
                                      p_door => p_door, p_reader => p_id);
    RETURN 'done';
END
$$;

CREATE FUNCTION latch_disable_reader(p_token bytea, p_action uuid, p_trace text, p_id uuid)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
    was_enabled boolean;
    reader_door uuid;
    door_site text;
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    SELECT r.enabled, r.door_id, d.site INTO was_enabled, reader_door, door_site
        FROM readers r JOIN doors d ON d.id = r.door_id WHERE r.id = p_id FOR UPDATE OF r;
    IF NOT FOUND THEN RETURN 'not_found'; END IF;
    IF NOT was_enabled THEN RETURN 'already'; END IF;
    UPDATE readers SET enabled = false, disabled_at = now() WHERE id = p_id;
    PERFORM latch_record_admin_action(p_action, 'reader_disabled', actor, p_trace, door_site,
                                      p_door => reader_door, p_reader => p_id);
    RETURN 'done';
END
$$;

CREATE FUNCTION latch_create_grant(p_token bytea, p_action uuid, p_trace text, p_id uuid,
                                   p_holder uuid, p_door uuid, p_valid_from timestamptz,
                                   p_valid_until timestamptz) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
    door_site text;
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    SELECT site INTO door_site FROM doors WHERE id = p_door FOR KEY SHARE;
    IF NOT FOUND THEN RETURN 'door_not_found'; END IF;
    PERFORM FROM holders WHERE id = p_holder FOR KEY SHARE;
    IF NOT FOUND THEN RETURN 'holder_not_found'; END IF;
    INSERT INTO grants (id, holder_id, door_id, valid_from, valid_until, granted_by)
    VALUES (p_id, p_holder, p_door, p_valid_from, p_valid_until, actor);
    PERFORM latch_record_admin_action(p_action, 'grant_created', actor, p_trace, door_site,
                                      p_door => p_door, p_holder => p_holder, p_grant => p_id);
    RETURN 'done';
END
$$;

CREATE FUNCTION latch_revoke_grant(p_token bytea, p_action uuid, p_trace text, p_id uuid)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
    revoked timestamptz;
    grant_holder uuid;
    grant_door uuid;
    door_site text;
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    SELECT g.revoked_at, g.holder_id, g.door_id, d.site
        INTO revoked, grant_holder, grant_door, door_site
        FROM grants g JOIN doors d ON d.id = g.door_id WHERE g.id = p_id FOR UPDATE OF g;
    IF NOT FOUND THEN RETURN 'not_found'; END IF;
    IF revoked IS NOT NULL THEN RETURN 'already'; END IF;
    UPDATE grants SET revoked_at = now(), revoked_by = actor WHERE id = p_id;
    PERFORM latch_record_admin_action(p_action, 'grant_revoked', actor, p_trace, door_site,
                                      p_door => grant_door, p_holder => grant_holder,
                                      p_grant => p_id);
    RETURN 'done';
END
$$;

-- Admin tokens, for the owner's login only (not granted to any role). The action records
-- which database login did it.
CREATE FUNCTION latch_add_admin(p_action uuid, p_id uuid, p_name text, p_token bytea)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO admins (id, name, token_hash) VALUES (p_id, p_name, p_token);
    PERFORM latch_record_admin_action(p_action, 'admin_created', NULL, NULL, NULL,
                                      p_reason => format('admin %s (%s) added by database login %s',
                                                         p_id, p_name, session_user));
    RETURN 'done';
END
$$;

CREATE FUNCTION latch_revoke_admin(p_action uuid, p_id uuid) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE admins SET revoked_at = now() WHERE id = p_id AND revoked_at IS NULL;
    IF NOT FOUND THEN RETURN 'not_found'; END IF;
    PERFORM latch_record_admin_action(p_action, 'admin_revoked', NULL, NULL, NULL,
                                      p_reason => format('admin %s revoked by database login %s',
                                                         p_id, session_user));
    RETURN 'done';
END
$$;

-- Re-queues recorded events for publishing (`latch events republish`): the rows keep
-- registry order (and so per-holder order), get new outbox ids (new message ids, which the
-- stream does not mistake for the originals) and keep their event ids (sinks apply each
-- once). With a sink, they go to `latch.replay.<sink>`, which only that sink consumes.
CREATE FUNCTION latch_republish(p_since timestamptz, p_until timestamptz, p_kind text,
                                p_sink text) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH picked AS (
        SELECT a.* FROM actions a
        WHERE a.recorded_at >= p_since AND (p_until IS NULL OR a.recorded_at < p_until)
          AND (p_kind IS NULL OR a.kind = p_kind)
        ORDER BY a.recorded_at, a.id
    ), queued AS (
        INSERT INTO outbox (event_id, subject, ordering_key, payload, headers)
        SELECT p.id,
               CASE WHEN p_sink IS NULL THEN 'latch.events.' || p.kind
                    ELSE 'latch.replay.' || p_sink END,
               COALESCE(p.holder_id::text, p.door_id::text, p.id::text),
               latch_event_envelope(to_jsonb(p)),
               jsonb_strip_nulls(jsonb_build_object('Latch-Event-Id', p.id::text,
                                                    'traceparent', p.trace_parent))
        FROM picked p
        ORDER BY p.recorded_at, p.id
        RETURNING 1
    )
    SELECT count(*) FROM queued, pg_notify('latch_outbox', '')
$$;

REVOKE ALL ON FUNCTION latch_admin_id(bytea), latch_record_admin_action(uuid, text, uuid, text, text, uuid, uuid, uuid, uuid, text),
    latch_create_door(bytea, uuid, text, uuid, text, text),
    latch_create_holder(bytea, uuid, text, uuid, text, text),
    latch_update_holder(bytea, uuid, text, uuid, boolean, text),
    latch_enrol_reader(bytea, uuid, text, uuid, uuid, text, bytea, bigint),
    latch_disable_reader(bytea, uuid, text, uuid),
    latch_create_grant(bytea, uuid, text, uuid, uuid, uuid, timestamptz, timestamptz),
    latch_revoke_grant(bytea, uuid, text, uuid),
    latch_add_admin(uuid, uuid, text, bytea), latch_revoke_admin(uuid, uuid),
    latch_republish(timestamptz, timestamptz, text, text),
    latch_action_to_outbox(), latch_event_envelope(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    latch_create_door(bytea, uuid, text, uuid, text, text),
    latch_create_holder(bytea, uuid, text, uuid, text, text),
    latch_update_holder(bytea, uuid, text, uuid, boolean, text),
    latch_enrol_reader(bytea, uuid, text, uuid, uuid, text, bytea, bigint),
    latch_disable_reader(bytea, uuid, text, uuid),
    latch_create_grant(bytea, uuid, text, uuid, uuid, uuid, timestamptz, timestamptz),
    latch_revoke_grant(bytea, uuid, text, uuid)
    TO latch_app;
GRANT EXECUTE ON FUNCTION latch_republish(timestamptz, timestamptz, text, text) TO latch_operator;

-- A new reader's key is shown once and never stored: keys that earlier versions kept in
-- the idempotency store with the enrolment's response are removed from it.
UPDATE idempotency SET response = response - 'key'
WHERE response ? 'key' AND response ? 'offline_after_secs';

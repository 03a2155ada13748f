-- What the operator console needs from the API.
--
-- Dead letters through the API (`/v1/dead-letters`): an administrator's replay or purge is
-- recorded in the registry with its author, like every other administrative change.
--
-- - `latch_record_dead_letter_action` records one dead letter replayed (`dlq_replayed`) or
--   purged (`dlq_purged`), with the event's site, door, holder and grant (and the webhook
--   endpoint, for an endpoint's dead letter) so the registry can be read by any of them.
--   Dead letters hold events of every site: only an `admin` token for every site may act
--   on them (as for webhook endpoints). `latch dlq` keeps recording its replays as the
--   operator's login (migration V5), without an administrator.

CREATE FUNCTION latch_record_dead_letter_action(p_token bytea, p_action uuid, p_trace text,
                                                p_kind text, p_site text, p_door uuid,
                                                p_holder uuid, p_grant uuid, p_endpoint uuid,
                                                p_reason text)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    IF latch_endpoint_admin(p_token) IS NULL THEN RETURN 'forbidden'; END IF;
    IF p_kind NOT IN ('dlq_replayed', 'dlq_purged') THEN
        RAISE EXCEPTION 'not a dead-letter action: %', p_kind;
    END IF;
    INSERT INTO actions (id, kind, site, door_id, holder_id, grant_id, endpoint_id, actor_id,
                         reason, occurred_at, trace_parent)
    VALUES (p_action, p_kind, p_site, p_door, p_holder, p_grant, p_endpoint, actor, p_reason,
            now(), p_trace);
    RETURN 'done';
END
$$;

REVOKE ALL ON FUNCTION latch_record_dead_letter_action(bytea, uuid, text, text, text, uuid, uuid,
                                                       uuid, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION latch_record_dead_letter_action(bytea, uuid, text, text, text, uuid,
                                                          uuid, uuid, uuid, text) TO latch_app;

-- The outbox's backlog for `GET /v1/pipeline`: the API's login may not read the outbox
-- itself (its rows are events not yet published), only how many wait and for how long.
CREATE FUNCTION latch_outbox_backlog(OUT pending_rows bigint, OUT oldest_age_seconds float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0)
    FROM outbox
$$;

REVOKE ALL ON FUNCTION latch_outbox_backlog() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION latch_outbox_backlog() TO latch_app;

-- A session may make changes (the operator console's buttons) only with its CSRF token:
-- a second secret, returned once by `POST /v1/sessions` to the page that logged in and
-- never put in a cookie, sent back in `X-CSRF-Token` with every change. Only its SHA-256
-- is kept. Sessions started before this column existed have none, and stay read-only.
ALTER TABLE sessions ADD COLUMN csrf_hash bytea CHECK (octet_length(csrf_hash) = 32);

-- Roll-call during an evacuation: a marshal marks a person on site safe (`marked_safe`,
-- an action with its author, published like every other). The mark belongs to the
-- person's current stay: it counts while `safe_at` is not before `as_of`, so a later
-- check-out or check-in (which moves `as_of`) leaves it behind without the check-in path
-- having to clear it. Marking someone already marked records nothing (`already`).
ALTER TABLE presence ADD COLUMN safe_at timestamptz, ADD COLUMN safe_by uuid;

CREATE FUNCTION latch_mark_safe(p_token bytea, p_action uuid, p_trace text, p_site text,
                                p_holder uuid)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
    door uuid;
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    IF NOT latch_token_allows(p_token, 'sites:write', p_site) THEN RETURN 'forbidden'; END IF;
    SELECT door_id INTO door FROM presence
        WHERE site = p_site AND holder_id = p_holder AND present
        FOR UPDATE;
    IF NOT FOUND THEN RETURN 'not_found'; END IF;
    UPDATE presence SET safe_at = now(), safe_by = actor
        WHERE site = p_site AND holder_id = p_holder
          AND (safe_at IS NULL OR safe_at < as_of);
    IF NOT FOUND THEN RETURN 'already'; END IF;
    PERFORM latch_record_admin_action(p_action, 'marked_safe', actor, p_trace, p_site,
                                      p_door => door, p_holder => p_holder,
                                      p_reason => 'marked safe at the roll-call');
    RETURN 'done';
END
$$;

REVOKE ALL ON FUNCTION latch_mark_safe(bytea, uuid, text, text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION latch_mark_safe(bytea, uuid, text, text, uuid) TO latch_app;

-- Open alarms (`GET /v1/alarms`): the latest alarm action of each kind per door, found
-- without reading the door's every check-in — alarm actions are few, so this index is
-- small and costs nothing on the check-in and unlock paths (their rows are not in it).
CREATE INDEX actions_alarms ON actions (door_id, recorded_at)
    WHERE kind IN ('door_forced_open', 'door_forced_open_restored', 'door_held_open',
                   'door_held_open_restored', 'reader_tamper', 'reader_tamper_restored',
                   'offline_decision_disputed');

-- Webhook endpoints: many integrators, each with its own URL, filter, secret and failures.
--
-- - `webhook_endpoints`: one row per subscriber, managed by administrators through the
--   functions below (each records its action: `webhook_endpoint_created`, `_updated`,
--   `_deleted`, `_enabled`, `_disabled`, `webhook_secret_rotated`,
--   `webhook_recovery_started`), so every change is in
--   the registry with its author, like every other administrative change. An action about
--   an endpoint names it in the new `endpoint_id` column, which the envelope carries.
-- - The signing secret (`whsec_…`) is kept as written: the worker must sign with it. Only
--   the schema's owner and the worker's group (`latch_deliverer`) may read it; the API's
--   login sees every other column. After a rotation the previous secret signs beside the
--   new one until `previous_secret_until`.
-- - An action's reason names the endpoint by its id, never its URL: events go to every
--   subscriber, and URLs often carry a receiver's token.
-- - Delivery state, written by the worker: `position` (the event stream's sequence up to
--   which every event routed to the endpoint has been delivered or dead-lettered; NULL:
--   not started, it starts with the first event stored at or after `start_at`),
--   `last_success_at`, `failing_since`, counts of calls delivered, failed and events
--   dead-lettered, and the breaker's state. A disabled endpoint keeps its position:
--   enabling it resumes from there, or from `start_at` = now when the operator asks.
-- - A recovery (`latch_recover_webhook_endpoint`) moves the endpoint's cursor back to a
--   time — never forward: what it has not delivered yet stays to deliver. Every event
--   routed to it since then is delivered again, in order, with its original id, before
--   newer ones; the cursor is saved as it goes, so a recovery survives a restart, and
--   `position` shows how far it is.
-- - `webhook_attempts`: every call made to an endpoint (time, event, status or error
--   class, latency, the first KiB of the answer), pruned by the worker after a retention
--   period.
-- - `latch_deliverer`: the worker's group. It reads endpoints, writes their delivery state
--   and attempts, and disables an endpoint (410 Gone, or failing too long) through
--   `latch_disable_webhook_endpoint`, which records the action.

DO $$
BEGIN
    CREATE ROLE latch_deliverer NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

CREATE TABLE webhook_endpoints (
    id                    uuid PRIMARY KEY,
    url                   text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    description           text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    kinds                 text[] CHECK (kinds IS NULL OR cardinality(kinds) BETWEEN 1 AND 64),
    sites                 text[] CHECK (sites IS NULL OR cardinality(sites) BETWEEN 1 AND 100),
    rate_per_second       integer NOT NULL CHECK (rate_per_second BETWEEN 1 AND 1000),
    secret                text NOT NULL,
    previous_secret       text,
    previous_secret_until timestamptz,
    CHECK ((previous_secret IS NULL) = (previous_secret_until IS NULL)),
    disabled_at           timestamptz,
    disabled_reason       text,
    created_by            uuid NOT NULL REFERENCES admins (id),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    start_at              timestamptz NOT NULL DEFAULT now(),
    position              bigint CHECK (position >= 0),
    last_success_at       timestamptz,
    failing_since         timestamptz,
    delivered_count       bigint NOT NULL DEFAULT 0,
    failed_count          bigint NOT NULL DEFAULT 0,
    dead_lettered_count   bigint NOT NULL DEFAULT 0,
    breaker               text NOT NULL DEFAULT 'closed'
                          CHECK (breaker IN ('closed', 'open', 'half_open')),
    recover_since         timestamptz,
    recover_requested_at  timestamptz,
    -- The recovery the worker has moved the cursor back for (= recover_requested_at once
    -- applied): a restart in the middle of a recovery resumes it, not starts it again.
    recover_applied_at    timestamptz
);

CREATE TABLE webhook_attempts (
    endpoint_id  uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    attempted_at timestamptz NOT NULL,
    event_id     uuid NOT NULL,
    -- delivered | retry | failed (permanent: dead-lettered)
    outcome      text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
    status       smallint,
    -- Without an answer: connection_failed, timeout, transport, address_refused.
    error        text,
    latency_ms   integer NOT NULL CHECK (latency_ms >= 0),
    response     text CHECK (octet_length(response) <= 1024),
    PRIMARY KEY (endpoint_id, id)
);
CREATE INDEX webhook_attempts_by_time ON webhook_attempts (attempted_at);

ALTER TABLE actions ADD COLUMN endpoint_id uuid;

-- The worker's group reads the endpoints (secrets included), writes what delivery learns.
GRANT SELECT ON webhook_endpoints TO latch_deliverer;
GRANT UPDATE (position, last_success_at, failing_since, delivered_count, failed_count,
               dead_lettered_count, breaker, recover_applied_at)
    ON webhook_endpoints TO latch_deliverer;
GRANT SELECT, INSERT, DELETE ON webhook_attempts TO latch_deliverer;
-- The API reads everything but the secrets.
GRANT SELECT (id, url, description, kinds, sites, rate_per_second, previous_secret_until,
              disabled_at, disabled_reason, created_by, created_at, updated_at, start_at,
              position, last_success_at, failing_since, delivered_count, failed_count,
              dead_lettered_count, breaker, recover_since, recover_requested_at,
              recover_applied_at)
    ON webhook_endpoints TO latch_app, latch_operator;
GRANT SELECT ON webhook_attempts TO latch_app, latch_operator;

CREATE OR REPLACE FUNCTION latch_event_envelope(a jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', a->'id',
        'kind', a->'kind',
        'schema_version', 2,
        'occurred_at', to_char((a->>'occurred_at')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'recorded_at', to_char((a->>'recorded_at')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'site', a->'site',
        'door_id', a->'door_id',
        'holder_id', a->'holder_id',
        'reader_id', a->'reader_id',
        'reader_seq', a->'reader_seq',
        'sequence', a->'ordering_seq',
        'decided_offline', a->'decided_offline',
        'decision', a->'decision',
        'reason', a->'reason',
        'grant_id', a->'grant_id',
        'actor_id', a->'actor_id',
        'endpoint_id', a->'endpoint_id'
    )
$$;
REVOKE ALL ON FUNCTION latch_event_envelope(jsonb) FROM PUBLIC;

-- An action about an endpoint (no site, no door, no holder).
CREATE FUNCTION latch_record_endpoint_action(p_action uuid, p_kind text, p_actor uuid,
                                             p_trace text, p_endpoint uuid, p_reason text)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO actions (id, kind, actor_id, endpoint_id, reason, occurred_at, trace_parent)
    VALUES (p_action, p_kind, p_actor, p_endpoint, p_reason, now(), p_trace)
$$;

-- Managing endpoints takes an `admin` token for every site: an endpoint may receive any
-- site's events.
CREATE FUNCTION latch_endpoint_admin(p_token bytea) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT id FROM admins
    WHERE token_hash = p_token AND revoked_at IS NULL
      AND (expires_at IS NULL OR expires_at > now())
      AND 'admin' = ANY (scopes) AND sites IS NULL
$$;

CREATE FUNCTION latch_create_webhook_endpoint(p_token bytea, p_action uuid, p_trace text,
                                              p_id uuid, p_url text, p_description text,
                                              p_kinds text[], p_sites text[], p_rate integer,
                                              p_secret text)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    IF latch_endpoint_admin(p_token) IS NULL THEN RETURN 'forbidden'; END IF;
    INSERT INTO webhook_endpoints (id, url, description, kinds, sites, rate_per_second,
                                   secret, created_by)
    VALUES (p_id, p_url, p_description, p_kinds, p_sites, p_rate, p_secret, actor);
    PERFORM latch_record_endpoint_action(p_action, 'webhook_endpoint_created', actor, p_trace,
        p_id, format('endpoint %s created', p_id));
    RETURN 'done';
END
$$;

-- Changes what is given (NULL: unchanged; `p_clear_*`: back to every kind / every site).
-- Enabling (p_disabled = false) resumes from the endpoint's position, or from now when
-- `p_from_now`.
CREATE FUNCTION latch_update_webhook_endpoint(p_token bytea, p_action uuid, p_trace text,
                                              p_id uuid, p_url text, p_description text,
                                              p_kinds text[], p_clear_kinds boolean,
                                              p_sites text[], p_clear_sites boolean,
                                              p_rate integer, p_disabled boolean,
                                              p_from_now boolean)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
    was webhook_endpoints;
    kind text := 'webhook_endpoint_updated';
    why text;
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    IF latch_endpoint_admin(p_token) IS NULL THEN RETURN 'forbidden'; END IF;
    SELECT * INTO was FROM webhook_endpoints WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN RETURN 'not_found'; END IF;
    UPDATE webhook_endpoints SET
        url = COALESCE(p_url, url),
        description = COALESCE(p_description, description),
        kinds = CASE WHEN p_clear_kinds THEN NULL ELSE COALESCE(p_kinds, kinds) END,
        sites = CASE WHEN p_clear_sites THEN NULL ELSE COALESCE(p_sites, sites) END,
        rate_per_second = COALESCE(p_rate, rate_per_second),
        disabled_at = CASE WHEN p_disabled IS NULL THEN disabled_at
                           WHEN p_disabled THEN COALESCE(disabled_at, now()) END,
        disabled_reason = CASE WHEN p_disabled IS NULL THEN disabled_reason
                               WHEN p_disabled THEN COALESCE(disabled_reason, 'disabled by an administrator') END,
        failing_since = CASE WHEN p_disabled = false THEN NULL ELSE failing_since END,
        start_at = CASE WHEN p_disabled = false AND p_from_now THEN now() ELSE start_at END,
        position = CASE WHEN p_disabled = false AND p_from_now THEN NULL ELSE position END,
        updated_at = now()
    WHERE id = p_id;
    IF p_disabled AND was.disabled_at IS NULL THEN
        kind := 'webhook_endpoint_disabled';
        why := format('endpoint %s disabled by an administrator', p_id);
    ELSIF p_disabled = false AND was.disabled_at IS NOT NULL THEN
        kind := 'webhook_endpoint_enabled';
        why := format('endpoint %s enabled, delivering %s', p_id,
                      CASE WHEN p_from_now THEN 'from now' ELSE 'from where it stopped' END);
    ELSE
        why := format('endpoint %s updated', p_id);
    END IF;
    PERFORM latch_record_endpoint_action(p_action, kind, actor, p_trace, p_id, why);
    RETURN 'done';
END
$$;

CREATE FUNCTION latch_delete_webhook_endpoint(p_token bytea, p_action uuid, p_trace text,
                                              p_id uuid)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    IF latch_endpoint_admin(p_token) IS NULL THEN RETURN 'forbidden'; END IF;
    DELETE FROM webhook_endpoints WHERE id = p_id;
    IF NOT FOUND THEN RETURN 'not_found'; END IF;
    PERFORM latch_record_endpoint_action(p_action, 'webhook_endpoint_deleted', actor, p_trace,
        p_id, format('endpoint %s deleted', p_id));
    RETURN 'done';
END
$$;

-- A new secret; the current one signs beside it until now + the grace period (0: not at
-- all). A secret older than that is forgotten.
CREATE FUNCTION latch_rotate_webhook_secret(p_token bytea, p_action uuid, p_trace text,
                                            p_id uuid, p_secret text, p_grace_secs bigint)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
    until timestamptz := now() + make_interval(secs => GREATEST(p_grace_secs, 0));
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    IF latch_endpoint_admin(p_token) IS NULL THEN RETURN 'forbidden'; END IF;
    UPDATE webhook_endpoints SET
        previous_secret = CASE WHEN p_grace_secs > 0 THEN secret END,
        previous_secret_until = CASE WHEN p_grace_secs > 0 THEN until END,
        secret = p_secret,
        updated_at = now()
    WHERE id = p_id;
    IF NOT FOUND THEN RETURN 'not_found'; END IF;
    PERFORM latch_record_endpoint_action(p_action, 'webhook_secret_rotated', actor, p_trace,
        p_id, CASE WHEN p_grace_secs > 0
            THEN format('endpoint %s has a new secret; the previous one signs beside it until %s',
                        p_id, to_char(until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
            ELSE format('endpoint %s has a new secret; the previous one no longer signs', p_id)
        END);
    RETURN 'done';
END
$$;

-- Delivers again everything routed to the endpoint since `p_since`: the worker moves its
-- cursor back to the first event stored since then, if that is before it.
CREATE FUNCTION latch_recover_webhook_endpoint(p_token bytea, p_action uuid, p_trace text,
                                               p_id uuid, p_since timestamptz)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    IF latch_endpoint_admin(p_token) IS NULL THEN RETURN 'forbidden'; END IF;
    UPDATE webhook_endpoints SET
        start_at = LEAST(start_at, p_since), recover_since = p_since,
        recover_requested_at = clock_timestamp(), updated_at = now()
    WHERE id = p_id;
    IF NOT FOUND THEN RETURN 'not_found'; END IF;
    PERFORM latch_record_endpoint_action(p_action, 'webhook_recovery_started', actor, p_trace,
        p_id, format('endpoint %s: every event routed to it since %s is delivered again',
                     p_id, to_char(p_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')));
    RETURN 'done';
END
$$;

-- The worker disables an endpoint (410 Gone, or no success for too long); `already` if it
-- was disabled meanwhile.
CREATE FUNCTION latch_disable_webhook_endpoint(p_action uuid, p_id uuid, p_reason text)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE webhook_endpoints
        SET disabled_at = now(), disabled_reason = p_reason, updated_at = now()
        WHERE id = p_id AND disabled_at IS NULL;
    IF NOT FOUND THEN
        RETURN CASE WHEN EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = p_id)
                    THEN 'already' ELSE 'not_found' END;
    END IF;
    PERFORM latch_record_endpoint_action(p_action, 'webhook_endpoint_disabled', NULL, NULL,
        p_id, format('endpoint %s disabled: %s', p_id, p_reason));
    RETURN 'done';
END
$$;

REVOKE ALL ON FUNCTION latch_record_endpoint_action(uuid, text, uuid, text, uuid, text),
    latch_endpoint_admin(bytea),
    latch_create_webhook_endpoint(bytea, uuid, text, uuid, text, text, text[], text[], integer, text),
    latch_update_webhook_endpoint(bytea, uuid, text, uuid, text, text, text[], boolean, text[], boolean, integer, boolean, boolean),
    latch_delete_webhook_endpoint(bytea, uuid, text, uuid),
    latch_rotate_webhook_secret(bytea, uuid, text, uuid, text, bigint),
    latch_recover_webhook_endpoint(bytea, uuid, text, uuid, timestamptz),
    latch_disable_webhook_endpoint(uuid, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    latch_create_webhook_endpoint(bytea, uuid, text, uuid, text, text, text[], text[], integer, text),
    latch_update_webhook_endpoint(bytea, uuid, text, uuid, text, text, text[], boolean, text[], boolean, integer, boolean, boolean),
    latch_delete_webhook_endpoint(bytea, uuid, text, uuid),
    latch_rotate_webhook_secret(bytea, uuid, text, uuid, text, bigint),
    latch_recover_webhook_endpoint(bytea, uuid, text, uuid, timestamptz)
    TO latch_app;
GRANT EXECUTE ON FUNCTION latch_disable_webhook_endpoint(uuid, uuid, text) TO latch_deliverer;

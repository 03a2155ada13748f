-- latch's schema: the site model, the append-only action registry, the outbox and the
-- idempotency store.
--
-- Ownership: these objects belong to the login that runs `latch migrate`. The API, relay
-- and worker connect as a login that is a member of the NOLOGIN role `latch_app`, which
-- may only INSERT and SELECT the registry (it cannot rewrite history) and has the plain
-- DML it needs on the rest.

DO $$
BEGIN
    CREATE ROLE latch_app NOLOGIN;
EXCEPTION
    -- Roles are cluster-wide: another database of the same cluster may have made it, and
    -- two migrations racing may see either error.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

CREATE TABLE doors (
    id          uuid PRIMARY KEY,
    site        text NOT NULL CHECK (site ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site, name)
);

CREATE TABLE holders (
    id          uuid PRIMARY KEY,
    card_id     text NOT NULL UNIQUE CHECK (length(card_id) BETWEEN 1 AND 128),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE admins (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE readers (
    id          uuid PRIMARY KEY,
    door_id     uuid NOT NULL REFERENCES doors (id),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    key_hash    bytea NOT NULL UNIQUE,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);
CREATE INDEX readers_by_door ON readers (door_id);

CREATE TABLE grants (
    id          uuid PRIMARY KEY,
    holder_id   uuid NOT NULL REFERENCES holders (id),
    door_id     uuid NOT NULL REFERENCES doors (id),
    valid_from  timestamptz NOT NULL,
    valid_until timestamptz,
    granted_by  uuid NOT NULL REFERENCES admins (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    revoked_by  uuid REFERENCES admins (id),
    CHECK (valid_until IS NULL OR valid_until > valid_from)
);
-- The unlock decision reads a holder's grants for one door.
CREATE INDEX grants_by_holder_door ON grants (holder_id, door_id);
CREATE INDEX grants_by_door ON grants (door_id);

-- Who is on a site now. One row per (site, holder); `as_of` is the reader-clock time of
-- the check-in/out that set it, so a late upload cannot override a newer state.
CREATE TABLE presence (
    site        text NOT NULL,
    holder_id   uuid NOT NULL REFERENCES holders (id),
    present     boolean NOT NULL,
    door_id     uuid NOT NULL REFERENCES doors (id),
    as_of       timestamptz NOT NULL,
    action_id   uuid NOT NULL,
    PRIMARY KEY (site, holder_id)
);
CREATE INDEX presence_on_site ON presence (site) WHERE present;

-- The registry: one row per accepted or denied action, never updated or deleted by the
-- application. Partitioned by month on the server clock; old months are dropped whole.
CREATE TABLE actions (
    id              uuid NOT NULL,
    kind            text NOT NULL,
    site            text,
    door_id         uuid,
    holder_id       uuid,
    card_id         text,
    reader_id       uuid,
    reader_seq      bigint,
    grant_id        uuid,
    actor_id        uuid,
    decision        text CHECK (decision IN ('granted', 'denied')),
    reason          text,
    decided_offline boolean NOT NULL DEFAULT false,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    trace_parent    text,
    PRIMARY KEY (recorded_at, id)
) PARTITION BY RANGE (recorded_at);
CREATE INDEX actions_by_door ON actions (door_id, recorded_at, id) WHERE door_id IS NOT NULL;
CREATE INDEX actions_by_holder ON actions (holder_id, recorded_at, id) WHERE holder_id IS NOT NULL;
-- A safety net: a row whose month has no partition yet still lands somewhere. Partitions
-- are created months ahead, so this stays empty.
CREATE TABLE actions_default PARTITION OF actions DEFAULT;

-- Events waiting for the relay. `id` is the message id in JetStream (`Nats-Msg-Id`).
CREATE TABLE outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     uuid NOT NULL,
    subject      text NOT NULL,
    -- Events with the same key must reach the stream in commit order (the holder, or the
    -- door for events without one).
    ordering_key text NOT NULL,
    payload      jsonb NOT NULL,
    headers      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE idempotency (
    client       text NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    status       smallint,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client, key)
);
CREATE INDEX idempotency_by_age ON idempotency (created_at);

-- The envelope of an action, from the action row as JSON (so that the trigger, which sees
-- a partition's row type, and a republish from the parent table build it the same way).
CREATE FUNCTION latch_event_envelope(a jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', a->'id',
        'kind', a->'kind',
        'schema_version', 1,
        'occurred_at', to_char((a->>'occurred_at')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'recorded_at', to_char((a->>'recorded_at')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'site', a->'site',
        'door_id', a->'door_id',
        'holder_id', a->'holder_id',
        'reader_id', a->'reader_id',
        'reader_seq', a->'reader_seq',
        'decided_offline', a->'decided_offline',
        'decision', a->'decision',
        'reason', a->'reason',
        'grant_id', a->'grant_id',
        'actor_id', a->'actor_id'
    )
$$;

-- Every action writes its event to the outbox in the same transaction and wakes the relay
-- at commit. Doing it here rather than in each handler means no code path can record an
-- action without its event.
CREATE FUNCTION latch_action_to_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row_json jsonb := to_jsonb(NEW);
BEGIN
    INSERT INTO outbox (event_id, subject, ordering_key, payload, headers)
    VALUES (
        NEW.id,
        'latch.events.' || NEW.kind,
        COALESCE(NEW.holder_id::text, NEW.door_id::text, NEW.id::text),
        latch_event_envelope(row_json),
        jsonb_strip_nulls(jsonb_build_object('Latch-Event-Id', NEW.id::text, 'traceparent', NEW.trace_parent))
    );
    PERFORM pg_notify('latch_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER actions_to_outbox AFTER INSERT ON actions
    FOR EACH ROW EXECUTE FUNCTION latch_action_to_outbox();

-- Creates the registry's monthly partitions from the current month to `months_ahead`
-- months ahead (UTC). Runs as its owner so the application role can call it without the
-- right to create tables; concurrent callers are fine.
CREATE FUNCTION latch_ensure_action_partitions(months_ahead int) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    month_start timestamptz;
    part text;
    created int := 0;
BEGIN
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

SELECT latch_ensure_action_partitions(3);

REVOKE ALL ON FUNCTION latch_ensure_action_partitions(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION latch_ensure_action_partitions(int) TO latch_app;
GRANT SELECT, INSERT ON actions TO latch_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON doors, holders, admins, readers, grants, presence,
    outbox, idempotency TO latch_app;

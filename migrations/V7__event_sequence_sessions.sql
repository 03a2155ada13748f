-- A sequence number per ordering key in every event; browser sessions for the event feed.
--
-- - Every action now carries `ordering_seq`: 1, 2, 3, … per holder, or per door for an
--   action without a holder (none for an action with neither). It is drawn in the
--   inserting transaction from `ordering_sequences`, whose row stays locked until that
--   transaction ends: a second transaction of the same key waits, so per key the numbers
--   follow commit order, and a rolled-back transaction gives its number back (no gaps).
--   A consumer that sees 7 after 5 for one holder knows it missed 6, from the payload
--   alone. Actions recorded before this migration have none; numbering starts at 1 after it.
-- - The envelope (schema_version 2) carries it as `sequence`; a republished event carries
--   the number it was recorded with.
-- - `sessions`: a browser's EventSource cannot send an Authorization header, so a token
--   may be exchanged for a session cookie (`POST /v1/sessions`). Only the SHA-256 of the
--   session id is stored; a session lasts until it expires, is ended, or its token is
--   revoked or expires.

CREATE TABLE ordering_sequences (
    ordering_key text PRIMARY KEY,
    last_seq     bigint NOT NULL
);

ALTER TABLE actions ADD COLUMN ordering_seq bigint;

CREATE FUNCTION latch_action_sequence() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    ordering text := COALESCE(NEW.holder_id::text, NEW.door_id::text);
BEGIN
    IF ordering IS NULL THEN
        NEW.ordering_seq := NULL;
    ELSE
        -- The holder's transaction lock (V2) first, as the outbox trigger takes it: two
        -- keys whose hashes collide then queue on that lock alone, never on it and on
        -- each other's rows in opposite orders.
        PERFORM pg_advisory_xact_lock(7414, hashtext(ordering));
        INSERT INTO ordering_sequences AS s (ordering_key, last_seq) VALUES (ordering, 1)
        ON CONFLICT (ordering_key) DO UPDATE SET last_seq = s.last_seq + 1
        RETURNING s.last_seq INTO NEW.ordering_seq;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER actions_sequence BEFORE INSERT ON actions
    FOR EACH ROW EXECUTE FUNCTION latch_action_sequence();

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
        'actor_id', a->'actor_id'
    )
$$;

REVOKE ALL ON FUNCTION latch_action_sequence(), latch_event_envelope(jsonb) FROM PUBLIC;
REVOKE ALL ON ordering_sequences FROM PUBLIC;

CREATE TABLE sessions (
    id_hash    bytea PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    admin_id   uuid NOT NULL REFERENCES admins (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

GRANT SELECT, INSERT, DELETE ON sessions TO latch_app;

-- Wake the relay only when it is waiting.
--
-- Until now every action's transaction called pg_notify. PostgreSQL serialises the
-- commits of notifying transactions (each holds the notification queue's lock from just
-- before its commit record is written until that record is flushed), which defeats group
-- commit: under concurrency the NOTIFY halved the durable write rate. Now a writer
-- notifies only when the relay has said that it is about to wait (it "arms"):
--
-- - The relay arms when a drain found the outbox empty: it sets `outbox_wake.armed`. The
--   first writer that finds it set clears it and notifies; the writers after it find it
--   clear and do not. A writer that finds it set while another one is clearing it
--   notifies as well (the other one may roll back, and its notification with it).
-- - The race: a writer that read `armed = false` just before the relay armed, and commits
--   after the relay's last look at the outbox, would wait for the relay's poll. So a
--   writer takes the wake key in shared mode before it reads the flag and holds it until
--   its transaction ends; the relay arms holding the key exclusively, which waits for
--   those writers to end, and looks at the outbox once more after arming. A writer never
--   waits for the key (it only tries): when the relay holds it or waits for it, the writer
--   notifies instead.
-- - A transaction that is not READ COMMITTED (the default) notifies always: its snapshot
--   may be older than the relay's arming, so the flag it would read may be stale.
--
-- The wake key (`latchw` in ASCII, single bigint) is distinct from the relay's leadership
-- key (`latch`) and from the per-holder two-int4 keys of V2. A relay older than this
-- migration never arms: it would be woken by its poll only, so upgrade the relay together
-- with this migration.
CREATE TABLE outbox_wake (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    armed boolean NOT NULL
);
INSERT INTO outbox_wake (armed) VALUES (true);

CREATE OR REPLACE FUNCTION latch_action_to_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row_json jsonb := to_jsonb(NEW);
    ordering text := COALESCE(NEW.holder_id::text, NEW.door_id::text, NEW.id::text);
BEGIN
    PERFORM pg_advisory_xact_lock(7414, hashtext(ordering));
    INSERT INTO outbox (event_id, subject, ordering_key, payload, headers)
    VALUES (
        NEW.id,
        'latch.events.' || NEW.kind,
        ordering,
        latch_event_envelope(row_json),
        jsonb_strip_nulls(jsonb_build_object('Latch-Event-Id', NEW.id::text, 'traceparent', NEW.trace_parent))
    );
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM pg_notify('latch_outbox', '');
    ELSIF NOT pg_try_advisory_xact_lock_shared(119165820299383) THEN
        -- The relay is arming: it may have looked at the outbox for the last time.
        PERFORM pg_notify('latch_outbox', '');
    ELSIF EXISTS (SELECT FROM outbox_wake WHERE armed) THEN
        PERFORM FROM outbox_wake WHERE armed FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            UPDATE outbox_wake SET armed = false;
        END IF;
        PERFORM pg_notify('latch_outbox', '');
    END IF;
    RETURN NULL;
END
$$;

GRANT SELECT, UPDATE ON outbox_wake TO latch_app;

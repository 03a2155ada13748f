-- Per-holder commit order in the outbox.
--
-- The relay publishes in outbox id order. Ids are drawn when a row is inserted, not when
-- its transaction commits, so two concurrent transactions for the same holder could
-- commit in the opposite order of their ids. The trigger now takes a transaction-level
-- advisory lock on the row's ordering key before it draws the id: a second transaction
-- for the same holder waits until the first has committed or rolled back, so per
-- ordering key, id order is commit order. Transactions for different holders never wait
-- on each other. (The two-int4 form keeps these locks apart from the relay's single-key
-- leadership lock.)
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
    PERFORM pg_notify('latch_outbox', '');
    RETURN NULL;
END
$$;

-- Fill the outbox with :rows events the way latch does it: by inserting unlock actions
-- (through the `actions_to_outbox` trigger, which builds each envelope, takes the holder's
-- ordering lock and NOTIFYs), 1,000 rows per transaction (each transaction holds one
-- advisory lock per holder it touches). Run as the schema's owner, with no relay running.
--
-- psql -v rows=100000 -f bench/fill_outbox.sql
\set ON_ERROR_STOP 1
SELECT set_config('bench.rows', :'rows', false);
DO $$
DECLARE
    total    int := current_setting('bench.rows')::int;
    chunk    int := 1000;
    done     int := 0;
    holder_ids uuid[];
    cards    text[];
    reader_ids uuid[];
    door_ids uuid[];
BEGIN
    SELECT array_agg(id ORDER BY card_id), array_agg(card_id ORDER BY card_id)
      INTO holder_ids, cards FROM holders;
    SELECT array_agg(r.id ORDER BY r.id), array_agg(r.door_id ORDER BY r.id)
      INTO reader_ids, door_ids FROM readers r;
    WHILE done < total LOOP
        INSERT INTO actions (id, kind, site, door_id, holder_id, card_id, reader_id, decision,
                             reason, occurred_at, trace_parent)
        SELECT gen_random_uuid(), 'unlock_granted', 'bench',
               door_ids[1 + (done + g) % array_length(door_ids, 1)],
               holder_ids[1 + (done + g) % array_length(holder_ids, 1)],
               cards[1 + (done + g) % array_length(cards, 1)],
               reader_ids[1 + (done + g) % array_length(reader_ids, 1)],
               'granted', 'valid_grant', now(),
               '00-4bf92f3577b34da6a3ce929d0e0e4736-' || lpad(to_hex(done + g), 16, '0') || '-01'
        FROM generate_series(1, least(chunk, total - done)) g;
        done := done + chunk;
        COMMIT;
    END LOOP;
END
$$;

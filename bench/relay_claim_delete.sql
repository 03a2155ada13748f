-- The relay's database work for one batch (relay/src/outbox.rs), for pgbench: claim the
-- 500 oldest rows with FOR UPDATE SKIP LOCKED (reading every column the relay reads,
-- payload as text), then delete them in the same transaction. What the relay does between
-- the two (publishing) is left out: this is PostgreSQL's side of the drain alone.
--
-- pgbench -n -M prepared -f bench/relay_claim_delete.sql -c 1 -t ROWS/500
BEGIN;
SELECT array_agg(id) AS ids,
       sum(octet_length(event_id::text) + octet_length(subject) + octet_length(payload)
           + octet_length(headers::text) + octet_length(created_at::text)) AS bytes
FROM (SELECT id, event_id, subject, payload::text AS payload, headers, created_at
      FROM outbox
      ORDER BY id
      LIMIT 500
      FOR UPDATE SKIP LOCKED) claimed \gset
DELETE FROM outbox WHERE id = ANY (CAST(:ids AS bigint[]));
COMMIT;

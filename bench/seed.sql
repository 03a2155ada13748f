-- The benchmark's site, seeded into a freshly migrated latch database (as the schema's
-- owner): one site `bench`, :doors doors with one reader each (key 'lrk_bench_<n>', stored
-- as latch stores keys: its SHA-256), :holders card holders (card 'BENCH-<n>') and their
-- grants. The decisions come out mixed like a real site's: most unlocks are granted; some
-- holders are inactive (1 in 50), some grants expired or revoked (1 in 10 each), some
-- holder/door pairs have no grant at all (1 in 7). The readers send no heartbeats, so they
-- are enrolled with an offline_after of a day: the API's liveness watch must not record
-- reader_offline events in the middle of a measurement.
--
-- psql -v doors=20 -v holders=10000 -f bench/seed.sql
\set ON_ERROR_STOP 1
BEGIN;

INSERT INTO admins (id, name, token_hash)
VALUES ('0190c0de-0000-7000-8000-00000000ad01', 'bench administrator',
        sha256(convert_to('lat_bench_admin', 'UTF8')));

INSERT INTO doors (id, site, name)
SELECT ('0190c0de-0000-7000-8001-' || lpad(to_hex(d), 12, '0'))::uuid, 'bench', 'Door ' || d
FROM generate_series(1, :doors) d;

INSERT INTO readers (id, door_id, name, key_hash, offline_after)
SELECT ('0190c0de-0000-7000-8002-' || lpad(to_hex(d), 12, '0'))::uuid,
       ('0190c0de-0000-7000-8001-' || lpad(to_hex(d), 12, '0'))::uuid,
       'Reader ' || d, sha256(convert_to('lrk_bench_' || d, 'UTF8')), interval '1 day'
FROM generate_series(1, :doors) d;

INSERT INTO holders (id, card_id, name, active)
SELECT ('0190c0de-0000-7000-8003-' || lpad(to_hex(h), 12, '0'))::uuid, 'BENCH-' || h,
       'Holder ' || h, h % 50 <> 0
FROM generate_series(1, :holders) h;

INSERT INTO grants (id, holder_id, door_id, valid_from, valid_until, granted_by, revoked_at, revoked_by)
SELECT gen_random_uuid(),
       ('0190c0de-0000-7000-8003-' || lpad(to_hex(h), 12, '0'))::uuid,
       ('0190c0de-0000-7000-8001-' || lpad(to_hex(d), 12, '0'))::uuid,
       now() - interval '30 days',
       CASE WHEN h % 10 = 1 THEN now() - interval '1 day' ELSE now() + interval '365 days' END,
       '0190c0de-0000-7000-8000-00000000ad01',
       CASE WHEN h % 10 = 2 THEN now() - interval '2 days' END,
       CASE WHEN h % 10 = 2 THEN '0190c0de-0000-7000-8000-00000000ad01'::uuid END
FROM generate_series(1, :holders) h, generate_series(1, :doors) d
WHERE (h + d) % 7 <> 0;

COMMIT;
VACUUM ANALYZE;

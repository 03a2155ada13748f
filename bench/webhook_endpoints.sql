-- Webhook endpoints for the `webhooks` stage of deploy/local/bench.sh, written straight
-- into the table as the superuser (the harness, not the API: no action is recorded, so
-- creating them publishes nothing). Variables (psql -v):
--   count        how many endpoints
--   url_prefix   each endpoint's URL is url_prefix || n, n = 1 .. count
--   description  a tag the harness selects them by afterwards (e.g. 'bench healthy')
--   kinds        '' for every kind, else a text[] literal such as '{reader_tamper_restored}'
--   secret       the whsec_ secret they sign with
-- Every site, 1,000 calls/s each (the most an endpoint may have), starting now (the
-- column's default): each receives every event recorded from here on that its kinds match.
INSERT INTO webhook_endpoints (id, url, description, kinds, sites, rate_per_second, secret, created_by)
SELECT gen_random_uuid(),
       :'url_prefix' || n,
       :'description',
       NULLIF(:'kinds', '')::text[],
       NULL,
       1000,
       :'secret',
       (SELECT id FROM admins WHERE token_hash = sha256(convert_to('lat_bench_admin', 'UTF8')))
FROM generate_series(1, :count) AS n;

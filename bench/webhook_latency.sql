-- Commit→delivered of the endpoints tagged :'description' (bench/webhook_endpoints.sql),
-- for the events recorded between :since and :until (epoch seconds), from the worker's
-- attempt records: a delivered attempt's attempted_at + latency_ms (when the answer came)
-- minus its action's recorded_at. Exact per call (to the millisecond of latency_ms), where
-- the worker's histogram is bucketed; but the worker may not record every attempt (its
-- attempt log is written in batches and drops what overflows), so `coverage` says which
-- share of the expected deliveries has a record. One JSON line.
WITH window_events AS (
    SELECT id, recorded_at FROM actions
    WHERE recorded_at >= to_timestamp(:since) AND recorded_at < to_timestamp(:until)
), tagged AS (
    SELECT id FROM webhook_endpoints WHERE description = :'description'
), delivered AS (
    SELECT extract(epoch FROM (w.attempted_at + w.latency_ms * interval '1 millisecond')
                              - a.recorded_at) * 1000 AS ms
    FROM webhook_attempts w
    JOIN tagged e ON e.id = w.endpoint_id
    JOIN window_events a ON a.id = w.event_id
    WHERE w.outcome = 'delivered'
)
SELECT json_build_object(
    'count', (SELECT count(*) FROM delivered),
    'expected', (SELECT count(*) FROM window_events) * (SELECT count(*) FROM tagged),
    'coverage', round((SELECT count(*) FROM delivered)::numeric
                      / NULLIF((SELECT count(*) FROM window_events) * (SELECT count(*) FROM tagged), 0), 4),
    'attempts_recorded', (SELECT count(*) FROM webhook_attempts),
    'p50_ms', round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM delivered)::numeric, 3),
    'p90_ms', round((SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY ms) FROM delivered)::numeric, 3),
    'p99_ms', round((SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) FROM delivered)::numeric, 3),
    'max_ms', round((SELECT max(ms) FROM delivered)::numeric, 3)
);

-- Readers in the real world: per-device sequence numbers, offline uploads, door alarms,
-- heartbeats and clock skew.

-- The registry learns two facts about reader events:
-- - `server_decision`: for an unlock the reader decided offline (`decided_offline`), the
--   server's own verdict at upload time; `decision` stays what the reader decided and
--   `reason` explains the server's verdict. NULL for live decisions (the server decided).
-- - `clock_skewed`: the reader's `occurred_at` was outside the accepted bounds around the
--   server's clock when the event arrived; the event is recorded all the same.
-- Both are constant defaults, so adding them rewrites no partition.
ALTER TABLE actions
    ADD COLUMN server_decision text CHECK (server_decision IN ('granted', 'denied')),
    ADD COLUMN clock_skewed boolean NOT NULL DEFAULT false;

-- Reader health. `last_seen_at` is written by the API's periodic, batched flush of what it
-- saw in memory (never by a reader's request itself); NULL until the reader is first seen,
-- when its enrolment time stands in. `online` flips only under a row lock, so that each
-- transition is recorded once (`reader_offline` / `reader_online`) however many API
-- replicas watch.
ALTER TABLE readers
    ADD COLUMN offline_after interval NOT NULL DEFAULT interval '5 minutes'
        CHECK (offline_after >= interval '1 second'),
    ADD COLUMN last_seen_at timestamptz,
    ADD COLUMN online boolean NOT NULL DEFAULT true;

-- Every event a reader numbered (`seq`, monotonic per reader) and the server accepted: the
-- hash of the event and the response it got, so that the same seq sent again is answered
-- from here (and writes nothing) and a seq reused for another event is refused. Written in
-- the same transaction as the event's action. Missing numbers are the reader's gaps. The
-- API deletes rows older than LATCH_READERS_SEQ_RETENTION, except each reader's latest.
CREATE TABLE reader_seqs (
    reader_id    uuid NOT NULL REFERENCES readers (id),
    seq          bigint NOT NULL CHECK (seq >= 0),
    request_hash bytea NOT NULL,
    status       smallint,
    response     jsonb,
    action_id    uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reader_id, seq)
);
CREATE INDEX reader_seqs_by_age ON reader_seqs (created_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON reader_seqs TO latch_app;

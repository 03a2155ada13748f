//! Reader liveness: each API process's background task that writes when readers were last
//! seen and records readers going silent and coming back.
//!
//! - **Flush** (every `LATCH_READERS_FLUSH_INTERVAL`): what [`LastSeen`] gathered goes to
//!   `readers.last_seen_at` in one transaction for all readers seen — a periodic, batched
//!   write off the request path, not a write per request. The rows are locked in id order
//!   first (so two replicas flushing the same readers queue rather than deadlock) and read
//!   as they are after any concurrent change; a reader found `online = false` is flipped
//!   back and gets one `reader_online` action in the same transaction.
//! - **Check** (every `LATCH_READERS_CHECK_INTERVAL`, after a flush): one
//!   `UPDATE readers SET online = false WHERE online AND <silent past offline_after>`, with
//!   a `reader_offline` action per row it returns, in one transaction. The row update is
//!   what makes each transition happen once however many replicas check: a second checker
//!   skips rows locked by the first (`SKIP LOCKED`) or finds them no longer online.
//!
//! A reader's silence is judged on what has been flushed, so it is noticed between
//! `offline_after` and `offline_after` + check interval + flush interval after its last
//! post. A reader never seen counts from its enrolment. Disabled readers are not watched.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use deadpool_postgres::Pool;
use latch_core::event::EventKind;
use latch_core::shutdown::CancellationToken;
use time::OffsetDateTime;
use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use crate::config::ReadersConfig;
use crate::metrics::ApiMetrics;
use crate::readers::heartbeat::LastSeen;

/// Flushes and checks until `shutdown`; the caller flushes once more after the HTTP server
/// has finished its last requests.
pub async fn watch(
    pool: Pool,
    last_seen: Arc<LastSeen>,
    config: ReadersConfig,
    metrics: ApiMetrics,
    shutdown: CancellationToken,
) {
    let mut flush_every = tokio::time::interval(config.flush_interval);
    let mut check_every = tokio::time::interval(config.check_interval);
    flush_every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    check_every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut flushes = Health::new("flush");
    let mut checks = Health::new("check");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = flush_every.tick() => {
                flushes.note(flush(&pool, &last_seen).await.map(|_| ()));
            }
            _ = check_every.tick() => {
                // Our own heartbeats first, so that we never call a reader silent that
                // this process just heard from.
                flushes.note(flush(&pool, &last_seen).await.map(|_| ()));
                let checked = check(&pool, &metrics).await;
                if checked.is_ok() {
                    metrics.reader_liveness_checks.inc();
                }
                checks.note(checked);
            }
        }
    }
}

/// Logs a kind of round failing once, and its recovery once, not every few seconds.
struct Health {
    round: &'static str,
    failing: bool,
}

impl Health {
    fn new(round: &'static str) -> Health {
        Health {
            round,
            failing: false,
        }
    }

    fn note(&mut self, result: anyhow::Result<()>) {
        match (result, self.failing) {
            (Ok(()), true) => {
                self.failing = false;
                tracing::info!(round = self.round, "reader liveness works again");
            }
            (Err(error), false) => {
                self.failing = true;
                tracing::warn!(
                    round = self.round,
                    error = format!("{error:#}"),
                    "reader liveness failed; retrying every round"
                );
            }
            _ => {}
        }
    }
}

/// Writes the last-seen times gathered so far; returns how many readers came back online.
/// On failure they are kept for the next flush.
pub async fn flush(pool: &Pool, last_seen: &LastSeen) -> anyhow::Result<usize> {
    let taken = last_seen.take();
    if taken.is_empty() {
        return Ok(0);
    }
    match write_last_seen(pool, &taken).await {
        Ok(back) => Ok(back),
        Err(error) => {
            last_seen.restore(taken);
            Err(error)
        }
    }
}

async fn write_last_seen(
    pool: &Pool,
    seen: &HashMap<Uuid, OffsetDateTime>,
) -> anyhow::Result<usize> {
    let mut ids: Vec<Uuid> = seen.keys().copied().collect();
    ids.sort();
    let ats: Vec<OffsetDateTime> = ids.iter().map(|id| seen[id]).collect();
    let mut client = pool.get().await.context("no database connection")?;
    let tx = client.transaction().await?;
    let back: Vec<Uuid> = tx
        .query(
            "SELECT id, enabled AND NOT online FROM readers
             WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
            &[&ids],
        )
        .await
        .context("cannot lock the readers seen")?
        .iter()
        .filter(|row| row.get::<_, bool>(1))
        .map(|row| row.get(0))
        .collect();
    tx.execute(
        "UPDATE readers r
         SET last_seen_at = GREATEST(r.last_seen_at, s.at), online = r.online OR r.enabled
         FROM unnest($1::uuid[], $2::timestamptz[]) AS s(id, at)
         WHERE r.id = s.id",
        &[&ids, &ats],
    )
    .await
    .context("cannot write last-seen times")?;
    if !back.is_empty() {
        let back_at: Vec<OffsetDateTime> = back.iter().map(|id| seen[id]).collect();
        record(&tx, EventKind::ReaderOnline, &back, Some(&back_at)).await?;
        tracing::info!(readers = back.len(), "readers back online");
    }
    tx.commit().await?;
    Ok(back.len())
}

/// Records one health action per reader, on its door (`occurred_at`: `at`, or now).
async fn record(
    tx: &deadpool_postgres::Transaction<'_>,
    kind: EventKind,
    readers: &[Uuid],
    at: Option<&[OffsetDateTime]>,
) -> anyhow::Result<()> {
    let ids: Vec<Uuid> = readers.iter().map(|_| Uuid::now_v7()).collect();
    let now = vec![OffsetDateTime::now_utc(); readers.len()];
    tx.execute(
        "INSERT INTO actions (id, kind, site, door_id, reader_id, occurred_at)
         SELECT a.id, $2, d.site, r.door_id, r.id, a.at
         FROM unnest($1::uuid[], $3::uuid[], $4::timestamptz[]) AS a(id, reader_id, at)
         JOIN readers r ON r.id = a.reader_id
         JOIN doors d ON d.id = r.door_id",
        &[&ids, &kind.as_str(), &readers, &at.unwrap_or(&now)],
    )
    .await
    .with_context(|| format!("cannot record {kind} actions"))?;
    Ok(())
}

/// Marks readers silent past their `offline_after` as offline, once each.
async fn check(pool: &Pool, metrics: &ApiMetrics) -> anyhow::Result<()> {
    let mut client = pool.get().await.context("no database connection")?;
    let tx = client.transaction().await?;
    let gone: Vec<Uuid> = tx
        .query(
            "UPDATE readers SET online = false
             WHERE id IN (
                 SELECT id FROM readers
                 WHERE enabled AND online
                   AND COALESCE(last_seen_at, created_at) < now() - offline_after
                 ORDER BY id
                 FOR NO KEY UPDATE SKIP LOCKED)
             RETURNING id",
            &[],
        )
        .await
        .context("cannot mark silent readers offline")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if !gone.is_empty() {
        record(&tx, EventKind::ReaderOffline, &gone, None).await?;
        tracing::warn!(readers = gone.len(), "readers went silent: offline");
    }
    let offline: i64 = tx
        .query_one(
            "SELECT count(*) FROM readers WHERE enabled AND NOT online",
            &[],
        )
        .await?
        .get(0);
    tx.commit().await?;
    metrics.readers_offline.set(offline);
    Ok(())
}

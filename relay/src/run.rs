//! The relay's loop: drain while there is work; once the outbox is empty, arm and wait for
//! a NOTIFY or the poll interval; back off (capped, exponential) while NATS or PostgreSQL
//! is unavailable, logging once per change of state.

use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use latch_core::admin::Readiness;
use latch_core::config::Secret;
use latch_core::nats::NatsConfig;
use latch_core::shutdown::CancellationToken;

use crate::config::RelayConfig;
use crate::error::DrainError;
use crate::leader::Leadership;
use crate::metrics::RelayMetrics;
use crate::outbox::{self, Claimed};
use crate::publish::{self, AtomicBatch, PublishError, Publisher};
use crate::wake::Wake;

/// The DELETE and COMMIT of the last published batch, running while the next one is
/// claimed and published.
#[derive(Default)]
struct Committing(Option<tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>>);

impl Committing {
    fn start(&mut self, claimed: Claimed, published: Vec<i64>) {
        debug_assert!(self.0.is_none());
        self.0 = Some(tokio::spawn(
            async move { claimed.finish(&published).await },
        ));
    }

    /// Waits for the commit in flight, if any.
    async fn settle(&mut self) -> Result<(), DrainError> {
        match self.0.take() {
            None => Ok(()),
            Some(handle) => match handle.await {
                Ok(result) => Ok(result?),
                Err(error) => Err(DrainError::Task("the commit of a published batch", error)),
            },
        }
    }
}

/// A batch claimed while the one before it was published, with its atomic batch built
/// (see [`Relay::drain_once`]).
struct Next {
    claimed: Claimed,
    prepared: Option<AtomicBatch>,
}

/// The next batch, if one was claimed ahead.
#[derive(Default)]
struct Ahead(Option<Result<Next, DrainError>>);

impl Ahead {
    /// Ends the claim's transaction without publishing: its rows are pending again.
    async fn release(&mut self) {
        if let Some(Ok(next)) = self.0.take() {
            // Should the rollback fail, dropping the claim closes its connection, and the
            // server rolls back.
            let _ = next.claimed.finish(&[]).await;
        }
    }
}

/// Counts what the relay did, for logs and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct DrainReport {
    /// Rows claimed (0: the outbox had nothing to publish).
    pub claimed: usize,
    pub published: usize,
    pub duplicates: usize,
}

pub struct Relay {
    config: RelayConfig,
    database_url: Secret<String>,
    pool: Pool,
    publisher: Publisher,
    pub metrics: RelayMetrics,
    pub readiness: Readiness,
}

impl Relay {
    /// Connects to NATS and makes sure the stream exists (retrying until it can, or until
    /// `shutdown`).
    pub async fn build(
        config: RelayConfig,
        nats: &NatsConfig,
        database_url: Secret<String>,
        pool: Pool,
        registry: &prometheus::Registry,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Relay> {
        let client = latch_core::nats::connect(nats, "latch-relay").await?;
        let js = async_nats::jetstream::new(client.clone());
        let mut backoff = Backoff::new(config.max_backoff);
        loop {
            match latch_core::nats::ensure_events_stream(&js, nats).await {
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot set up the event stream yet; retrying"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => anyhow::bail!("shut down before the stream was ready"),
                        _ = tokio::time::sleep(backoff.next()) => {}
                    }
                }
            }
        }
        Ok(Relay {
            publisher: Publisher::new(client, nats.request_timeout),
            config,
            database_url,
            pool,
            metrics: RelayMetrics::new(registry),
            readiness: Readiness::default(),
        })
    }

    /// Runs until `shutdown`, leading when it can and standing by otherwise.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut backoff = Backoff::new(self.config.max_backoff);
        let mut standing_by = false;
        let mut unreachable = false;
        while !shutdown.is_cancelled() {
            let wait = match Leadership::try_acquire(&self.database_url).await {
                Ok(Some(leadership)) => {
                    if std::mem::take(&mut unreachable) {
                        tracing::info!("PostgreSQL answers again");
                    }
                    self.check_privileges().await?;
                    tracing::info!("this relay leads: publishing the outbox");
                    self.metrics.leader.set(1);
                    standing_by = false;
                    backoff.reset();
                    self.lead(&leadership, &shutdown).await;
                    self.metrics.leader.set(0);
                    Duration::ZERO
                }
                Ok(None) => {
                    if std::mem::take(&mut unreachable) {
                        tracing::info!("PostgreSQL answers again");
                    }
                    // A standby relay is ready: it can take over at any moment.
                    self.readiness.set(true);
                    if !standing_by {
                        tracing::info!("another relay leads; standing by");
                        standing_by = true;
                    }
                    self.config.poll_interval
                }
                Err(error) => {
                    // Once per outage, not at every retry.
                    if !std::mem::replace(&mut unreachable, true) {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "cannot reach PostgreSQL for leadership; retrying"
                        );
                    }
                    backoff.next()
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!("relay stopped");
        Ok(())
    }

    /// Refuses to lead with a login that may not delete outbox rows (the API's, say, since
    /// migration V5), rather than failing at every batch. A database that cannot be asked
    /// is not a refusal: the drain reports that.
    async fn check_privileges(&self) -> anyhow::Result<()> {
        let Ok(client) = self.pool.get().await else {
            return Ok(());
        };
        let allowed = client
            .query_one(
                "SELECT current_user::text,
                        has_table_privilege('outbox', 'SELECT, DELETE')
                        AND has_table_privilege('outbox_wake', 'UPDATE')",
                &[],
            )
            .await;
        match allowed {
            Ok(row) if !row.get::<_, bool>(1) => anyhow::bail!(
                "the database login {} may not publish the outbox: the relay needs a login \
                 that is a member of latch_relayer (`latch migrate --relay-login NAME`, then \
                 LATCH_DATABASE_URL with that login)",
                row.get::<_, String>(0)
            ),
            _ => Ok(()),
        }
    }

    async fn lead(&self, leadership: &Leadership, shutdown: &CancellationToken) {
        let mut backoff = Backoff::new(self.config.max_backoff);
        let mut failing: Option<&'static str> = None;
        // The backlog is read on a clock of its own, so that its gauges keep telling the
        // truth when publishing stalls (NATS down) — exactly when they are watched.
        let watching = shutdown.child_token();
        let _stop_watching = watching.clone().drop_guard();
        tokio::spawn(watch_backlog(
            self.pool.clone(),
            self.metrics.clone(),
            self.config.poll_interval,
            watching,
        ));
        // Writers notify only once the relay has armed (see `wake`); at start it has not.
        let mut wake = Wake::default();
        let mut committing = Committing::default();
        let mut ahead = Ahead::default();
        loop {
            if shutdown.is_cancelled() || leadership.lost.is_cancelled() {
                if leadership.lost.is_cancelled() {
                    tracing::warn!("lost the leadership connection; re-electing");
                }
                ahead.release().await;
                // Let the last batch's deletion finish (its rows are in the stream).
                let _ = committing.settle().await;
                return;
            }
            let wait = match self.drain_once(&mut committing, &mut ahead).await {
                Ok(report) => {
                    if let Some(state) = failing.take() {
                        tracing::info!(recovered_from = state, "relay publishing again");
                    }
                    self.readiness.set(true);
                    backoff.reset();
                    if report.claimed > 0 {
                        // Rows may have been committed meanwhile: look again at once.
                        continue;
                    }
                    // The outbox is empty: writers must wake us before we wait.
                    wake.arm(&self.pool, self.config.poll_interval);
                    None
                }
                Err(error) => {
                    // Nothing claimed stays locked while the relay backs off.
                    ahead.release().await;
                    self.readiness.set(false);
                    self.metrics
                        .errors
                        .with_label_values(&[error.state()])
                        .inc();
                    if failing != Some(error.state()) {
                        tracing::warn!(%error, state = error.state(), "relay cannot publish; rows stay pending and will be retried");
                        failing = Some(error.state());
                    }
                    Some(backoff.next())
                }
            };
            match wait {
                None => {
                    let poll = tokio::time::sleep(self.config.poll_interval);
                    tokio::pin!(poll);
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            result = wake.arming() => {
                                // Armed (or it should be tried again at once): rows of the
                                // writers it waited for are committed now, so drain once
                                // more before waiting. Otherwise wait as without it.
                                if wake.arming_ended(result) {
                                    break;
                                }
                            }
                            _ = leadership.wake.notified() => {
                                self.metrics.wakeups.with_label_values(&["notify"]).inc();
                                wake.woken();
                                break;
                            }
                            _ = &mut poll => {
                                self.metrics.wakeups.with_label_values(&["poll"]).inc();
                                wake.woken();
                                break;
                            }
                        }
                    }
                }
                Some(delay) => tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                },
            }
        }
    }

    /// Claims one batch (or takes the one claimed ahead) and publishes it; the published
    /// rows are deleted in the claiming transaction. Its DELETE and COMMIT run while the
    /// next batch is claimed and published (`committing`): the stream already holds those
    /// rows, their locks keep the next claim off them until the commit, and should the
    /// commit fail they are published again and the stream drops them as duplicates. A
    /// batch is published only once the one before it was acknowledged, and at most one
    /// commit is in flight.
    ///
    /// A full batch means a backlog: the next batch is then claimed, and its atomic batch
    /// built, while this one is published (`ahead`), so that neither costs the drain any
    /// time. That claim skips this batch's rows (locked), and it is published only after
    /// this batch was acknowledged, or released unpublished if this one failed: the order
    /// holds.
    async fn drain_once(
        &self,
        committing: &mut Committing,
        ahead: &mut Ahead,
    ) -> Result<DrainReport, DrainError> {
        let batch_size = self.config.batch_size;
        let (mut claimed, prepared) = match ahead.0.take() {
            Some(next) => {
                let next = next?;
                (next.claimed, next.prepared)
            }
            None => (Claimed::begin(&self.pool, batch_size).await?, None),
        };
        let rows = std::mem::take(&mut claimed.rows);
        if rows.is_empty() {
            claimed.finish(&[]).await?;
            return Ok(DrainReport::default());
        }
        // Bounded as a whole: with NATS gone, handing messages to the client blocks once its
        // buffer is full, and the claim (a transaction holding the rows) must not stay open
        // for the length of the outage.
        let bound = self.publisher.timeout() * 2;
        let publish = async {
            let started = Instant::now();
            let published =
                tokio::time::timeout(bound, self.publisher.publish_prepared(&rows, prepared))
                    .await
                    .unwrap_or_else(|_| {
                        Err(PublishError::Unacknowledged(format!(
                            "the batch was not acknowledged within {bound:?}"
                        )))
                    });
            (published, started.elapsed())
        };
        let claim_next = async {
            if rows.len() < batch_size {
                return None;
            }
            // A task of its own, so that building the batch's messages runs beside this
            // one, which is waiting for the server to acknowledge the current batch.
            let pool = self.pool.clone();
            let next = tokio::spawn(async move {
                let claimed = Claimed::begin(&pool, batch_size).await?;
                let prepared = AtomicBatch::ahead_of_publish(&claimed.rows);
                Ok(Next { claimed, prepared })
            });
            Some(
                next.await
                    .unwrap_or_else(|error| Err(DrainError::Task("the claim ahead", error))),
            )
        };
        let ((published, publish_time), next) = tokio::join!(publish, claim_next);
        let published = match published {
            Ok(published) => published,
            Err(error) => {
                // Not acknowledged: the rows are released and published again later
                // (any the stream did store are then dropped as duplicates), and the next
                // batch may not go before them.
                Ahead(next).release().await;
                let _ = claimed.finish(&[]).await;
                return Err(error.into());
            }
        };
        self.metrics
            .publish_duration
            .observe(publish_time.as_secs_f64());
        self.observe(&rows, &published);
        let costs = self.publisher.costs();
        tracing::debug!(
            rows = rows.len(),
            duplicates = published.duplicates,
            publish_ms = publish_time.as_secs_f64() * 1e3,
            singles_ms_estimate = costs.singles_cost(rows.len()) * 1e3,
            atomic_ms_estimate = costs.atomic * 1e3,
            "published batch"
        );
        let report = DrainReport {
            claimed: rows.len(),
            published: published.acked.len() - published.duplicates,
            duplicates: published.duplicates,
        };
        let previous = committing.settle().await;
        match published.failure {
            None => {
                committing.start(claimed, published.acked);
                ahead.0 = next;
            }
            Some(failure) => {
                // Delete what was stored before the failure; the rest stays pending, and
                // the next batch may not go before it.
                Ahead(next).release().await;
                claimed.finish(&published.acked).await?;
                return Err(failure.into());
            }
        }
        previous?;
        Ok(report)
    }

    fn observe(&self, rows: &[outbox::OutboxRow], published: &publish::Published) {
        let now = time::OffsetDateTime::now_utc();
        self.metrics.batch_size.observe(rows.len() as f64);
        self.metrics
            .published
            .inc_by((published.acked.len() - published.duplicates) as u64);
        self.metrics.duplicates.inc_by(published.duplicates as u64);
        // `acked` follows the claim order, as `rows` does.
        let mut acked = published.acked.iter().peekable();
        for row in rows {
            if acked.next_if_eq(&&row.id).is_some() {
                let lag = (now - row.created_at).as_seconds_f64().max(0.0);
                self.metrics.commit_to_stream.observe(lag);
            }
        }
    }

    /// The publisher, for tools and tests that publish claimed rows themselves.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }
}

/// Reads the outbox backlog into the leader's gauges every `every` until `stop`.
async fn watch_backlog(
    pool: Pool,
    metrics: RelayMetrics,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(client) = pool.get().await else {
            continue;
        };
        if let Ok((rows, age)) = outbox::backlog(&client).await {
            metrics.pending_rows.set(rows);
            metrics.oldest_pending_age.set(age);
        }
    }
}

/// Capped exponential backoff: 100 ms, 200 ms, ... up to `max`.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Backoff {
            next: Duration::from_millis(100),
            max,
        }
    }

    fn next(&mut self) -> Duration {
        let current = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        current
    }

    fn reset(&mut self) {
        self.next = Duration::from_millis(100);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(500));
        let steps: Vec<u128> = (0..5).map(|_| backoff.next().as_millis()).collect();
        assert_eq!(steps, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next(), Duration::from_millis(100));
    }
}

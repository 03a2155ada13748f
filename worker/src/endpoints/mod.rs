//! Delivery to webhook endpoints: many integrators, each with its own URL, filter, secret,
//! rate and failures (the endpoints are managed through the API; migration V8).
//!
//! # Design: one reader of the stream, a cursor per endpoint
//!
//! JetStream consumers are not made per endpoint: 10,000 durable consumers, each with its
//! own state on the server and its own pull, would cost the server memory and the worker a
//! pull loop per endpoint, whether the endpoint is busy or idle. Instead:
//!
//! - **The tail** ([`tail`]): one ordered consumer per worker follows `latch.events.>`
//!   from the stream's end. Each event is parsed once and offered to the inbox of every
//!   endpoint whose filter (kinds, sites) it matches. Offering never waits: an inbox holds
//!   [`INBOX`] events, and an endpoint whose inbox is full only gets a mark that it missed
//!   some ("overflowed").
//! - **A cursor per endpoint** ([`endpoint`]): each endpoint has its own task, its own
//!   position in the stream (saved in PostgreSQL, `webhook_endpoints.position`: every
//!   event routed to it up to there is delivered or dead-lettered), its own lanes, breaker,
//!   rate limit, `Retry-After` pause, retry schedule and attempt count. It takes events
//!   from its inbox while it keeps up; when it starts, after a restart, when it was
//!   disabled, or when its inbox overflowed, it reads what it missed from the stream itself
//!   in pages (a short-lived ordered consumer from its position, filtered by its kinds;
//!   [`MAX_READS`](EndpointsConfig::max_reads) pages at once per worker) until it reaches
//!   the stream's end, and then takes from its inbox again. The backlog of a slow or
//!   failing endpoint is the stream itself, not the worker's memory, and nothing it does
//!   makes another endpoint wait: the tail never blocks on it.
//! - **Order.** Within an endpoint, events go to lanes by holder (door for events without
//!   one), and a lane delivers one event at a time, retrying in place; so one holder's
//!   events arrive in commit order, as for the sinks.
//! - **At least once.** The position saved is just before the oldest event still in hand,
//!   so after a crash the worker delivers again from there: an event may reach an endpoint
//!   twice, with the same `webhook-id`, which receivers apply once.
//! - **Endpoints change** through the API; the worker reads the table every
//!   [`refresh`](EndpointsConfig::refresh) and follows: a new endpoint starts with the
//!   first event stored at or after its creation, a disabled one stops (keeping its
//!   position), an enabled one resumes from its position (or from the time of enabling,
//!   when the operator says "now"), a deleted one stops for good; a changed URL, filter,
//!   rate or secret applies from the next call. "From a time" is by the event's
//!   `recorded_at` (its commit), not by when the relay stored it: the endpoint reads the
//!   stream from that time and skips what was recorded before.
//!
//! # Failure handling
//!
//! A 2xx is delivered; a 410 Gone disables the endpoint at once; another 4xx (but 408 and
//! 429) dead-letters the event (`latch.dlq.endpoint.<id>`); the rest is retried after a
//! capped, jittered backoff, or the endpoint's `Retry-After` if longer — which pauses the
//! whole endpoint, not one lane. After [`max_attempts`](EndpointsConfig::max_attempts)
//! calls an event is dead-lettered. Five consecutive failures open the endpoint's breaker
//! (no calls, no attempts used, for 5 s doubling to a minute, then one probe). An endpoint
//! with no successful call for [`disable_after`](EndpointsConfig::disable_after) since its
//! first failure is disabled, with a `webhook_endpoint_disabled` action and event. Every
//! call is recorded in `webhook_attempts`, kept for
//! [`attempts_retention`](EndpointsConfig::attempts_retention).
//!
//! One worker delivers to all the endpoints at a time (each endpoint's position is saved
//! by the worker that delivers to it), holding an advisory lock; the others stand by.
//! Partitioned workers (`LATCH_WORKER_PARTITIONED`) share the endpoints instead, a shard
//! each, with a lock per shard ([`shards`]).

pub mod call;
pub mod endpoint;
pub mod shards;
pub mod store;
pub mod tail;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream;
use deadpool_postgres::Pool;
use latch_core::config::{ConfigError, DatabaseConfig, Setting, Source};
use latch_core::outbound::Policy;
use latch_core::shutdown::CancellationToken;
use prometheus::{IntCounter, IntGaugeVec, Opts, Registry};
use tokio::sync::{Semaphore, mpsc};
use uuid::Uuid;

use crate::config::RetryConfig;
use crate::metrics::WorkerMetrics;
use endpoint::Runtime;
use store::Attempt;

/// Events an endpoint's inbox holds before it reads from the stream instead.
pub const INBOX: usize = 256;

/// The `sink` label of the endpoints' delivery metrics (one for all endpoints: the
/// per-endpoint figures are in `GET /v1/webhooks/endpoints/{id}`, not in Prometheus).
pub const METRICS_SINK: &str = "endpoints";

/// How the endpoints are delivered to.
#[derive(Debug, Clone)]
pub struct EndpointsConfig {
    /// Bounds each call (`LATCH_WEBHOOKS_TIMEOUT`).
    pub timeout: Duration,
    /// Lanes per endpoint: its calls in flight at most (`LATCH_WEBHOOKS_CONCURRENCY`).
    pub concurrency: usize,
    /// Calls before an event is dead-lettered (`LATCH_WEBHOOKS_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// An endpoint without a success this long after its first failure is disabled
    /// (`LATCH_WEBHOOKS_DISABLE_AFTER`).
    pub disable_after: Duration,
    /// Attempts are kept this long (`LATCH_WEBHOOKS_ATTEMPTS_RETENTION`).
    pub attempts_retention: Duration,
    /// How often the endpoints table is read again, and progress saved
    /// (`LATCH_WEBHOOKS_REFRESH`).
    pub refresh: Duration,
    /// Pages read from the stream at once, by all endpoints together
    /// (`LATCH_WEBHOOKS_MAX_READS`).
    pub max_reads: usize,
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    pub retry: RetryConfig,
    pub policy: Policy,
    /// Shared among partitioned workers by shard; `None`: one deliverer for all.
    pub sharding: Option<shards::Sharding>,
}

const fn setting(key: &'static str, default: &'static str, meaning: &'static str) -> Setting {
    Setting {
        key,
        default: Some(default),
        meaning,
    }
}

pub const TIMEOUT: Setting = setting("webhooks.timeout", "5s", "bounds each call to an endpoint");
pub const CONCURRENCY: Setting = setting(
    "webhooks.concurrency",
    "4",
    "lanes per endpoint: its calls in flight at most",
);
pub const MAX_ATTEMPTS: Setting = setting(
    "webhooks.max_attempts",
    "8",
    "calls before an event is dead-lettered for an endpoint",
);
pub const DISABLE_AFTER: Setting = setting(
    "webhooks.disable_after",
    "3d",
    "an endpoint without a successful call this long after its first failure is disabled",
);
pub const ATTEMPTS_RETENTION: Setting = setting(
    "webhooks.attempts_retention",
    "7d",
    "how long endpoint attempts are kept",
);
pub const REFRESH: Setting = setting(
    "webhooks.refresh",
    "1s",
    "how often the worker reads the endpoints again and saves their progress",
);
pub const MAX_READS: Setting = setting(
    "webhooks.max_reads",
    "8",
    "pages endpoints catching up read from the stream at once",
);

pub const SETTINGS: &[Setting] = &[
    TIMEOUT,
    CONCURRENCY,
    MAX_ATTEMPTS,
    DISABLE_AFTER,
    ATTEMPTS_RETENTION,
    REFRESH,
    MAX_READS,
];

impl EndpointsConfig {
    pub fn from_source(source: &Source, retry: RetryConfig) -> Result<Self, ConfigError> {
        Ok(EndpointsConfig {
            timeout: source.duration(&TIMEOUT)?,
            concurrency: source.count(&CONCURRENCY)?,
            max_attempts: source.count(&MAX_ATTEMPTS)? as u32,
            disable_after: source.duration(&DISABLE_AFTER)?,
            attempts_retention: source.duration(&ATTEMPTS_RETENTION)?,
            refresh: source.duration(&REFRESH)?,
            max_reads: source.count(&MAX_READS)?,
            breaker_failures: 5,
            breaker_open: Duration::from_secs(5),
            retry,
            policy: Policy::from_source(source)?,
            sharding: None,
        })
    }

    /// The defaults, with this policy.
    pub fn with_policy(policy: Policy) -> Self {
        EndpointsConfig {
            policy,
            ..EndpointsConfig::from_source(&Source::default(), RetryConfig::default())
                .expect("the declared defaults are valid")
        }
    }
}

/// Aggregate gauges (bounded labels: never one series per endpoint).
#[derive(Clone)]
pub struct EndpointMetrics {
    /// Endpoints by state: `delivering`, `catching_up`, `breaker_open`.
    pub endpoints: IntGaugeVec,
    /// Attempts not recorded because the attempt log's queue was full.
    pub attempts_dropped: IntCounter,
}

impl EndpointMetrics {
    fn new(registry: &Registry) -> anyhow::Result<Self> {
        let endpoints = IntGaugeVec::new(
            Opts::new(
                "latch_webhook_endpoints",
                "Enabled webhook endpoints this worker delivers to, by state",
            ),
            &["state"],
        )?;
        registry.register(Box::new(endpoints.clone()))?;
        let attempts_dropped = IntCounter::new(
            "latch_webhook_attempts_dropped_total",
            "Webhook endpoint attempts not recorded in webhook_attempts: the writer's queue was full",
        )?;
        registry.register(Box::new(attempts_dropped.clone()))?;
        Ok(EndpointMetrics {
            endpoints,
            attempts_dropped,
        })
    }
}

/// What every endpoint's task shares.
pub struct Shared {
    pub config: EndpointsConfig,
    pub pool: Pool,
    /// For the deliverers' lock, held on a connection of its own.
    pub database_url: latch_core::config::Secret<String>,
    pub js: jetstream::Context,
    pub stream: jetstream::stream::Stream,
    pub http: reqwest::Client,
    pub policy: Arc<Policy>,
    pub reads: Semaphore,
    pub attempts: mpsc::Sender<Attempt>,
    pub attempts_dropped: IntCounter,
    pub metrics: WorkerMetrics,
    /// The tail's position: every event up to here has been offered to the inboxes.
    pub tail: Arc<std::sync::atomic::AtomicU64>,
}

/// The endpoints the tail offers events to.
pub type Routing = Arc<RwLock<Arc<Vec<Arc<Runtime>>>>>;

/// The endpoints' delivery, ready to run.
pub struct Endpoints {
    shared: Arc<Shared>,
    metrics: EndpointMetrics,
    attempts: mpsc::Receiver<Attempt>,
}

/// Attempts waiting to be written at most; beyond, they are dropped (and counted).
const ATTEMPT_BUFFER: usize = 10_000;

impl Endpoints {
    pub async fn build(
        database: &DatabaseConfig,
        config: EndpointsConfig,
        js: jetstream::Context,
        stream: jetstream::stream::Stream,
        metrics: WorkerMetrics,
        registry: &Registry,
    ) -> anyhow::Result<Endpoints> {
        let pool = latch_core::db::pool(database)?;
        let policy = Arc::new(config.policy.clone());
        let http = call::client(policy.clone(), config.timeout)?;
        let (sender, attempts) = mpsc::channel(ATTEMPT_BUFFER);
        let endpoint_metrics = EndpointMetrics::new(registry)?;
        Ok(Endpoints {
            attempts,
            shared: Arc::new(Shared {
                reads: Semaphore::new(config.max_reads),
                config,
                pool,
                database_url: database.url.clone(),
                js,
                stream,
                http,
                policy,
                attempts: sender,
                attempts_dropped: endpoint_metrics.attempts_dropped.clone(),
                metrics,
                tail: Arc::default(),
            }),
            metrics: endpoint_metrics,
        })
    }

    /// Delivers until `shutdown` — while this worker holds the deliverers' lock: another
    /// worker with a database stands by, and takes over when this one stops.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let shared = self.shared;
        let writer_stop = CancellationToken::new();
        let writer = tokio::spawn(write_attempts(
            shared.clone(),
            self.attempts,
            writer_stop.clone(),
        ));
        if let Some(sharding) = shared.config.sharding {
            run_sharded(&shared, &self.metrics, sharding, &shutdown).await;
            writer_stop.cancel();
            let _ = writer.await;
            return Ok(());
        }
        while let Some(lock) = DelivererLock::acquire(&shared, &shutdown).await {
            let session = shutdown.child_token();
            let watch = {
                let (session, lost) = (session.clone(), lock.lost.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = lost.cancelled() => session.cancel(),
                        _ = session.cancelled() => {}
                    }
                })
            };
            deliver(&shared, &self.metrics, None, &session).await;
            session.cancel();
            let _ = watch.await;
            drop(lock);
            if shutdown.is_cancelled() {
                break;
            }
            tracing::warn!(
                "lost the webhook deliverers' lock (the database connection); standing by"
            );
        }
        // Last: the lanes' final attempts are recorded.
        writer_stop.cancel();
        let _ = writer.await;
        Ok(())
    }
}

/// The session-level advisory lock that makes one worker the endpoints' deliverer, held on
/// a connection of its own: it goes with the connection, so a worker that dies or loses
/// the database hands over within a refresh.
struct DelivererLock {
    _client: tokio_postgres::Client,
    lost: CancellationToken,
}

/// The lock's key (`latchwh` in ASCII); the shards' locks follow it.
const DELIVERER_LOCK: i64 = 0x6c_61_74_63_68_77_68;

impl DelivererLock {
    /// Waits for the lock; `None` at shutdown.
    async fn acquire(shared: &Shared, shutdown: &CancellationToken) -> Option<DelivererLock> {
        let mut said = false;
        loop {
            match Self::try_acquire(shared).await {
                Ok(Some(lock)) => {
                    tracing::info!("delivering to webhook endpoints");
                    return Some(lock);
                }
                Ok(None) if !said => {
                    said = true;
                    tracing::info!("another worker delivers to the webhook endpoints; standing by");
                }
                Ok(None) => {}
                Err(error) if !said => {
                    said = true;
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot take the webhook deliverers' lock; retrying"
                    );
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(shared.config.refresh) => {}
            }
        }
    }

    async fn try_acquire(shared: &Shared) -> anyhow::Result<Option<DelivererLock>> {
        let (client, lost) = lock_connection(shared).await?;
        let acquired: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&DELIVERER_LOCK])
            .await?
            .get(0);
        Ok(acquired.then_some(DelivererLock {
            _client: client,
            lost,
        }))
    }
}

/// A connection of its own for advisory locks, and what tells when it is gone (the locks
/// with it).
async fn lock_connection(
    shared: &Shared,
) -> anyhow::Result<(tokio_postgres::Client, CancellationToken)> {
    let (client, mut messages) = latch_core::db::connect_listening(&shared.database_url).await?;
    let lost = CancellationToken::new();
    {
        let lost = lost.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(message) = messages.next().await {
                if message.is_err() {
                    break;
                }
            }
            lost.cancel();
        });
    }
    Ok((client, lost))
}

/// Partitioned: delivers to the shards of endpoints given to this worker until `shutdown`,
/// joining again whenever its lock connection is lost.
async fn run_sharded(
    shared: &Arc<Shared>,
    metrics: &EndpointMetrics,
    sharding: shards::Sharding,
    shutdown: &CancellationToken,
) {
    let stream = shared.stream.cached_info().config.name.clone();
    let mut said = false;
    while !shutdown.is_cancelled() {
        let joined = async {
            let (client, lost) = lock_connection(shared).await?;
            let membership = crate::partitions::Membership::join(
                &shared.js,
                &stream,
                vec!["endpoints"],
                sharding.replicas,
                sharding.lease,
            )
            .await?;
            anyhow::Ok((
                shards::Shards::new(sharding.shards, membership, client),
                lost,
            ))
        }
        .await;
        let (mut shards, lost) = match joined {
            Ok(joined) => joined,
            Err(error) => {
                if !std::mem::replace(&mut said, true) {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot join the endpoints' deliverers; retrying"
                    );
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(shared.config.refresh) => continue,
                }
            }
        };
        said = false;
        tracing::info!(
            shards = sharding.shards,
            "sharing the webhook endpoints with the workers present"
        );
        let session = shutdown.child_token();
        let watch = {
            let session = session.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = lost.cancelled() => session.cancel(),
                    _ = session.cancelled() => {}
                }
            })
        };
        deliver(shared, metrics, Some(&mut shards), &session).await;
        session.cancel();
        let _ = watch.await;
        shards.leave().await;
        if !shutdown.is_cancelled() {
            tracing::warn!("lost the connection holding the endpoints' shards; joining again");
        }
    }
}

/// Delivers to the endpoints (those of the shards this worker holds, when sharing) until
/// `stop`.
async fn deliver(
    shared: &Arc<Shared>,
    metrics: &EndpointMetrics,
    mut shards: Option<&mut shards::Shards>,
    stop: &CancellationToken,
) {
    let routing: Routing = Arc::default();
    // The tail's start is fixed before any endpoint reads its first page, so that a page
    // read to the stream's end meets the events the tail offers.
    let mut said = false;
    let tail = loop {
        match tail::Tail::start(shared).await {
            Ok(tail) => break tail,
            Err(error) => {
                if !std::mem::replace(&mut said, true) {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot follow the event stream for the endpoints; retrying"
                    );
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let tail_task = tokio::spawn(tail.run(shared.clone(), routing.clone(), stop.clone()));
    let mut endpoints = Delivering {
        running: HashMap::new(),
        retiring: HashMap::new(),
    };
    let mut last_prune = None::<std::time::Instant>;
    let mut failing = false;
    let mut known = Known::default();
    loop {
        match known.refresh(&shared.pool).await {
            Ok(()) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("reading the webhook endpoints again");
                }
                let served;
                let rows = match shards.as_deref_mut() {
                    Some(shards) => {
                        let active = endpoints.running.keys().copied().chain(
                            endpoints
                                .retiring
                                .iter()
                                .filter(|(_, runtime)| !runtime.finished())
                                .map(|(id, _)| *id),
                        );
                        shards.update(active).await;
                        served = shards.serving(&known.rows);
                        &served
                    }
                    None => &known.rows,
                };
                endpoints.follow(shared, &routing, rows, stop);
            }
            Err(error) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot read the webhook endpoints; retrying"
                    );
                }
            }
        }
        save_progress(shared, endpoints.running.values()).await;
        metrics.observe(endpoints.running.values());
        if last_prune.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
            last_prune = Some(std::time::Instant::now());
            match store::prune(&shared.pool, shared.config.attempts_retention).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "old endpoint attempts pruned"),
                Err(error) => tracing::warn!(%error, "cannot prune endpoint attempts"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(shared.config.refresh) => {}
        }
    }
    for runtime in endpoints.running.values() {
        runtime.stop();
    }
    for runtime in endpoints
        .running
        .values()
        .chain(endpoints.retiring.values())
    {
        runtime.stopped().await;
    }
    save_progress(shared, endpoints.running.values()).await;
    let _ = tail_task.await;
}

impl EndpointMetrics {
    fn observe<'a>(&self, runtimes: impl Iterator<Item = &'a Arc<Runtime>>) {
        let (mut delivering, mut catching_up, mut open) = (0, 0, 0);
        for runtime in runtimes {
            if runtime.catching_up() {
                catching_up += 1;
            } else {
                delivering += 1;
            }
            if runtime.breaker_open() {
                open += 1;
            }
        }
        for (state, value) in [
            ("delivering", delivering),
            ("catching_up", catching_up),
            ("breaker_open", open),
        ] {
            self.endpoints.with_label_values(&[state]).set(value);
        }
    }
}

/// The endpoints table as last read. Each refresh reads the rows changed in the last
/// [`LATE_COMMIT`] before the latest change seen (a change is stamped when its transaction
/// starts and may commit after a later one), the ids when their fingerprint changed (a
/// deletion), and the whole table once a minute.
#[derive(Default)]
struct Known {
    rows: HashMap<Uuid, store::EndpointRow>,
    census: Option<store::Census>,
    full_at: Option<std::time::Instant>,
}

const LATE_COMMIT: Duration = Duration::from_secs(30);
/// The whole table is read again at least this often.
const FULL_READ: Duration = Duration::from_secs(60);

impl Known {
    async fn refresh(&mut self, pool: &Pool) -> anyhow::Result<()> {
        let census = store::census(pool).await?;
        if self.full_at.is_none_or(|at| at.elapsed() >= FULL_READ) {
            let rows = store::load(pool, None).await?;
            self.rows = rows.into_iter().map(|row| (row.id, row)).collect();
            self.full_at = Some(std::time::Instant::now());
        } else {
            if self.census.is_some_and(|known| known.ids != census.ids) {
                let ids = store::ids(pool).await?;
                self.rows.retain(|id, _| ids.contains(id));
            }
            let since = census.latest.map(|at| at - LATE_COMMIT);
            if since.is_some() {
                for row in store::load(pool, since).await? {
                    self.rows.insert(row.id, row);
                }
            }
        }
        self.census = Some(census);
        Ok(())
    }
}

/// The endpoints delivered to, and those stopping.
struct Delivering {
    running: HashMap<Uuid, Arc<Runtime>>,
    /// Stopped, their lanes maybe still finishing a call: a restart of the same endpoint
    /// waits for them.
    retiring: HashMap<Uuid, Arc<Runtime>>,
}

impl Delivering {
    /// Starts, changes and stops endpoint tasks to match the table.
    fn follow(
        &mut self,
        shared: &Arc<Shared>,
        routing: &Routing,
        rows: &HashMap<Uuid, store::EndpointRow>,
        stop: &CancellationToken,
    ) {
        self.retiring.retain(|_, runtime| !runtime.finished());
        let mut changed = false;
        let mut started = Vec::new();
        for row in rows.values() {
            match self.running.get(&row.id).cloned() {
                // Disabled, enabled again "from now", or recovering: this task stops; an
                // enabled one starts afresh on the next pass.
                Some(runtime) if row.disabled || runtime.row().restarts(row) => {
                    self.retire(shared, runtime);
                    changed = true;
                }
                Some(runtime) => {
                    if !runtime.row().same_version(row) {
                        runtime.update(row.clone());
                    }
                }
                None if row.disabled => {}
                None => {
                    let runtime = Runtime::new(shared.clone(), row.clone(), stop);
                    self.running.insert(row.id, runtime.clone());
                    started.push(runtime);
                    changed = true;
                }
            }
        }
        let gone: Vec<Arc<Runtime>> = self
            .running
            .values()
            .filter(|r| !rows.contains_key(&r.id()) || r.is_stopped())
            .cloned()
            .collect();
        for runtime in gone {
            self.retire(shared, runtime);
            changed = true;
        }
        if changed {
            let snapshot: Vec<Arc<Runtime>> = self.running.values().cloned().collect();
            if let Ok(mut routes) = routing.write() {
                *routes = Arc::new(snapshot);
            }
        }
        // Only now that the tail offers them events.
        for runtime in started {
            let previous = self.retiring.remove(&runtime.id());
            runtime.launch(previous);
        }
    }

    /// Stops an endpoint's task and saves its progress once its lanes have let go.
    fn retire(&mut self, shared: &Arc<Shared>, runtime: Arc<Runtime>) {
        runtime.stop();
        self.running.remove(&runtime.id());
        self.retiring.insert(runtime.id(), runtime.clone());
        let shared = shared.clone();
        tokio::spawn(async move {
            runtime.stopped().await;
            save_progress(&shared, std::iter::once(&runtime)).await;
        });
    }
}

async fn save_progress<'a>(shared: &Shared, runtimes: impl Iterator<Item = &'a Arc<Runtime>>) {
    let tail = shared.tail.load(std::sync::atomic::Ordering::Acquire);
    let pending: Vec<(&Arc<Runtime>, store::Progress)> = runtimes
        .filter_map(|r| r.progress(tail).map(|p| (r, p)))
        .collect();
    if pending.is_empty() {
        return;
    }
    let progress: Vec<store::Progress> = pending.iter().map(|(_, p)| p.clone()).collect();
    match store::save(&shared.pool, &progress).await {
        Ok(()) => {
            for (runtime, saved) in pending {
                runtime.saved(saved);
            }
        }
        Err(error) => tracing::warn!(
            error = format!("{error:#}"),
            "cannot save the endpoints' progress; retrying"
        ),
    }
}

/// Writes attempts in batches until shutdown (and what is left then).
async fn write_attempts(
    shared: Arc<Shared>,
    mut attempts: mpsc::Receiver<Attempt>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(500);
    loop {
        let open = tokio::select! {
            received = attempts.recv_many(&mut batch, 500) => received > 0,
            _ = shutdown.cancelled() => false,
        };
        if !open {
            while let Ok(attempt) = attempts.try_recv() {
                batch.push(attempt);
            }
        }
        if let Err(error) = store::record(&shared.pool, &batch).await {
            tracing::warn!(
                error = format!("{error:#}"),
                lost = batch.len(),
                "cannot record endpoint attempts"
            );
        }
        batch.clear();
        if !open {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

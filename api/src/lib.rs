//! latch-api: the HTTP service for card readers and administrators.
//!
//! # Layout
//!
//! - [`readers`]: the card reader protocol — `POST /v1/unlock`, `/v1/check-ins`,
//!   `/v1/check-outs` (the hot path, one SQL statement per request), door alarms, offline
//!   uploads, per-reader sequence numbers, heartbeats and the offline/online watch.
//! - [`admin`]: doors, holders, readers and grants.
//! - [`registry`]: the action log and the presence roll-call.
//! - [`feed`]: the events of `LATCH_EVENTS` read from a cursor and followed live
//!   (Server-Sent Events); [`session`]: session cookies for browsers.
//! - [`auth`], [`limits`], [`body`], [`idempotency`], [`trace`], [`headers`]: what every
//!   request goes through (credentials and scopes, rate limits, bodies, retries, tracing,
//!   security headers).
//! - [`error`]: the error policy and the JSON error body; [`contain`]: the deadline and
//!   the panic containment every request gets.
//! - [`timestamp`], [`whole`]: the times and whole numbers clients may send, read as the
//!   OpenAPI document describes them and checked before anything is written.
//! - [`config`]: the API's settings beyond its listener; [`tls`]: HTTPS, its certificate
//!   reloading and client certificates.
//! - [`health`], [`openapi`]: operations endpoints and the generated API description.
//!
//! The API writes nothing to NATS: it commits actions and their outbox rows in PostgreSQL
//! and the relay takes it from there. It reads the event stream only to serve the feed.

pub mod admin;
pub mod alarms;
pub mod auth;
pub mod body;
pub mod config;
pub mod console;
pub mod contain;
pub mod error;
pub mod feed;
pub mod headers;
pub mod health;
pub mod idempotency;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod readers;
pub mod registry;
pub mod session;
pub mod timestamp;
pub mod tls;
pub mod trace;
pub mod whole;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::Context;
use deadpool_postgres::Pool;
use latch_core::config::{DatabaseConfig, HttpConfig};
use latch_core::shutdown::CancellationToken;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use crate::config::{ApiConfig, ReadersConfig};
use crate::error::ApiError;
pub use crate::limits::{Rate, RateLimits};
use crate::readers::heartbeat::LastSeen;

/// How often the API creates upcoming registry partitions and prunes idempotency keys and
/// reader seqs.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

/// How often the rate limiters drop the buckets of keys and addresses gone quiet.
const FORGET_IDLE_LIMITS_EVERY: Duration = Duration::from_secs(60);

/// Connections of the API's background upkeep (partitions, pruning, reader liveness), apart
/// from the HTTP workers' own.
const UPKEEP_CONNECTIONS: usize = 2;

/// A bound, not yet running, API server.
pub struct Application {
    listener: TcpListener,
    config: HttpConfig,
    /// One pool per HTTP worker (see [`worker_pools`]).
    worker_pools: Vec<Pool>,
    /// The background tasks' pool.
    pool: Pool,
    metrics: metrics::ApiMetrics,
    api: ApiConfig,
    last_seen: Arc<LastSeen>,
    /// HTTPS, when configured.
    tls: Option<rustls::ServerConfig>,
}

impl Application {
    /// Binds the listener (port 0 picks a free port, see [`Application::port`]).
    pub fn build(
        config: HttpConfig,
        db: &DatabaseConfig,
        registry: prometheus::Registry,
        api: ApiConfig,
    ) -> anyhow::Result<Application> {
        let worker_pools = worker_pools(db, config.workers)?;
        let pool = latch_core::db::pool(&DatabaseConfig {
            pool_size: UPKEEP_CONNECTIONS,
            ..db.clone()
        })?;
        let tls = api
            .tls
            .as_ref()
            .map(tls::server_config)
            .transpose()
            .context("cannot set up HTTPS (LATCH_HTTP_TLS_*)")?;
        let listener = TcpListener::bind(config.addr)
            .with_context(|| format!("cannot listen on {} (LATCH_HTTP_ADDR)", config.addr))?;
        Ok(Application {
            listener,
            config,
            worker_pools,
            pool,
            metrics: metrics::ApiMetrics::new(registry),
            api,
            last_seen: Arc::default(),
            tls,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` is cancelled, then lets requests in flight finish.
    pub async fn run_until(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let worker_pools: Vec<_> = self.worker_pools.into_iter().map(web::Data::new).collect();
        let next_pool = Arc::new(AtomicUsize::new(0));
        let metrics = web::Data::new(self.metrics.clone());
        let api = web::Data::new(self.api.clone());
        let limiters = web::Data::new(limits::Limiters::new(
            self.api.rate_limits,
            self.metrics.clone(),
        ));
        let last_seen = web::Data::from(self.last_seen.clone());
        let feed = match &self.api.nats {
            Some(nats) => {
                let client = latch_core::nats::connect(nats, "latch-api").await?;
                Some(feed::Feed::new(
                    client,
                    nats.events_stream.clone(),
                    self.api.feed.clone(),
                    self.metrics.clone(),
                    shutdown.child_token(),
                ))
            }
            None => None,
        };
        let served_feed = feed.clone().map(web::Data::from);
        let body_limit = self.config.body_limit_bytes;
        let request_timeout = self.config.request_timeout;
        let batch_body_limit = self.api.batch_body_limit(body_limit);
        let served_limiters = limiters.clone();
        let server = HttpServer::new(move || {
            // Called once on each worker thread: the worker takes a pool of its own.
            let turn = next_pool.fetch_add(1, Ordering::Relaxed);
            let pool = worker_pools[turn % worker_pools.len()].clone();
            App::new()
                .app_data(pool)
                .app_data(metrics.clone())
                .app_data(api.clone())
                .app_data(last_seen.clone())
                .app_data(served_limiters.clone())
                .wrap(actix_web::middleware::from_fn(contain::contain_panics))
                .wrap(actix_web::middleware::from_fn(limits::failed_auth))
                .wrap(actix_web::middleware::from_fn(move |req, next| {
                    contain::deadline(req, next, request_timeout)
                }))
                .wrap(actix_web::middleware::from_fn(metrics::record))
                .wrap(actix_web::middleware::from_fn(trace::span))
                .wrap(actix_web::middleware::from_fn(headers::security))
                .configure(|cfg| {
                    if let Some(feed) = &served_feed {
                        cfg.app_data(feed.clone());
                    }
                    routes(cfg, body_limit, batch_body_limit)
                })
        })
        .workers(self.config.workers)
        .disable_signals()
        .shutdown_timeout(10)
        .on_connect(tls::on_connect);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let server = match self.tls {
            Some(config) => server.listen_rustls_0_23(self.listener, config),
            None => server.listen(self.listener),
        }
        .context("cannot start the HTTP server")?
        .run();
        let handle = server.handle();
        tracing::info!(addr = %self.config.addr, scheme, "API listening");

        let maintenance = tokio::spawn(maintain(
            self.pool.clone(),
            self.api.readers.seq_retention,
            shutdown.clone(),
        ));
        let forget = {
            let shutdown = shutdown.clone();
            let limiters = limiters.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(FORGET_IDLE_LIMITS_EVERY) => limiters.forget_idle(),
                    }
                }
            })
        };
        let liveness = tokio::spawn(readers::liveness::watch(
            self.pool.clone(),
            self.last_seen.clone(),
            self.api.readers.clone(),
            self.metrics.clone(),
            shutdown.clone(),
        ));
        let tail = feed.map(|feed| tokio::spawn(feed::tail(feed)));
        let stopper = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                handle.stop(true).await;
            })
        };
        let result = server.await.context("HTTP server failed");
        shutdown.cancel();
        let _ = stopper.await;
        let _ = maintenance.await;
        let _ = forget.await;
        let _ = liveness.await;
        if let Some(tail) = tail {
            let _ = tail.await;
        }
        // The last requests have been answered: write who they came from.
        if let Err(error) = readers::liveness::flush(&self.pool, &self.last_seen).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "cannot write the last reader heartbeats"
            );
        }
        tracing::info!("API stopped");
        result
    }
}

/// The HTTP workers' pools: `pool_size` connections split evenly, at least one each.
///
/// Each actix worker is a single-threaded runtime, and a pooled connection's I/O task runs
/// on the runtime that opened it. With one shared pool, a request on one worker often got
/// a connection opened by another, and every statement then crossed threads twice (request
/// out, answer back). A pool per worker keeps each request and its connection on one
/// thread: on two cores this raised unlock throughput by about an eighth.
fn worker_pools(db: &DatabaseConfig, workers: usize) -> anyhow::Result<Vec<Pool>> {
    let workers = workers.max(1);
    let per_worker = db.pool_size.div_ceil(workers).max(1);
    (0..workers)
        .map(|_| {
            latch_core::db::pool(&DatabaseConfig {
                pool_size: per_worker,
                ..db.clone()
            })
        })
        .collect()
}

/// Every route, with the JSON/path/query error handling that turns bad input into 4xx.
/// Offline uploads get a body limit of their own (`batch_body_limit`).
pub fn routes(cfg: &mut web::ServiceConfig, body_limit: usize, batch_body_limit: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(body_limit)
            .error_handler(json_error),
    )
    .app_data(web::PayloadConfig::default().limit(body_limit))
    .app_data(web::PathConfig::default().error_handler(path_error))
    .app_data(web::QueryConfig::default().error_handler(query_error))
    .service(readers::unlock::unlock)
    .service(readers::presence::check_in)
    .service(readers::presence::check_out)
    .service(readers::alarm::alarm)
    .service(readers::heartbeat::heartbeat)
    .service(
        web::resource("/v1/readers/events:batch")
            .app_data(
                web::JsonConfig::default()
                    .limit(batch_body_limit)
                    .error_handler(json_error),
            )
            .route(web::post().to(readers::batch::upload))
            .default_service(web::to(not_found)),
    )
    .service(readers::gaps::gaps)
    .service(admin::create_door)
    .service(admin::list_doors)
    .service(admin::create_holder)
    .service(admin::update_holder)
    .service(admin::list_holders)
    .service(admin::enrol_reader)
    .service(admin::disable_reader)
    .service(admin::rotate_reader_key)
    .service(admin::list_readers)
    .service(admin::create_grant)
    .service(admin::revoke_grant)
    .service(admin::list_grants)
    .service(admin::create_endpoint)
    .service(admin::list_endpoints)
    .service(admin::get_endpoint)
    .service(admin::update_endpoint)
    .service(admin::delete_endpoint)
    .service(admin::rotate_endpoint_secret)
    .service(admin::list_attempts)
    .service(admin::endpoint_stats)
    .service(admin::recover_endpoint)
    .service(admin::list_dead_letters)
    .service(admin::show_dead_letter)
    .service(admin::replay_dead_letters)
    .service(admin::purge_dead_letters)
    .service(admin::pipeline_status)
    .service(registry::list_actions)
    .service(registry::presence)
    .service(registry::presence_csv)
    .service(registry::mark_safe)
    .service(alarms::alarms)
    .service(console::redirect)
    .service(console::serve)
    .service(feed::pull::list)
    .service(feed::sse::stream)
    .service(session::create)
    .service(session::end)
    .service(health::healthz)
    .service(health::readyz)
    .service(metrics::serve)
    .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi::ApiDoc::openapi()))
    .default_service(web::to(not_found));
}

/// No route matched: 405 with `Allow` when the path is one the API serves (with other
/// methods), 404 otherwise.
async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if let Some(allowed) = openapi::methods_of(req.path()) {
        return Err(ApiError::method_not_allowed(
            req.method().as_str(),
            &allowed,
        ));
    }
    Err(ApiError::not_found(
        "not_found",
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

fn json_error(error: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let api_error = match &error {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => ApiError::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {limit} bytes"),
        ),
        JsonPayloadError::ContentType => ApiError::new(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON with Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(e) => body::invalid(e),
        other => ApiError::bad_request("malformed_body", other.to_string()),
    };
    api_error.into()
}

fn path_error(error: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_path", error.to_string()).into()
}

fn query_error(error: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_query", error.to_string()).into()
}

/// Creates upcoming registry partitions and prunes expired idempotency keys and reader
/// seqs, at start and then hourly. Failures are logged and retried at the next round.
async fn maintain(pool: Pool, seq_retention: Duration, shutdown: CancellationToken) {
    loop {
        match pool.get().await {
            Ok(client) => {
                match latch_core::db::ensure_partitions(&client).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(created = n, "created registry partitions"),
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "partition upkeep failed")
                    }
                }
                match idempotency::prune(&client).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "pruned expired idempotency keys"),
                    Err(error) => tracing::warn!(%error, "idempotency pruning failed"),
                }
                match readers::seq::prune(&client, seq_retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "pruned old reader seqs"),
                    Err(error) => tracing::warn!(%error, "reader seq pruning failed"),
                }
                match session::prune(&client).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "pruned expired sessions"),
                    Err(error) => tracing::warn!(%error, "session pruning failed"),
                }
            }
            Err(error) => tracing::warn!(%error, "maintenance could not get a connection"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(MAINTENANCE_EVERY) => {}
        }
    }
}

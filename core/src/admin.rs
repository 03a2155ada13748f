//! The small admin HTTP server of the relay and the worker: `/healthz`, `/readyz`,
//! `/metrics`.
//!
//! `/healthz` answers while the process runs; `/readyz` answers 200 only while the role
//! says it can do its work (its dependencies answered on the last try), so an
//! orchestrator can route around or restart it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::Registry;

use crate::config::{ConfigError, Setting, Source};
use crate::shutdown::CancellationToken;

/// Whether the role can do its work; flipped by the role's loop.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    readiness: Readiness,
}

pub const ADMIN_ADDR: Setting = Setting {
    key: "admin.addr",
    default: None,
    meaning: "the relay's or worker's /healthz, /readyz and /metrics (default: relay 127.0.0.1:9101, worker 127.0.0.1:9102)",
};

/// The admin listener's address: `LATCH_ADMIN_ADDR`, or the role's `default`.
pub fn addr_from_source(source: &Source, default: SocketAddr) -> Result<SocketAddr, ConfigError> {
    Ok(source.optional(&ADMIN_ADDR)?.unwrap_or(default))
}

/// Binds now (so a bad address fails at start) and serves until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (LATCH_ADMIN_ADDR)"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(state): State<AdminState>| async move {
                if state.readiness.get() {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(state): State<AdminState>| async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    crate::metrics::encode(&state.registry),
                )
            }),
        )
        .with_state(AdminState {
            registry,
            readiness,
        });
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "admin server stopped with an error");
        }
    });
    tracing::info!(addr = %bound, "admin endpoints: /healthz /readyz /metrics");
    Ok((bound, task))
}

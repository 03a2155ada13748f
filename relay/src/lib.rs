//! latch-relay: moves committed outbox rows into the `LATCH_EVENTS` stream.
//!
//! # Layout
//!
//! - [`leader`]: one relay leads (advisory lock) and LISTENs for new rows; others wait.
//! - [`outbox`]: claim a batch (`FOR UPDATE SKIP LOCKED`), delete what was published.
//! - [`publish`]: one atomic JetStream batch per claim, or for a few rows plain publishes
//!   pipelined in segments of distinct holders; plain publishes also when a batch holds
//!   ids the stream already has.
//! - [`wake`]: the handshake that makes writers NOTIFY only while the relay waits.
//! - `run`: the loop ([`Relay`]) — drain while there is work; once the outbox is empty,
//!   arm and wait for a NOTIFY or the poll interval; back off (capped, exponential) while
//!   NATS or PostgreSQL is unavailable, logging once per change of state.
//! - [`config`]: [`RelayConfig`] and the settings it reads; `error`: why a drain failed.
//!
//! # Guarantees
//!
//! A row is deleted only in the transaction that claimed it and only after the server
//! acknowledged it, so every committed row reaches the stream at least once; a republish
//! after a crash carries the same `Nats-Msg-Id` and is dropped by the stream's duplicate
//! window. One holder's events enter the stream in commit order: the outbox trigger takes
//! a per-holder transaction lock before it allocates the row id (so ids follow commit order
//! per holder), a single leader publishes in id order, one batch at a time (the next only
//! once the stream acknowledged the last), an atomic batch is stored in order, and plain
//! publishes never have two rows of one holder in flight together. The DELETE and
//! COMMIT of an acknowledged batch may still run while the next batch is claimed: the
//! claim skips its still-locked rows, which the stream already holds. While a backlog
//! drains, the next batch is claimed while the current one is published; it is published
//! only after the current one was acknowledged, and released unpublished if that failed.

pub mod config;
mod error;
pub mod leader;
pub mod metrics;
pub mod outbox;
pub mod publish;
mod run;
pub mod wake;

use anyhow::Context;
use latch_core::config::Source;
use latch_core::nats::NatsConfig;
use latch_core::shutdown::CancellationToken;

pub use config::{BATCH_SIZE, MAX_BACKOFF, POLL_INTERVAL, RelayConfig, SETTINGS};
pub use run::{DrainReport, Relay};

/// Connects the relay's pieces from settings, for `latch relay`.
pub async fn from_source(
    source: &Source,
    registry: &prometheus::Registry,
    shutdown: &CancellationToken,
) -> anyhow::Result<Relay> {
    let db = latch_core::config::DatabaseConfig::from_source(source)?;
    let pool = latch_core::db::pool(&db).context("relay database pool")?;
    Relay::build(
        RelayConfig::from_source(source)?,
        &NatsConfig::from_source(source)?,
        db.url.clone(),
        pool,
        registry,
        shutdown,
    )
    .await
}

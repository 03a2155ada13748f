//! Simulated card readers: a load generator for latch's reader API (`POST /v1/unlock`,
//! `/v1/check-ins`, `/v1/check-outs`), trustworthy enough to measure with.
//!
//! The local stack sends a short burst with it, a developer measures the p50 of a
//! thousand sequential unlocks, a benchmark harness asks for throughput and tail
//! latency at a concurrency or an offered rate. All of them call [`run`] (or
//! [`run_until`], with a shutdown token) with a [`LoadConfig`] and read a [`LoadReport`];
//! `latch-load readers` is that call behind flags ([`ReadersArgs`]).
//!
//! This module only sends requests and measures answers. It never judges them: a 401 or
//! a 409 is counted and reported, not retried and not an error. The one failure of a run
//! is a target that answered nothing at all.
//!
//! # Layout
//!
//! - [`config`]: [`LoadConfig`] — the endpoint, the [`Mode`] (closed loop with a
//!   concurrency, or open loop at a rate), when to [`Stop`], keys, cards, seed.
//! - [`keys`]: the local stack's demo keys file, read for reader keys and cards.
//! - `plan`: request number `n` → URL, key, card, `Idempotency-Key`; deterministic.
//! - `send`: one request and its outcome; the run's HTTP client (`conn`: its plain-HTTP
//!   connections).
//! - `timeline`: the run's phases (warm-up, measured) and the reachability probe.
//! - `closed` / `open`: the two loops. `run`: from config to report.
//! - `tally`: per-worker histogram and counters; [`report`]: [`LoadReport`] as JSON and
//!   as text; `distribution`: its percentile distribution, written for plotting.
//! - [`args`]: the `latch-load readers` flags.

pub mod args;
mod closed;
pub mod config;
mod conn;
mod distribution;
pub mod keys;
mod open;
mod plan;
pub mod report;
mod run;
mod send;
mod tally;
mod timeline;

pub use args::{ReadersArgs, run_readers};
pub use config::{DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT, LoadConfig, Mode, ReaderEndpoint, Stop};
pub use keys::DemoKeys;
pub use plan::{CHECK_IN_PATH, CHECK_OUT_PATH, UNLOCK_PATH};
pub use report::{LatencySummary, LoadReport, SendLag};
pub use run::{run, run_until};
pub use timeline::GIVE_UP_AFTER_REFUSALS;

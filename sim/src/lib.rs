//! latch-sim: the world outside latch, simulated over real HTTP.
//!
//! The systems latch delivers to do not exist in tests or on a developer's machine. This
//! crate stands in for them faithfully enough that the worker's retries, breakers,
//! idempotency and ordering can be tested against something that misbehaves on demand:
//! a legacy time-and-attendance API (form posts, XML answers, an API key) and a
//! third-party webhook receiver (JSON, signed), both applying each `Idempotency-Key`
//! once and counting what they received. (The benchmarks' load generators — simulated card
//! readers, raw JetStream publishing — are another crate, `latch-load`.)
//!
//! # Layout
//!
//! - [`Simulator`] ([`simulator`]): start one in process, read its [`Stats`], set its
//!   [`Faults`], reset it, stop it. The binary `latch-sim legacy` runs the same thing.
//! - [`config`]: [`SimConfig`], with a `Default` that suits tests.
//! - [`faults`]: the fault knobs as data. The gate (`gate`) applies them to each request;
//!   the listener supervisor (`listener`) makes `down` close the port for real.
//! - [`legacy`]: `POST /tna/v2/punches` and, in [`legacy::punch`], the form's field names
//!   and strict parsing, as the legacy system publishes them.
//! - [`webhooks`]: `POST /webhooks/latch`, checked with [`signature`]: Standard Webhooks
//!   signatures, verified by the reference implementation (the `standardwebhooks` crate).
//! - [`subscribers`]: named webhook subscribers, any number of independent receivers at
//!   `POST /webhooks/endpoints/{name}`, each with its own secrets (one to three, any one
//!   verifies), fault knobs ([`SubscriberFaults`], with `gone`) and ledger; checked by the
//!   same code as `/webhooks/latch`, managed on the admin listener under `/endpoints`.
//!
//! The crate shares no code with latch (it depends on no latch crate): what latch sends is
//! checked against the published formats, so a mistake in latch cannot pass by being made
//! twice.
//! - [`stats`]: the `GET /stats` document; the ledger (`ledger`) fills it in and keeps
//!   the keys already applied.
//! - [`cli`]: the `latch-sim legacy` flags.
//!
//! # HTTP surface
//!
//! Main listener: `POST /tna/v2/punches`, `POST /webhooks/latch`,
//! `POST /webhooks/endpoints/{name}`, `GET /stats`, `POST /admin/reset`, `GET /healthz`.
//! Admin listener: `GET /faults`, `PUT /faults`, `GET /stats`, `POST /admin/reset`,
//! `GET /healthz`, and the named subscribers: `GET /endpoints`, `PUT|DELETE
//! /endpoints/{name}`, `GET|PUT /endpoints/{name}/faults`, `GET /endpoints/{name}/stats`.
//! `POST /admin/reset` clears the subscribers' ledgers too and keeps the subscribers.

pub mod cli;
pub mod config;
pub mod endpoint;
pub mod faults;
mod gate;
mod headers;
mod ledger;
pub mod legacy;
mod listener;
mod reply;
mod request;
mod routes;
pub mod signature;
mod simulator;
mod state;
pub mod stats;
pub mod subscribers;
pub mod webhooks;

pub use config::{DEFAULT_TNA_KEY, DEFAULT_WEBHOOK_SECRET, SimConfig};
pub use endpoint::Endpoint;
pub use faults::{Faults, Latency, RateLimit, Reject, SinkFaults, SubscriberFaults};
pub use headers::{IDEMPOTENCY_KEY_HEADER, TRACEPARENT_HEADER};
pub use legacy::punch::{PUNCH_PATH, Punch, PunchType, TNA_KEY_HEADER, fields};
pub use routes::{FAULTS_PATH, HEALTH_PATH, RESET_PATH, STATS_PATH};
pub use signature::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
pub use simulator::Simulator;
pub use state::SetFaultsError;
pub use stats::{EndpointStats, EventRecord, Stats};
pub use subscribers::{
    AppliedEvent, ENDPOINTS_PATH, SUBSCRIBER_WEBHOOK_PATH, SubscriberCounters, SubscriberError,
    SubscriberStats, SubscriberSummary,
};
pub use webhooks::WEBHOOK_PATH;

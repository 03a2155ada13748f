//! latch-core: what every latch role shares.
//!
//! # Layout
//!
//! - [`config`]: typed settings read once at start from `LATCH_*` environment variables
//!   and an optional TOML file; secrets are wrapped so they never reach a log.
//! - [`db`]: the PostgreSQL pool and the embedded migrations.
//! - [`credentials`]: reader keys and admin tokens — generation and hashing.
//! - [`nats`]: the NATS connection and the event stream.
//! - [`event`]: the event kinds and the versioned envelope that travels from the outbox
//!   to the sinks.
//! - [`signature`]: webhook signatures (Standard Webhooks): signing keys and signing.
//! - [`shutdown`]: the shutdown token every long-running loop takes.
//! - [`metrics`], [`admin`]: Prometheus metrics, and the operations endpoints of every role
//!   (`/healthz`, `/readyz`, `/metrics`: one answer for all; the relay/worker listener).
//! - [`telemetry`]: log set-up (JSON in production, readable in a terminal).
//! - [`otel`]: OpenTelemetry spans, exported over OTLP when an endpoint is configured.
//!
//! This crate knows nothing about HTTP routes or any sink: it holds the vocabulary and the
//! plumbing the roles are built from.
//!
//! # Error policy (every crate)
//!
//! - At a boundary — an HTTP answer, a drain round, a delivery, a command's exit — errors
//!   are typed: an enum whose variants say what the caller does next (retry, answer,
//!   dead-letter, page), e.g. `latch_api::error::ApiError` with its `Kind`, the relay's
//!   `DrainError`, the worker's `Outcome`, the CLI's `Failure` with its exit code.
//!   Control flow matches on variants, never on message text, so rewording a message can
//!   never change what happens.
//! - Inside, `anyhow` with `.context(...)` carries the cause chain; a typed error keeps its
//!   source (`#[source]`, `#[from]`) instead of turning it into a string.
//! - Retryable and permanent failures are told apart by type: a database or NATS that does
//!   not answer is retried (503, backoff, redelivery); a refusal is not.
//! - Each error is logged once, where it is handled, with its whole chain; what reaches a
//!   client is the typed answer only, never internal text.

pub mod admin;
pub mod config;
pub mod credentials;
pub mod db;
pub mod dlq;
pub mod event;
pub mod metrics;
pub mod nats;
pub mod otel;
pub mod outbound;
pub mod pipeline;
pub mod shutdown;
pub mod signature;
pub mod telemetry;

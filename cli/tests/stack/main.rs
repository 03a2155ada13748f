//! latch as it runs: the `latch` binary and its processes against a real PostgreSQL, a real
//! nats-server and the simulated sinks over real HTTP. One test binary (one link) for every
//! end-to-end scenario; each test starts its own database, server and processes.
//!
//! - [`pipeline`]: reader requests through API, relay and worker to both sinks.
//! - [`takeover`]: workers killed under traffic; a standby taking over; partitioned workers.
//! - [`failover`]: PostgreSQL's primary lost under traffic, its synchronous standby promoted.
//! - [`cluster`]: a 3-node JetStream cluster losing a node, then the stream leader.
//! - [`dlq`]: the operator verbs — `latch dlq`, `latch events republish`, `latch outbox status`.
//! - [`site`]: `latch doors|holders|readers|grants` against a real API.
//! - [`browser`]: the event stream in Debian's Chromium, through an API restart.
//! - [`feed`]: the event feed — pages, Server-Sent Events that resume, slow clients, scopes.
//! - [`webhooks`]: webhook endpoints — filters, order, signatures, 410 and auto-disable,
//!   the outbound check at delivery.
//! - [`observability`]: dashboards and alert rules evaluated by a real Prometheus; traces
//!   exported to an OTLP receiver.

#![allow(clippy::unwrap_used)]

mod browser;
mod cluster;
mod console;
mod dlq;
mod failover;
mod feed;
mod harness;
mod observability;
mod pipeline;
mod site;
mod takeover;
mod webhooks;

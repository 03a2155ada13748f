//! Test support for latch's integration tests.
//!
//! - [`TestDb`]: a fresh, migrated database per test, cloned from a template database
//!   that is migrated once per test run. The cluster itself is private to the test run:
//!   `deploy/local/test.sh` starts it and exports `LATCH_TEST_PG_URL` (a superuser URL).
//! - [`NatsServer`]: a private nats-server per test (JetStream, `sync_interval: always`),
//!   on a port the server picks itself, stopped when dropped. The binary comes from
//!   `LATCH_NATS_SERVER`. [`NatsCluster`]: three of them routed into one JetStream
//!   cluster.
//! - [`wait_until`]: poll a condition until it holds or a deadline passes — the only way
//!   tests wait for something to happen.
//! - [`OtlpCollector`]: an OTLP/HTTP trace receiver that records the spans sent to it.
//! - [`pgpair`]: a PostgreSQL primary with a synchronous standby of one test's own, for
//!   failover.
//! - [`pki`]: a private CA issuing server and client certificates for TLS tests.
//! - [`process`]: `latch` processes for end-to-end tests — killed when dropped, servers
//!   started on a free port and waited for.

#![allow(clippy::unwrap_used)] // test support: a failure here is a test failure

mod db;
mod nats;
mod otlp;
pub mod pgpair;
pub mod pki;
pub mod process;
mod wait;

pub use db::{APP_LOGIN, OPERATOR_LOGIN, RELAY_LOGIN, TestDb, WORKER_LOGIN};
pub use nats::{NatsCluster, NatsServer};
pub use otlp::{OtlpCollector, ReceivedSpan};
pub use wait::wait_until;

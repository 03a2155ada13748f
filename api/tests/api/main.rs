//! Integration tests of the HTTP API, each against a real PostgreSQL database of its own.

#![allow(clippy::unwrap_used)]

mod admin;
mod alarms;
mod contract;
mod deadline;
mod errors;
mod headers;
mod heartbeats;
mod helpers;
mod idempotency;
mod limits;
mod offline;
mod open_alarms;
mod panics;
mod presence;
mod privileges;
mod quiet;
mod registry;
mod rotation;
mod schema;
mod sequence;
mod skew;
mod timestamps;
mod tls;
mod tokens;
mod unlock;
mod webhooks;

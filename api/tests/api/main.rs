//! Integration tests of the HTTP API, each against a real PostgreSQL database of its own.

#![allow(clippy::unwrap_used)]

mod admin;
mod errors;
mod helpers;
mod idempotency;
mod presence;
mod registry;
mod schema;
mod unlock;

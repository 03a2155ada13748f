//! The simulator over real HTTP: each test starts its own on OS-picked ports.

#![allow(clippy::unwrap_used)]

mod admin;
mod binary;
mod faults;
mod helpers;
mod legacy;
mod subscribers;
mod webhooks;

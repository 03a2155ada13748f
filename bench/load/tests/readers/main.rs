//! The simulated card readers against a fake latch API: each test starts its own on an
//! OS-picked port and runs the generator in process (or the binary), then compares what
//! the generator reports with what the API saw.

#![allow(clippy::unwrap_used)]

mod api;
mod binary;
mod closed;
mod failures;
mod helpers;
mod open;

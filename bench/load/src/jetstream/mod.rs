//! Raw JetStream publishing: the limit latch's relay works against, measured with the
//! same client library, the same server and messages of the same size, on a stream of its
//! own (so that latch's `LATCH_EVENTS` is never touched).
//!
//! With `sync_interval: always` the server fsyncs every write, so what matters is how many
//! messages share one fsync. Two ways of publishing are measured ([`PublishMode`]):
//! pipelined single publishes, and atomic batches sent exactly as the relay sends them
//! (`relay/src/publish.rs`: `Nats-Batch-Id`, `Nats-Batch-Sequence`, the last message with
//! `Nats-Batch-Commit`, every message with its own `Nats-Msg-Id`). The benchmark harness
//! (`deploy/local/bench.sh`) compares the relay's drain rate with the atomic mode at the
//! relay's batch size.
//!
//! # Layout
//!
//! - [`config`]: [`PublishConfig`] — server, stream, mode, size, when to stop.
//! - `message`: the payload (a latch envelope padded to size) and the headers.
//! - `publish`: the stream setup, the two loops, the final stored-count check.
//! - [`report`]: [`PublishReport`] as JSON and as text.
//! - [`args`]: the `latch-load jetstream` flags.

pub mod args;
pub mod config;
mod message;
mod publish;
pub mod report;

pub use args::{JetstreamArgs, run_jetstream};
pub use config::{MAX_ATOMIC_BATCH, PublishConfig, PublishMode};
pub use publish::{run, run_until};
pub use report::{AckLatency, PublishReport};

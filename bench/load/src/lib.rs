//! latch-load: the load latch's benchmarks put on it, and on its dependencies.
//!
//! # Layout
//!
//! - [`readers`]: simulated card readers sending unlocks, check-ins and check-outs to the
//!   latch API, closed or open loop (coordinated-omission-safe), with an HDR histogram of
//!   the latencies; `latch-load readers`.
//! - [`jetstream`]: raw JetStream publishing with latch's envelopes and headers, single or
//!   in atomic batches — the relay's limit on this machine; `latch-load jetstream`.
//!
//! - [`feed`]: clients of the event feed — many Server-Sent Events streams at once, and
//!   paging from a cursor — and a direct JetStream reader to compare them with;
//!   `latch-load feed`.
//!
//! It is not the simulator (`latch-sim`, the systems latch delivers to): it loads latch
//! and measures; it checks nothing of what latch sends.

pub mod backlog;
pub mod feed;
pub mod jetstream;
pub mod readers;

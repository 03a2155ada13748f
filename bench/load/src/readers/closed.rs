//! The closed loop: `concurrency` simulated readers, each sending its next request when
//! the previous one is answered.
//!
//! Workers take numbered tickets from one counter, so request numbers (and with them the
//! plan's choices) are unique across workers, and a `--requests` limit is exact: the
//! measured tickets are counted as they are handed out, never overshooting. Latency is
//! from send to the end of the answer — in a closed loop, the time a reader waited.
//! Each reader hands what it finished to the run's collector ([`Tally::collect`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use latch_core::shutdown::CancellationToken;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::run::Run;
use super::send;
use super::tally::{Finished, Tally};
use super::timeline::Phase;

/// Permission to send request number `index`, in `phase`.
struct Ticket {
    index: u64,
    phase: Phase,
}

struct Tickets {
    run: Arc<Run>,
    shutdown: CancellationToken,
    next_index: AtomicU64,
    measured: AtomicU64,
}

impl Tickets {
    /// The next ticket, or `None` when the run is over for this worker.
    fn take(&self) -> Option<Ticket> {
        if self.shutdown.is_cancelled() || self.run.probe.gave_up() {
            return None;
        }
        let now = Instant::now();
        let timeline = &self.run.timeline;
        if timeline.is_over(now) {
            return None;
        }
        let phase = timeline.phase(now);
        if phase == Phase::Measured
            && let Some(limit) = self.run.limit
            && self.measured.fetch_add(1, Ordering::Relaxed) >= limit
        {
            return None;
        }
        Some(Ticket {
            index: self.next_index.fetch_add(1, Ordering::Relaxed),
            phase,
        })
    }
}

/// Runs the closed loop to its end and returns what it measured, in `tally`.
pub(crate) async fn drive(
    run: Arc<Run>,
    concurrency: usize,
    shutdown: CancellationToken,
    tally: Tally,
) -> anyhow::Result<Tally> {
    let tickets = Arc::new(Tickets {
        run,
        shutdown,
        next_index: AtomicU64::new(0),
        measured: AtomicU64::new(0),
    });
    let (finished_tx, finished_rx) = mpsc::channel(concurrency);
    let mut readers = JoinSet::new();
    for _ in 0..concurrency {
        readers.spawn(reader(Arc::clone(&tickets), finished_tx.clone()));
    }
    drop(finished_tx);
    // Ends when every reader is done (each holds a sender).
    let tally = tally.collect(finished_rx).await;
    while let Some(joined) = readers.join_next().await {
        joined.context("a simulated reader failed")?;
    }
    Ok(tally)
}

/// One simulated reader: send, wait for the answer, hand it over, repeat.
async fn reader(tickets: Arc<Tickets>, finished: mpsc::Sender<Finished>) {
    let run = &tickets.run;
    while let Some(ticket) = tickets.take() {
        let shot = run.plan.shot(ticket.index);
        let sent = Instant::now();
        let outcome = send::send(&run.client, shot).await;
        let done = Instant::now();
        run.probe.observe(&outcome);
        let request = Finished {
            phase: ticket.phase,
            origin: sent,
            send_lag: None,
            outcome,
            done,
        };
        if finished.send(request).await.is_err() {
            // The collector is gone, and with it the run.
            return;
        }
    }
}

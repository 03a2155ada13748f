//! The open loop: requests started on a fixed timetable, `rate` per second, whatever the
//! target does — request `n` is due at `start + n / rate`.
//!
//! Latency is measured from when a request was *due*, not from when it was sent. A
//! target that stalls therefore shows its stall in every request that was due during
//! it, and a generator that falls behind (a busy machine) cannot hide the delay either:
//! it sends what is overdue at once and the wait counts. This is what makes the
//! percentiles free of coordinated omission. How late requests actually left is
//! recorded too (the send lag), so a report shows when the generator itself was the
//! bottleneck.
//!
//! The timetable is kept by a dispatcher on a blocking thread, not a Tokio task: Tokio's
//! timer ticks in whole milliseconds, which would add up to a millisecond to every
//! latency, while a thread's sleep is precise to tens of microseconds. The dispatcher
//! spawns each request onto the runtime. At most `max_in_flight` hold a permit; a
//! request due while none is free is not sent and counts as late, so a dead target
//! cannot make the generator queue without bound. Finished requests come back over a
//! channel of the same bound to the run's collector ([`Tally::collect`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use latch_core::shutdown::CancellationToken;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};

use super::run::Run;
use super::send;
use super::tally::{Finished, Tally};
use super::timeline::Phase;

/// The longest the dispatcher sleeps before looking at the shutdown token again.
const LONGEST_NAP: Duration = Duration::from_millis(20);

/// Runs the open loop to its end and returns what it measured.
pub(crate) async fn drive(
    run: Arc<Run>,
    rate: f64,
    max_in_flight: usize,
    shutdown: CancellationToken,
    tally: Tally,
) -> anyhow::Result<Tally> {
    let (finished_tx, finished_rx) = mpsc::channel(max_in_flight);
    let dispatcher = Dispatcher {
        run: Arc::clone(&run),
        rate,
        permits: Arc::new(Semaphore::new(max_in_flight)),
        finished: finished_tx,
        runtime: Handle::current(),
        shutdown,
    };
    let dispatched = tokio::task::spawn_blocking(move || dispatcher.dispatch());
    // Ends when every sender is gone: the dispatcher's and each request's.
    let mut tally = tally.collect(finished_rx).await;
    tally.late = dispatched
        .await
        .context("the open-loop dispatcher failed")?;
    Ok(tally)
}

struct Dispatcher {
    run: Arc<Run>,
    rate: f64,
    permits: Arc<Semaphore>,
    finished: mpsc::Sender<Finished>,
    runtime: Handle,
    shutdown: CancellationToken,
}

impl Dispatcher {
    /// Keeps the timetable until its end; returns the number of measured requests that
    /// were late (due while `max_in_flight` were waiting, so never sent).
    fn dispatch(self) -> u64 {
        let mut late = 0;
        let mut measured = 0;
        let mut index = 0;
        while let Some(due) = self.next_due(index, measured) {
            if !self.sleep_until(due) {
                break;
            }
            let phase = self.run.timeline.phase(due);
            match Arc::clone(&self.permits).try_acquire_owned() {
                Ok(permit) => {
                    // Drawn here, in timetable order: presence-mix alternates per card in
                    // that order.
                    let shot = self.run.plan.shot(index);
                    let run = Arc::clone(&self.run);
                    let finished = self.finished.clone();
                    self.runtime.spawn(async move {
                        let sent = Instant::now();
                        let outcome = send::send(&run.client, shot).await;
                        let done = Instant::now();
                        run.probe.observe(&outcome);
                        let report = Finished {
                            phase,
                            origin: due,
                            send_lag: Some(sent.saturating_duration_since(due)),
                            outcome,
                            done,
                        };
                        // The collector outlives every request; if it is gone, so is
                        // the run.
                        let _ = finished.send(report).await;
                        // The slot frees only once the result is handed over, so the
                        // channel never holds more than `max_in_flight`.
                        drop(permit);
                    });
                }
                Err(_) if phase == Phase::Measured => late += 1,
                Err(_) => {}
            }
            index += 1;
            if phase == Phase::Measured {
                measured += 1;
            }
        }
        late
    }

    /// When request `index` is due, or `None` when no more requests are to be sent.
    fn next_due(&self, index: u64, measured: u64) -> Option<Instant> {
        let run = &self.run;
        if self.shutdown.is_cancelled() || run.probe.gave_up() {
            return None;
        }
        // Computed from the start each time, so rounding never accumulates into drift.
        let offset = Duration::try_from_secs_f64(index as f64 / self.rate).ok()?;
        let due = run.timeline.start.checked_add(offset)?;
        if run.timeline.is_over(due) {
            return None;
        }
        let limit_reached = run.limit.is_some_and(|limit| measured >= limit);
        if run.timeline.phase(due) == Phase::Measured && limit_reached {
            return None;
        }
        Some(due)
    }

    /// Sleeps until `due`; false if the run was shut down meanwhile.
    fn sleep_until(&self, due: Instant) -> bool {
        loop {
            if self.shutdown.is_cancelled() {
                return false;
            }
            let now = Instant::now();
            if now >= due {
                return true;
            }
            std::thread::sleep((due - now).min(LONGEST_NAP));
        }
    }
}

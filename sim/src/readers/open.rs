//! The open loop: requests started on a fixed timetable, `rate` per second, whatever the
//! target does — request `n` is due at `start + n / rate`.
//!
//! Latency is measured from when a request was *due*, not from when it was sent. A
//! target that stalls therefore shows its stall in every request that was due during
//! it, and a generator that falls behind (a busy machine) cannot hide the delay either:
//! it sends what is overdue at once and the wait counts. This is what makes the
//! percentiles free of coordinated omission.
//!
//! One dispatcher owns the timetable and the requests in flight (a `JoinSet`, so its
//! tally needs no lock). At most `max_in_flight` wait for an answer; a request due while
//! that many wait is not sent and counts as late, so a dead target cannot make the
//! generator queue without bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use latch_core::shutdown::CancellationToken;
use tokio::task::{JoinError, JoinSet};

use super::plan::Shot;
use super::run::Run;
use super::send::{self, Outcome};
use super::tally::Tally;
use super::timeline::Phase;

/// A request that finished.
struct Finished {
    due: Instant,
    phase: Phase,
    outcome: Outcome,
    done: Instant,
}

/// Runs the open loop to its end and returns what it measured.
pub(crate) async fn drive(
    run: Arc<Run>,
    rate: f64,
    max_in_flight: usize,
    shutdown: CancellationToken,
) -> anyhow::Result<Tally> {
    let mut tally = run.empty.clone();
    let mut in_flight: JoinSet<Finished> = JoinSet::new();
    let mut index: u64 = 0;
    let mut measured: u64 = 0;
    while let Some(due) = next_due(&run, rate, index, measured, &shutdown) {
        let phase = run.timeline.phase(due);
        tokio::select! {
            // Answers first: every answer collected is a slot free for the next request.
            biased;
            () = shutdown.cancelled() => break,
            Some(finished) = in_flight.join_next() => collect(&mut tally, finished)?,
            () = tokio::time::sleep_until(due.into()) => {
                while let Some(finished) = in_flight.try_join_next() {
                    collect(&mut tally, finished)?;
                }
                if in_flight.len() < max_in_flight {
                    // Drawn here, in timetable order: presence-mix alternates per card in that order.
                    let shot = run.plan.shot(index);
                    in_flight.spawn(request(Arc::clone(&run), shot, due, phase));
                } else if phase == Phase::Measured {
                    tally.late += 1;
                }
                index += 1;
                if phase == Phase::Measured {
                    measured += 1;
                }
            }
        }
    }
    // The timetable is over: wait for the answers of what was sent (the client's timeout
    // bounds the wait).
    while let Some(finished) = in_flight.join_next().await {
        collect(&mut tally, finished)?;
    }
    Ok(tally)
}

/// When request `index` is due, or `None` when no more requests are to be sent.
fn next_due(
    run: &Run,
    rate: f64,
    index: u64,
    measured: u64,
    shutdown: &CancellationToken,
) -> Option<Instant> {
    if shutdown.is_cancelled() || run.probe.gave_up() {
        return None;
    }
    // Computed from the start each time, so rounding never accumulates into drift.
    let offset = Duration::try_from_secs_f64(index as f64 / rate).ok()?;
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

/// A request due at `due`, sent now.
async fn request(run: Arc<Run>, shot: Shot, due: Instant, phase: Phase) -> Finished {
    let outcome = send::send(&run.client, shot).await;
    let done = Instant::now();
    run.probe.observe(&outcome);
    Finished {
        due,
        phase,
        outcome,
        done,
    }
}

fn collect(tally: &mut Tally, finished: Result<Finished, JoinError>) -> anyhow::Result<()> {
    let finished = finished.context("a simulated request failed")?;
    match finished.phase {
        Phase::Warmup => tally.warmup += 1,
        Phase::Measured => {
            let latency = finished.done.saturating_duration_since(finished.due);
            tally.record(latency, finished.outcome, finished.done);
        }
    }
    Ok(())
}

//! One load run from start to report: validate the config, build the plan and the
//! client, fix the timeline, drive the loop the mode asks for, and turn its tally into a
//! [`LoadReport`] — or into an error when the target answered nothing at all.

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use latch_core::shutdown::CancellationToken;

use super::config::{LoadConfig, Mode};
use super::plan::Plan;
use super::report::LoadReport;
use super::send::{self, Client};
use super::tally::Tally;
use super::timeline::{GIVE_UP_AFTER_REFUSALS, Probe, Timeline};
use super::{closed, open};

/// What every worker of a run shares, read-only (the probe and the plan's per-card
/// counters are atomics).
pub(crate) struct Run {
    pub client: Client,
    pub plan: Plan,
    pub timeline: Timeline,
    pub probe: Probe,
    /// The number of measured requests after which the run stops, if any.
    pub limit: Option<u64>,
}

/// Runs `config` to its end and reports what was measured.
pub async fn run(config: LoadConfig) -> anyhow::Result<LoadReport> {
    run_until(config, CancellationToken::new()).await
}

/// Runs `config` until its end or until `shutdown` is cancelled, whichever is first.
/// Either way the requests in flight are answered (or time out) and the report covers
/// every measured request that finished.
///
/// Fails on an invalid config, and when not one request (warm-up included) got an HTTP
/// answer while some failed: the target is unreachable, and a report of nothing but
/// errors would read like a measurement.
pub async fn run_until(
    config: LoadConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<LoadReport> {
    let base = config.validate()?;
    let plan = Plan::new(&config, &base)?;
    let client = send::client(
        &base,
        config.mode.connections(),
        config.timeout,
        config.ca_file.as_deref(),
    )?;
    let run = Arc::new(Run {
        client,
        plan,
        timeline: Timeline::new(Instant::now(), config.warmup, config.stop.duration),
        probe: Probe::default(),
        limit: config.stop.requests,
    });
    let tally = Tally::new()?;
    tracing::debug!(url = %base, endpoint = %config.endpoint, mode = ?config.mode, "load run starting");
    let tally = match config.mode {
        Mode::Closed { concurrency } => {
            closed::drive(Arc::clone(&run), concurrency, shutdown, tally).await?
        }
        Mode::Open {
            rate,
            max_in_flight,
        } => open::drive(Arc::clone(&run), rate, max_in_flight, shutdown, tally).await?,
    };
    if run.probe.nothing_answered() {
        let why = run.probe.first_failure().unwrap_or("no answer");
        let stopped = if run.probe.gave_up() {
            format!(" (gave up after {GIVE_UP_AFTER_REFUSALS} refused connections)")
        } else {
            String::new()
        };
        bail!(
            "the target {base} is unreachable: no request got an answer{stopped}; \
             first error: {why}"
        );
    }
    Ok(LoadReport::new(
        &config,
        &run.timeline,
        tally,
        run.probe.first_failure(),
    ))
}

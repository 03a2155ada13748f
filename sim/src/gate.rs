//! The fault gate every sink request passes before the sink looks at it.
//!
//! Injected faults stand for the infrastructure in front of a real system (a slow
//! network, a proxy that hangs, a gateway that throttles, an overloaded backend), so they
//! act before authentication or validation, in this order: latency, hang, rate limit,
//! error rate. The reject list needs the parsed request and is checked by each endpoint
//! afterwards. The gate never touches the ledger.

use std::time::{Duration, Instant};

use crate::endpoint::Endpoint;
use crate::faults::SinkFaults;
use crate::state::SimState;

/// Why the gate stopped a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// Answer 429 with `Retry-After`.
    Throttled { retry_after_secs: u64 },
    /// Answer 503.
    Unavailable,
}

/// Waits out the latency and any hang, then lets the request through or blocks it.
/// On success, returns the knobs in force for the endpoint's own checks.
pub(crate) async fn pass(state: &SimState, endpoint: Endpoint) -> Result<SinkFaults, Blocked> {
    let mut faults = state.watch_faults();
    let latency = faults.borrow().faults.sink(endpoint).latency;
    if let Some(latency) = latency {
        tokio::time::sleep(latency.sample()).await;
    }
    // A hang ends only when the knob is cleared (or `down` cuts the connection, or the
    // client goes away and the server drops this future). A request in hand when `down`
    // is set must not be answered either, even if the same change cleared `hang`: the
    // supervisor is about to cut its connection, and a dead process answers nothing. If
    // the state is gone, so is the server: wait for the connection to be dropped.
    if faults
        .wait_for(|revised| !revised.faults.down && !revised.faults.sink(endpoint).hang)
        .await
        .is_err()
    {
        std::future::pending::<()>().await;
    }
    let sink = faults.borrow().faults.sink(endpoint).clone();
    if let Some(limit) = sink.rate_limit
        && !state
            .throttle()
            .admit(endpoint, limit.per_second, Instant::now())
    {
        return Err(Blocked::Throttled {
            retry_after_secs: limit.retry_after_secs,
        });
    }
    if sink.draw_error() {
        return Err(Blocked::Unavailable);
    }
    Ok(sink)
}

/// Fixed one-second windows, one per endpoint.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    legacy: Window,
    webhooks: Window,
}

#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    admitted: u32,
}

const WINDOW: Duration = Duration::from_secs(1);

impl Throttle {
    /// Whether one more request fits in `per_second` for the window `now` falls in.
    pub fn admit(&mut self, endpoint: Endpoint, per_second: u32, now: Instant) -> bool {
        let window = match endpoint {
            Endpoint::Legacy => &mut self.legacy,
            Endpoint::Webhooks => &mut self.webhooks,
        };
        let current = match window.started {
            Some(started) if now.duration_since(started) < WINDOW => started,
            _ => {
                window.admitted = 0;
                now
            }
        };
        window.started = Some(current);
        if window.admitted < per_second {
            window.admitted += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_its_quota_then_refuses_until_the_next_second() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        assert!(throttle.admit(Endpoint::Legacy, 2, start));
        assert!(throttle.admit(Endpoint::Legacy, 2, start + Duration::from_millis(10)));
        assert!(!throttle.admit(Endpoint::Legacy, 2, start + Duration::from_millis(20)));
        assert!(throttle.admit(Endpoint::Webhooks, 2, start));
        assert!(throttle.admit(Endpoint::Legacy, 2, start + Duration::from_millis(1000)));
    }

    #[test]
    fn a_zero_quota_refuses_everything() {
        let mut throttle = Throttle::default();
        assert!(!throttle.admit(Endpoint::Webhooks, 0, Instant::now()));
    }
}

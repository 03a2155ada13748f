//! The fault gate every sink request passes before the sink looks at it.
//!
//! Injected faults stand for the infrastructure in front of a real system (a slow
//! network, a proxy that hangs, a gateway that throttles, an overloaded backend), so they
//! act before authentication or validation, in this order: latency, hang, rate limit,
//! error rate. The reject list needs the parsed request and is checked by each endpoint
//! afterwards. The gate never touches the ledger.
//!
//! [`pass`] guards the two sinks, with the knobs of `PUT /faults`; [`pass_subscriber`]
//! guards a named subscriber ([`crate::subscribers`]) with its own knobs and its own
//! rate-limit window, in the same order and by the same steps. `down` is the main
//! listener's, so it holds every request of either.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::endpoint::Endpoint;
use crate::faults::{Latency, SinkFaults, SubscriberFaults};
use crate::state::SimState;
use crate::subscribers::Subscriber;

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
    delay(latency).await;
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
    admit(&sink, |per_second| {
        state.throttle().admit(endpoint, per_second, Instant::now())
    })?;
    Ok(sink)
}

/// [`pass`] for a named subscriber: its own knobs (`gone` is the subscriber's to answer)
/// and its own rate-limit window; the main listener's `down` holds it as it holds a sink.
pub(crate) async fn pass_subscriber(
    state: &SimState,
    subscriber: &Subscriber,
) -> Result<SubscriberFaults, Blocked> {
    let mut own = subscriber.watch_faults();
    let latency = own.borrow().sink.latency;
    delay(latency).await;
    // As in `pass`, with two sources: whichever changes, look at both again.
    let mut listener = state.watch_faults();
    loop {
        let down = listener.borrow_and_update().faults.down;
        let hang = own.borrow_and_update().sink.hang;
        if !down && !hang {
            break;
        }
        tokio::select! {
            changed = listener.changed() => stop_if_closed(changed).await,
            changed = own.changed() => stop_if_closed(changed).await,
        }
    }
    let knobs = own.borrow().clone();
    admit(&knobs.sink, |per_second| {
        subscriber.throttle().admit(per_second, Instant::now())
    })?;
    Ok(knobs)
}

/// Waits out one draw of the latency, if any.
async fn delay(latency: Option<Latency>) {
    if let Some(latency) = latency {
        tokio::time::sleep(latency.sample()).await;
    }
}

/// A closed channel means the server is gone: wait for the connection to be dropped.
async fn stop_if_closed(changed: Result<(), watch::error::RecvError>) {
    if changed.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The last two steps: the rate limit (`fits` asks the window for room), then the error
/// rate.
fn admit(sink: &SinkFaults, fits: impl FnOnce(u32) -> bool) -> Result<(), Blocked> {
    if let Some(limit) = sink.rate_limit
        && !fits(limit.per_second)
    {
        return Err(Blocked::Throttled {
            retry_after_secs: limit.retry_after_secs,
        });
    }
    if sink.draw_error() {
        return Err(Blocked::Unavailable);
    }
    Ok(())
}

/// Fixed one-second windows, one per endpoint.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    legacy: Window,
    webhooks: Window,
}

/// One fixed one-second rate-limit window: a sink's, or a named subscriber's.
#[derive(Debug, Default)]
pub(crate) struct Window {
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
        window.admit(per_second, now)
    }
}

impl Window {
    /// Whether one more request fits in `per_second` for the window `now` falls in.
    pub fn admit(&mut self, per_second: u32, now: Instant) -> bool {
        let current = match self.started {
            Some(started) if now.duration_since(started) < WINDOW => started,
            _ => {
                self.admitted = 0;
                now
            }
        };
        self.started = Some(current);
        if self.admitted < per_second {
            self.admitted += 1;
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

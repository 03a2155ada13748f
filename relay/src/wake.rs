//! Waking the relay: writers NOTIFY only while the relay waits.
//!
//! PostgreSQL serialises the commits of notifying transactions, so a NOTIFY from every
//! action's transaction would cost the write path its group commit. Instead the outbox
//! trigger (migrations/V4__outbox_wake.sql) notifies only when the relay has *armed*:
//!
//! 1. A drain finds the outbox empty, so the relay is about to wait. It arms: in one
//!    short transaction (asynchronous commit: nothing here needs to survive a crash) it
//!    takes the wake key exclusively and sets `outbox_wake.armed`.
//! 2. Writers hold the wake key in shared mode from before they read the flag until
//!    their transaction ends, so taking it exclusively waits for every writer that may
//!    have read `armed = false` before the relay armed; their rows are committed when the
//!    arming commits, and the relay drains once more after it.
//! 3. The first writer that finds the flag set clears it and notifies. While the relay
//!    holds the key or waits for it, writers cannot take it and notify as well.
//! 4. A notification (or the poll) wakes the relay, which forgets that it was armed,
//!    drains until the outbox is empty again, and arms again.
//!
//! Arming runs in its own task, so that a writer transaction left open (a long batch, an
//! interactive session) does not hold up the relay: while the arming waits for it, every
//! other writer notifies, and the relay keeps draining on their notifications. An arming
//! that was overtaken by a wake-up (its flag may already have been cleared by the writer
//! that woke the relay) does not count: the relay arms again before it waits.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::task::JoinHandle;

/// The advisory lock key of the handshake (`latchw` in ASCII), distinct from the
/// leadership key and from the per-holder two-int4 keys. The outbox trigger uses the
/// same number.
pub const WAKE_LOCK: i64 = 0x6c_61_74_63_68_77;

/// Sets `outbox_wake.armed` once no writer that may have missed it is still running.
/// Gives up after `lock_timeout` (a writer transaction is still open): the caller arms
/// again later.
pub async fn arm(pool: &Pool, lock_timeout: Duration) -> anyhow::Result<()> {
    let client = pool.get().await?;
    // One simple query: its statements run as one transaction, in one round trip.
    let timeout_ms = lock_timeout.as_millis().max(1);
    client
        .batch_execute(&format!(
            "SELECT set_config('synchronous_commit', 'off', true),
                    set_config('lock_timeout', '{timeout_ms}ms', true);
             SELECT pg_advisory_xact_lock({WAKE_LOCK});
             UPDATE outbox_wake SET armed = true WHERE NOT armed"
        ))
        .await?;
    Ok(())
}

/// Where the leading relay stands in the handshake.
#[derive(Default)]
pub(crate) struct Wake {
    /// Armed, and not woken since: writers will notify.
    armed: bool,
    /// An arming in progress.
    arming: Option<JoinHandle<anyhow::Result<()>>>,
    /// The arming in progress started before the last wake-up.
    stale: bool,
}

impl Wake {
    /// The outbox is empty: arm, unless armed already or arming.
    pub(crate) fn arm(&mut self, pool: &Pool, lock_timeout: Duration) {
        if self.armed || self.arming.is_some() {
            return;
        }
        let pool = pool.clone();
        self.arming = Some(tokio::spawn(async move { arm(&pool, lock_timeout).await }));
        self.stale = false;
    }

    /// Completes when the arming in progress ends (never when there is none); then
    /// [`Wake::arming_ended`] must be called with the result.
    pub(crate) async fn arming(&mut self) -> anyhow::Result<()> {
        match self.arming.as_mut() {
            Some(handle) => handle.await.unwrap_or_else(|e| Err(e.into())),
            None => std::future::pending().await,
        }
    }

    /// Records how the arming ended.
    pub(crate) fn arming_ended(&mut self, result: anyhow::Result<()>) {
        self.arming = None;
        match result {
            Ok(()) if !self.stale => self.armed = true,
            Ok(()) => {}
            Err(error) => {
                tracing::debug!(
                    error = format!("{error:#}"),
                    "could not arm the wake-up yet"
                )
            }
        }
    }

    /// A notification or the poll woke the relay: writers may not notify any more.
    pub(crate) fn woken(&mut self) {
        self.armed = false;
        self.stale = self.arming.is_some();
    }
}

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
//! that woke the relay) does not count: the relay arms again before it waits. An arming
//! that fails for another reason (the schema predates the handshake, a missing grant) is
//! logged once, and the relay falls back to its poll until one works.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;

/// The advisory lock key of the handshake (`latchw` in ASCII), distinct from the
/// leadership key and from the per-holder two-int4 keys. The outbox trigger uses the
/// same number.
pub const WAKE_LOCK: i64 = 0x6c_61_74_63_68_77;

/// Why an arming did not arm.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// A writer transaction stayed open for `lock_timeout`: try again.
    #[error("a writer transaction is still open")]
    WriterOpen,
    /// Anything else (the database is down, the schema predates the handshake...).
    #[error("{0}")]
    Failed(String),
}

/// Sets `outbox_wake.armed` once no writer that may have missed it is still running.
/// Gives up after `lock_timeout` (a writer transaction is still open).
pub async fn arm(pool: &Pool, lock_timeout: Duration) -> Result<(), ArmError> {
    let failed = |e: &dyn std::fmt::Display| ArmError::Failed(e.to_string());
    let client = pool.get().await.map_err(|e| failed(&e))?;
    // One simple query: its statements run as one transaction, in one round trip.
    let timeout_ms = lock_timeout.as_millis().max(1);
    client
        .batch_execute(&format!(
            "SELECT set_config('synchronous_commit', 'off', true),
                    set_config('lock_timeout', '{timeout_ms}ms', true);
             SELECT pg_advisory_xact_lock({WAKE_LOCK});
             UPDATE outbox_wake SET armed = true WHERE NOT armed"
        ))
        .await
        .map_err(|e| match e.code() {
            Some(&SqlState::LOCK_NOT_AVAILABLE) => ArmError::WriterOpen,
            _ => failed(&e),
        })
}

/// Where the leading relay stands in the handshake.
#[derive(Default)]
pub(crate) struct Wake {
    /// Armed, and not woken since: writers will notify.
    armed: bool,
    /// An arming in progress.
    arming: Option<JoinHandle<Result<(), ArmError>>>,
    /// The arming in progress started before the last wake-up.
    stale: bool,
    /// An arming failed (not for an open writer) and that was logged; cleared once one
    /// works.
    failing: bool,
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
    pub(crate) async fn arming(&mut self) -> Result<(), ArmError> {
        match self.arming.as_mut() {
            Some(handle) => handle
                .await
                .unwrap_or_else(|e| Err(ArmError::Failed(e.to_string()))),
            None => std::future::pending().await,
        }
    }

    /// Records how the arming ended. True when the relay should drain now (and arm again
    /// if need be); false when it could not arm and must wait for the poll instead.
    pub(crate) fn arming_ended(&mut self, result: Result<(), ArmError>) -> bool {
        self.arming = None;
        match result {
            Ok(()) => {
                self.armed = !self.stale;
                if std::mem::take(&mut self.failing) {
                    tracing::info!("the relay's wake-up handshake works again");
                }
                true
            }
            Err(ArmError::WriterOpen) => {
                tracing::debug!("arming waited for an open writer transaction; arming again");
                true
            }
            Err(error) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(
                        %error,
                        "cannot arm the wake-up (is the schema migrated?); new rows wait for the poll"
                    );
                }
                false
            }
        }
    }

    /// A notification or the poll woke the relay: writers may not notify any more.
    pub(crate) fn woken(&mut self) {
        self.armed = false;
        self.stale = self.arming.is_some();
    }
}

//! The state both listeners share: credentials, the faults in force, the ledger, the named
//! subscribers, and the main listener's report of whether it follows the faults.
//!
//! Faults travel in a `watch` channel with a revision number. The main listener's
//! supervisor ([`crate::listener`]) answers each revision with what it did (listening,
//! closed, failed to listen again), so [`SimState::set_faults`] returns only once the
//! port really is closed or open again: a test that sets `down` and then connects sees
//! the refusal, never a race.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::config::Secret;
use tokio::sync::watch;

use crate::config::SimConfig;
use crate::faults::{Faults, FaultsError};
use crate::gate::Throttle;
use crate::ledger::Ledger;
use crate::subscribers::Subscribers;

/// How long `set_faults` waits for the main listener to close or listen again.
const LISTENER_FOLLOW_TIMEOUT: Duration = Duration::from_secs(5);

/// Faults with the revision that set them.
#[derive(Debug, Clone)]
pub(crate) struct Revised {
    pub revision: u64,
    pub faults: Faults,
}

/// What the main listener did about a revision of the faults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenerReport {
    pub revision: u64,
    pub state: ListenerState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenerState {
    Listening,
    Closed,
    /// `down` was cleared but the port could not be bound again (another process took
    /// it); the supervisor keeps trying.
    Failed(String),
}

/// Why new faults were not (fully) put in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetFaultsError {
    #[error("invalid faults: {0}")]
    Invalid(#[from] FaultsError),
    #[error("faults are set, but the main listener cannot listen again: {0}; still trying")]
    Rebind(String),
    #[error("faults are set, but the main listener did not follow within {0:?}")]
    Timeout(Duration),
    #[error("the simulator is shutting down")]
    Stopped,
}

pub(crate) struct SimState {
    pub tna_key: Secret,
    pub webhook_secret: Secret,
    faults: watch::Sender<Revised>,
    listener: watch::Sender<ListenerReport>,
    ledger: Mutex<Ledger>,
    throttle: Mutex<Throttle>,
    subscribers: Subscribers,
}

impl SimState {
    pub fn new(config: &SimConfig) -> Self {
        SimState {
            tna_key: config.tna_key.clone(),
            webhook_secret: config.webhook_secret.clone(),
            faults: watch::Sender::new(Revised {
                revision: 0,
                faults: config.faults.clone(),
            }),
            listener: watch::Sender::new(ListenerReport {
                revision: 0,
                state: if config.faults.down {
                    ListenerState::Closed
                } else {
                    ListenerState::Listening
                },
            }),
            ledger: Mutex::new(Ledger::default()),
            throttle: Mutex::new(Throttle::default()),
            subscribers: Subscribers::default(),
        }
    }

    pub fn faults(&self) -> Faults {
        self.faults.borrow().faults.clone()
    }

    pub fn watch_faults(&self) -> watch::Receiver<Revised> {
        self.faults.subscribe()
    }

    /// Where the main listener's supervisor reports what it did.
    pub fn listener_reports(&self) -> &watch::Sender<ListenerReport> {
        &self.listener
    }

    /// Puts `faults` in force and waits until the main listener follows them.
    pub async fn set_faults(&self, faults: Faults) -> Result<(), SetFaultsError> {
        faults.validate()?;
        let want_listening = !faults.down;
        let mut revision = 0;
        self.faults.send_modify(|current| {
            current.revision += 1;
            current.faults = faults;
            revision = current.revision;
        });
        let mut reports = self.listener.subscribe();
        let report = tokio::time::timeout(
            LISTENER_FOLLOW_TIMEOUT,
            reports.wait_for(|report| report.revision >= revision),
        )
        .await
        .map_err(|_| SetFaultsError::Timeout(LISTENER_FOLLOW_TIMEOUT))?
        .map_err(|_| SetFaultsError::Stopped)?
        .clone();
        match report.state {
            ListenerState::Failed(message) if want_listening => {
                Err(SetFaultsError::Rebind(message))
            }
            _ => Ok(()),
        }
    }

    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic while holding the lock cannot leave the ledger half-written in a way
        // that matters to a simulator; keep serving rather than poisoning every request.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn throttle(&self) -> MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The named subscribers, each with its own secrets, faults and ledger.
    pub fn subscribers(&self) -> &Subscribers {
        &self.subscribers
    }

    /// Forgets every key, effect and counter, the named subscribers' too (faults stay as
    /// they are, and so do the subscribers with their secrets).
    pub fn reset(&self) {
        self.ledger().reset();
        *self.throttle() = Throttle::default();
        self.subscribers.reset();
    }
}

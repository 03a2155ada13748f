//! Named webhook subscribers: many independent receivers in one simulator, one per webhook
//! endpoint latch is configured with.
//!
//! A subscriber is created on the admin listener with `PUT /endpoints/{name}` and
//! receives at `POST /webhooks/endpoints/{name}` on the main listener. Each has its own:
//!
//! - **secrets**, one to three: a call verifies if it verifies under any of them, as a
//!   receiver switching secrets during a rotation accepts both the old and the new one.
//!   `PUT /endpoints/{name}` again replaces them, keeping the ledger and the faults.
//! - **faults** ([`SubscriberFaults`]): one sink's knobs, applied by the same gate in the
//!   same order (latency, hang, rate limit — its own window — error rate; the reject list
//!   after parsing), plus `gone`, answered `410 Gone` (code `gone`) with no effect right
//!   after the gate. `down` is the main listener's and holds every subscriber too.
//! - **ledger**: each signed `webhook-id` applied once per subscriber, so the same event
//!   delivered to two subscribers takes effect once in each; and its own counters
//!   ([`SubscriberStats`]).
//!
//! A request to a subscriber is checked exactly as `POST /webhooks/latch` checks one,
//! by the same code (`webhooks::receive`): the gate (429, 503), `gone` (410), the
//! signature (401 `invalid_signature`), the `Idempotency-Key` (400), the content type
//! (415), the body (400), the reject list (422), then the ledger (200, or 422
//! `idempotency_key_reused`). An unknown name is 404 `unknown_endpoint` and is counted
//! nowhere.
//!
//! Names are 1 to 40 characters of `a-z`, `0-9`, `_` and `-`. Deleting a subscriber
//! (`DELETE /endpoints/{name}`) forgets it with its ledger; a request of it still waiting
//! at the gate (latency, hang) is answered 404 `unknown_endpoint`. `POST /admin/reset`
//! clears every subscriber's ledger, counters and rate-limit window, and keeps the
//! subscribers with their secrets and faults. `GET /stats` and `PUT /faults` are about the
//! two sinks only, as before.

mod http;
mod ledger;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::http::HeaderMap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::faults::{KnobError, SubscriberFaults};
use crate::gate::Window;
use crate::ledger::{Applied, Delivery};
use crate::reply::Reply;
use crate::request::Tally;
use crate::signature;
use crate::webhooks::{Event, Receiver};

pub(crate) use http::{
    delete_subscriber, get_subscriber_faults, list_subscribers, put_subscriber, receive_event,
    set_subscriber_faults, subscriber_stats,
};
pub(crate) use ledger::SubscriberLedger;
pub use ledger::{AppliedEvent, SubscriberCounters, SubscriberStats, SubscriberSummary};

/// The main listener's path of one subscriber (an axum pattern: `{name}` is its name).
pub const SUBSCRIBER_WEBHOOK_PATH: &str = "/webhooks/endpoints/{name}";
/// The admin listener's list of subscribers; one is `/endpoints/{name}`, its knobs
/// `/endpoints/{name}/faults`, its statistics `/endpoints/{name}/stats`.
pub const ENDPOINTS_PATH: &str = "/endpoints";
/// Longest subscriber name.
pub const MAX_NAME_LEN: usize = 40;
/// Most secrets a subscriber verifies with at once.
pub const MAX_SECRETS: usize = 3;

/// Why a subscriber could not be created, changed or found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriberError {
    #[error("a subscriber's name is 1 to {MAX_NAME_LEN} characters of a-z, 0-9, _ and -")]
    InvalidName,
    /// The message names the offending entry (`secrets[1]: ...`), never its value.
    #[error("{0}")]
    InvalidSecrets(String),
    #[error("no subscriber named {0}")]
    Unknown(String),
    #[error("invalid faults: {0}")]
    InvalidFaults(#[from] KnobError),
}

/// Whether `name` can name a subscriber.
pub fn check_name(name: &str) -> Result<(), SubscriberError> {
    let valid = (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(SubscriberError::InvalidName)
    }
}

/// One to [`MAX_SECRETS`] secrets, each as the specification writes it
/// ([`signature::checked_secret`]).
fn checked_secrets(secrets: Vec<String>) -> Result<Vec<Secret>, SubscriberError> {
    if !(1..=MAX_SECRETS).contains(&secrets.len()) {
        return Err(SubscriberError::InvalidSecrets(format!(
            "secrets has {} entries; it must have 1 to {MAX_SECRETS}",
            secrets.len()
        )));
    }
    secrets
        .into_iter()
        .enumerate()
        .map(|(index, secret)| {
            signature::checked_secret(&secret)
                .map(Secret::new)
                .map_err(|reason| {
                    SubscriberError::InvalidSecrets(format!("secrets[{index}]: {reason}"))
                })
        })
        .collect()
}

/// One named subscriber. Requests hold it by `Arc`, so one in hand when it is deleted
/// still has it.
pub(crate) struct Subscriber {
    secrets: Mutex<Vec<Secret>>,
    faults: watch::Sender<SubscriberFaults>,
    ledger: Mutex<SubscriberLedger>,
    throttle: Mutex<Window>,
    removed: CancellationToken,
}

/// A lock whose holder panicked leaves nothing half-written that matters to a simulator:
/// keep serving rather than poisoning every request.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Subscriber {
    fn new(secrets: Vec<Secret>) -> Self {
        Subscriber {
            secrets: Mutex::new(secrets),
            faults: watch::Sender::new(SubscriberFaults::default()),
            ledger: Mutex::new(SubscriberLedger::default()),
            throttle: Mutex::new(Window::default()),
            removed: CancellationToken::new(),
        }
    }

    /// The knobs in force, and their changes (what the gate waits on).
    pub fn watch_faults(&self) -> watch::Receiver<SubscriberFaults> {
        self.faults.subscribe()
    }

    pub fn faults(&self) -> SubscriberFaults {
        self.faults.borrow().clone()
    }

    pub fn throttle(&self) -> MutexGuard<'_, Window> {
        lock(&self.throttle)
    }

    pub fn ledger(&self) -> MutexGuard<'_, SubscriberLedger> {
        lock(&self.ledger)
    }

    /// Resolves once the subscriber is deleted.
    pub async fn removed(&self) {
        self.removed.cancelled().await;
    }

    fn secret_count(&self) -> usize {
        lock(&self.secrets).len()
    }
}

impl Tally for Subscriber {
    fn received(&self, _key: Option<&str>, _traceparent: Option<&str>) {
        self.ledger().receive();
    }

    fn answered(&self, reply: &Reply) {
        self.ledger().answered(reply.status);
    }

    fn abandoned(&self) {
        self.ledger().abandoned();
    }
}

impl Receiver for Subscriber {
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
        // A copy, so that no lock is held while hashing.
        let secrets = lock(&self.secrets).clone();
        signature::verify_any(secrets.iter().map(Secret::expose), headers, body)
    }

    fn apply(
        &self,
        event: &Event<'_>,
        delivery: Delivery<'_>,
        answer: impl FnOnce(u64) -> Reply,
    ) -> Applied {
        self.ledger().apply(event, delivery, answer)
    }
}

/// Every named subscriber, by name.
#[derive(Default)]
pub(crate) struct Subscribers {
    by_name: Mutex<BTreeMap<String, Arc<Subscriber>>>,
}

impl Subscribers {
    pub fn get(&self, name: &str) -> Option<Arc<Subscriber>> {
        lock(&self.by_name).get(name).cloned()
    }

    fn find(&self, name: &str) -> Result<Arc<Subscriber>, SubscriberError> {
        self.get(name)
            .ok_or_else(|| SubscriberError::Unknown(name.to_owned()))
    }

    /// Creates `name` with `secrets`, or replaces its secrets (its ledger and faults
    /// stay). Returns whether it was created.
    pub fn put(&self, name: &str, secrets: Vec<String>) -> Result<bool, SubscriberError> {
        check_name(name)?;
        let secrets = checked_secrets(secrets)?;
        let mut by_name = lock(&self.by_name);
        match by_name.get(name) {
            Some(existing) => {
                *lock(&existing.secrets) = secrets;
                Ok(false)
            }
            None => {
                by_name.insert(name.to_owned(), Arc::new(Subscriber::new(secrets)));
                Ok(true)
            }
        }
    }

    /// Replaces `name`'s knobs as a whole; a request waiting on a hang sees the change.
    pub fn set_faults(&self, name: &str, faults: SubscriberFaults) -> Result<(), SubscriberError> {
        let subscriber = self.find(name)?;
        faults.validate()?;
        subscriber.faults.send_replace(faults);
        Ok(())
    }

    pub fn faults(&self, name: &str) -> Result<SubscriberFaults, SubscriberError> {
        Ok(self.find(name)?.faults())
    }

    /// Forgets `name` and its ledger; returns whether it existed.
    pub fn remove(&self, name: &str) -> bool {
        let removed = lock(&self.by_name).remove(name);
        removed.is_some_and(|subscriber| {
            subscriber.removed.cancel();
            true
        })
    }

    pub fn stats(&self, name: &str) -> Result<SubscriberStats, SubscriberError> {
        Ok(self.find(name)?.ledger().stats())
    }

    /// Every subscriber, by name, with its counters (not its events).
    pub fn summaries(&self) -> Vec<SubscriberSummary> {
        let subscribers: Vec<_> = lock(&self.by_name)
            .iter()
            .map(|(name, subscriber)| (name.clone(), Arc::clone(subscriber)))
            .collect();
        subscribers
            .into_iter()
            .map(|(name, subscriber)| SubscriberSummary {
                name,
                secrets: subscriber.secret_count(),
                faults: subscriber.faults(),
                stats: subscriber.ledger().counters(),
            })
            .collect()
    }

    /// Clears every subscriber's ledger, counters and rate-limit window; keeps the
    /// subscribers, their secrets and their faults.
    pub fn reset(&self) {
        for subscriber in lock(&self.by_name).values() {
            *subscriber.ledger() = SubscriberLedger::default();
            *subscriber.throttle() = Window::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another valid secret (32 bytes of "x").
    const OTHER_SECRET: &str = "whsec_eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg=";

    #[test]
    fn names_are_short_lowercase_words() {
        for good in ["a", "crm-prod", "hr_2", &"x".repeat(MAX_NAME_LEN)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "CRM", "a b", "a/b", "é", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_to_three_valid_secrets_and_errors_never_repeat_them() {
        let good = crate::DEFAULT_WEBHOOK_SECRET.to_owned();
        assert!(checked_secrets(vec![good.clone()]).is_ok());
        assert!(checked_secrets(vec![good.clone(), OTHER_SECRET.into(), good.clone()]).is_ok());
        assert!(checked_secrets(vec![]).is_err());
        assert!(checked_secrets(vec![good.clone(); 4]).is_err());
        let error = checked_secrets(vec![good, "whsec_c2hvcnQ=".into()]).expect_err("short");
        let message = error.to_string();
        assert!(message.starts_with("secrets[1]:"), "{message}");
        assert!(!message.contains("c2hvcnQ"), "{message}");
    }

    #[test]
    fn putting_again_replaces_the_secrets_and_keeps_the_rest() {
        let subscribers = Subscribers::default();
        let secrets = vec![crate::DEFAULT_WEBHOOK_SECRET.to_owned()];
        assert_eq!(subscribers.put("a", secrets.clone()), Ok(true));
        subscribers
            .set_faults("a", SubscriberFaults::gone())
            .expect("known");
        subscribers.get("a").expect("known").ledger().receive();
        assert_eq!(
            subscribers.put("a", vec![OTHER_SECRET.into(), secrets[0].clone()]),
            Ok(false)
        );
        let summary = &subscribers.summaries()[0];
        assert_eq!((summary.secrets, summary.faults.gone), (2, true));
        assert_eq!(summary.stats.received, 1);
        subscribers.reset();
        assert_eq!(subscribers.stats("a"), Ok(SubscriberStats::default()));
        assert!(subscribers.faults("a").expect("kept").gone);
        assert!(subscribers.remove("a"));
        assert!(!subscribers.remove("a"));
        assert_eq!(
            subscribers.stats("a"),
            Err(SubscriberError::Unknown("a".into()))
        );
    }
}

//! Rate limits: per reader key, per token, and per client address for failed
//! authentication. Each answers `429 rate_limited` with `Retry-After`.
//!
//! - A reader key and a token each get a bucket of their own (GCRA, `governor`), checked
//!   before the request touches the database; a flood from one reader only ever empties
//!   that reader's bucket, so other readers' unlocks do not wait behind it.
//! - Failed authentication (an answer of 401) is counted per client address; an address
//!   past its budget is refused before authentication until it may try again. This slows
//!   key guessing and keeps a flood of bad keys from costing a database round trip each.
//!   The address is the TCP peer's: behind a proxy every client shares the proxy's, so
//!   there the limit belongs in the proxy (README, "Rate limits").
//! - Limits are per API process: with N replicas behind a balancer a client gets up to N
//!   times the configured rate. Set each replica's limit to the budget divided by N.
//!
//! - A refusal is answered after a pause (the `Retry-After` it announces, at most
//!   [`MAX_PAUSE`]): a client that ignores `Retry-After` and retries at once on the same
//!   connection gets at most one answer per pause per connection, so a flooding reader
//!   spends the server's time on waiting, not on answering it. Measured with one reader
//!   flooding over 16 connections beside one unlocking at 50/s (`bench.sh`, stage
//!   `limits`): without the pause the flood's 429s took enough of two cores to multiply the
//!   other reader's p99 several times.
//!
//! Buckets of keys not seen for a while are dropped by [`Limiters::forget_idle`], so
//! random keys cannot grow memory without bound.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, web};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;
use crate::metrics::ApiMetrics;

/// The longest a refusal is held before it is answered.
pub const MAX_PAUSE: Duration = Duration::from_secs(1);

/// A request refused by a limit: the answer, and how long to hold it first.
#[derive(Debug)]
pub struct Refused {
    pub error: ApiError,
    pub pause: Duration,
}

impl Refused {
    /// The answer, once the pause has passed.
    pub async fn answer(self) -> ApiError {
        tokio::time::sleep(self.pause).await;
        self.error
    }
}

/// One limit: a steady rate and the burst allowed above it. `None` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    /// No limit.
    pub const OFF: Rate = Rate {
        per_minute: 0,
        burst: 0,
    };

    fn quota(self) -> Option<Quota> {
        let per_minute = NonZeroU32::new(self.per_minute)?;
        let burst = NonZeroU32::new(self.burst.max(1))?;
        Some(Quota::per_minute(per_minute).allow_burst(burst))
    }
}

/// The three limits, as configured (`LATCH_RATE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub reader: Rate,
    pub token: Rate,
    pub failed_auth: Rate,
}

impl RateLimits {
    /// No limits at all (a benchmark of capacity, a test of something else).
    pub const OFF: RateLimits = RateLimits {
        reader: Rate::OFF,
        token: Rate::OFF,
        failed_auth: Rate::OFF,
    };
}

/// Which limit refused a request (the `limit` label of `latch_http_rate_limited_total`).
#[derive(Debug, Clone, Copy)]
enum Which {
    Reader,
    Token,
    Address,
}

impl Which {
    fn label(self) -> &'static str {
        match self {
            Which::Reader => "reader",
            Which::Token => "token",
            Which::Address => "address",
        }
    }
}

/// The limiters of one API process, shared by its HTTP workers.
pub struct Limiters {
    readers: Option<DefaultKeyedRateLimiter<[u8; 32]>>,
    tokens: Option<DefaultKeyedRateLimiter<[u8; 32]>>,
    failures: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Addresses past their failure budget, and when they may try again.
    refused_until: Mutex<HashMap<IpAddr, Instant>>,
    metrics: ApiMetrics,
}

impl Limiters {
    pub fn new(limits: RateLimits, metrics: ApiMetrics) -> Limiters {
        Limiters {
            readers: limits.reader.quota().map(RateLimiter::keyed),
            tokens: limits.token.quota().map(RateLimiter::keyed),
            failures: limits.failed_auth.quota().map(RateLimiter::keyed),
            refused_until: Mutex::default(),
            metrics,
        }
    }

    /// Spends one request of the reader key with this SHA-256.
    pub fn reader(&self, key_hash: &[u8]) -> Result<(), Refused> {
        self.spend(self.readers.as_ref(), key_hash, Which::Reader)
    }

    /// Spends one request of the token with this SHA-256.
    pub fn token(&self, token_hash: &[u8]) -> Result<(), Refused> {
        self.spend(self.tokens.as_ref(), token_hash, Which::Token)
    }

    fn spend(
        &self,
        limiter: Option<&DefaultKeyedRateLimiter<[u8; 32]>>,
        hash: &[u8],
        which: Which,
    ) -> Result<(), Refused> {
        let (Some(limiter), Ok(key)) = (limiter, <[u8; 32]>::try_from(hash)) else {
            return Ok(());
        };
        check(limiter, &key).map_err(|wait| self.refuse(which, wait))
    }

    /// The answer while `address` is past its failure budget.
    fn refused(&self, address: IpAddr) -> Option<Refused> {
        let mut refused = self.refused_until.lock().unwrap_or_else(|e| e.into_inner());
        let until = *refused.get(&address)?;
        let now = Instant::now();
        if until <= now {
            refused.remove(&address);
            return None;
        }
        Some(self.refuse(Which::Address, until - now))
    }

    /// Counts a failed authentication from `address`.
    fn failed(&self, address: IpAddr) {
        let Some(limiter) = &self.failures else {
            return;
        };
        if let Err(wait) = check(limiter, &address) {
            let mut refused = self.refused_until.lock().unwrap_or_else(|e| e.into_inner());
            refused.insert(address, Instant::now() + wait);
        }
    }

    fn refuse(&self, which: Which, wait: Duration) -> Refused {
        self.metrics
            .rate_limited
            .with_label_values(&[which.label()])
            .inc();
        // Whole seconds, rounded up: a client that waits that long will be let in.
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Refused {
            error: ApiError::too_many_requests(retry_after),
            pause: Duration::from_secs(retry_after).min(MAX_PAUSE),
        }
    }

    /// Drops the buckets of keys and addresses that are full again (they would allow a
    /// whole burst anyway), so that memory holds only the recently active.
    pub fn forget_idle(&self) {
        for limiter in [&self.readers, &self.tokens].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.failures {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let now = Instant::now();
        let mut refused = self.refused_until.lock().unwrap_or_else(|e| e.into_inner());
        refused.retain(|_, until| *until > now);
    }
}

/// One cell from `key`'s bucket, or how long until there is one.
fn check<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), Duration> {
    limiter
        .check_key(key)
        .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
}

/// The limiters of the app serving `req`, if any (tests may serve routes without them).
pub fn of(req: &HttpRequest) -> Option<&Limiters> {
    req.app_data::<web::Data<Limiters>>().map(|l| l.get_ref())
}

/// Middleware: refuses an address past its failure budget before anything else, and
/// counts each 401 it is answered.
pub async fn failed_auth(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let address = req.peer_addr().map(|a| a.ip());
    let limiters = req.app_data::<web::Data<Limiters>>().cloned();
    if let (Some(limiters), Some(address)) = (&limiters, address)
        && let Some(refusal) = limiters.refused(address)
    {
        return Err(refusal.answer().await.into());
    }
    let response = next.call(req).await?;
    if response.status() == StatusCode::UNAUTHORIZED
        && let (Some(limiters), Some(address)) = (limiters, address)
    {
        limiters.failed(address);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiters(reader: Rate, failed_auth: Rate) -> Limiters {
        let limits = RateLimits {
            reader,
            token: Rate {
                per_minute: 0,
                burst: 0,
            },
            failed_auth,
        };
        Limiters::new(limits, ApiMetrics::new(prometheus::Registry::new()))
    }

    #[test]
    fn a_key_gets_its_burst_then_waits_and_other_keys_are_untouched() {
        let limiters = limiters(
            Rate {
                per_minute: 60,
                burst: 3,
            },
            Rate {
                per_minute: 0,
                burst: 0,
            },
        );
        let (a, b) = ([1u8; 32], [2u8; 32]);
        for _ in 0..3 {
            limiters.reader(&a).expect("within the burst");
        }
        let refused = limiters.reader(&a).expect_err("past the burst");
        assert_eq!(refused.error.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.error.code(), "rate_limited");
        assert!(refused.pause > Duration::ZERO && refused.pause <= MAX_PAUSE);
        limiters.reader(&b).expect("another key has its own bucket");
        // Tokens are off in this configuration.
        for _ in 0..100 {
            limiters.token(&a).expect("no token limit");
        }
    }

    #[test]
    fn an_address_past_its_failures_is_refused_until_it_may_try_again() {
        let limiters = limiters(
            Rate {
                per_minute: 0,
                burst: 0,
            },
            Rate {
                per_minute: 60,
                burst: 2,
            },
        );
        let address: IpAddr = "192.0.2.7".parse().expect("address");
        let other: IpAddr = "192.0.2.8".parse().expect("address");
        limiters.failed(address);
        limiters.failed(address);
        assert!(limiters.refused(address).is_none(), "within the budget");
        limiters.failed(address);
        let refusal = limiters.refused(address).expect("past the budget");
        assert_eq!(refusal.error.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(limiters.refused(other).is_none());
        limiters.forget_idle();
        assert!(limiters.refused(address).is_some(), "still waiting");
    }
}

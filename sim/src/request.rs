//! The bookkeeping around one sink request: counted when it arrives, classified when it
//! is answered, and counted as abandoned when its future is dropped first (the client
//! gave up and hyper dropped the handler, or `down` cut the connection). Every sink
//! handler runs its work through [`counted`] (a sink's counters in the ledger) or
//! [`counted_by`] (any [`Tally`]: a named subscriber's own counters), so no answer escapes
//! the statistics.

use std::future::Future;

use axum::http::HeaderMap;

use crate::endpoint::Endpoint;
use crate::headers::{self, TRACEPARENT_HEADER};
use crate::reply::Reply;
use crate::state::SimState;

/// Where a receiver counts its requests.
pub(crate) trait Tally {
    /// A request arrived, with these headers read.
    fn received(&self, key: Option<&str>, traceparent: Option<&str>);
    /// It was answered `reply` (effects and duplicates are counted when applied).
    fn answered(&self, reply: &Reply);
    /// It was dropped before an answer.
    fn abandoned(&self);
}

/// A sink's counters, in the simulator's ledger.
struct Sink<'a> {
    state: &'a SimState,
    endpoint: Endpoint,
}

impl Tally for Sink<'_> {
    fn received(&self, key: Option<&str>, traceparent: Option<&str>) {
        self.state.ledger().receive(self.endpoint, key, traceparent);
    }

    fn answered(&self, reply: &Reply) {
        self.state.ledger().answered(self.endpoint, reply.verdict());
    }

    fn abandoned(&self) {
        self.state.ledger().abandoned(self.endpoint);
    }
}

/// Runs `answer` for a request to `endpoint` and counts its outcome.
pub(crate) async fn counted<'a, F, Fut>(
    state: &'a SimState,
    endpoint: Endpoint,
    headers: &'a HeaderMap,
    answer: F,
) -> Reply
where
    F: FnOnce(Option<&'a str>, Option<&'a str>) -> Fut,
    Fut: Future<Output = Reply>,
{
    counted_by(&Sink { state, endpoint }, headers, answer).await
}

/// Runs `answer` for a request and counts its outcome in `tally`.
pub(crate) async fn counted_by<'a, T, F, Fut>(tally: &T, headers: &'a HeaderMap, answer: F) -> Reply
where
    T: Tally,
    F: FnOnce(Option<&'a str>, Option<&'a str>) -> Fut,
    Fut: Future<Output = Reply>,
{
    let key = headers::idempotency_key(headers);
    let traceparent = headers::text(headers, TRACEPARENT_HEADER);
    tally.received(key, traceparent);
    let mut pending = Pending {
        tally,
        answered: false,
    };
    let reply = answer(key, traceparent).await;
    pending.answered = true;
    tally.answered(&reply);
    reply
}

/// Counts the request as abandoned if it is dropped before being answered.
struct Pending<'a, T: Tally> {
    tally: &'a T,
    answered: bool,
}

impl<T: Tally> Drop for Pending<'_, T> {
    fn drop(&mut self) {
        if !self.answered {
            self.tally.abandoned();
        }
    }
}

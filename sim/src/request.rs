//! The bookkeeping around one sink request: counted when it arrives, classified when it
//! is answered, and counted as abandoned when its future is dropped first (the client
//! gave up and hyper dropped the handler, or `down` cut the connection). Both sink
//! handlers run their work through [`counted`], so no answer escapes the statistics.

use std::future::Future;

use axum::http::HeaderMap;

use crate::endpoint::Endpoint;
use crate::headers::{self, TRACEPARENT_HEADER};
use crate::reply::Reply;
use crate::state::SimState;

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
    let key = headers::idempotency_key(headers);
    let traceparent = headers::text(headers, TRACEPARENT_HEADER);
    state.ledger().receive(endpoint, key, traceparent);
    let mut pending = Pending {
        state,
        endpoint,
        answered: false,
    };
    let reply = answer(key, traceparent).await;
    pending.answered = true;
    state.ledger().answered(endpoint, reply.verdict());
    reply
}

/// Counts the request as abandoned if it is dropped before being answered.
struct Pending<'a> {
    state: &'a SimState,
    endpoint: Endpoint,
    answered: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.state.ledger().abandoned(self.endpoint);
        }
    }
}

//! Sending one request and saying what became of it, as an [`Outcome`]: an HTTP answer
//! (any status; 4xx are data, not errors) or a failure without one, by kind. Nothing the
//! network returns can make this panic.
//!
//! The client is built once per run: HTTP/1.1 with keep-alive, one idle connection kept
//! per request that may be in flight, no proxy (a proxy would be measured too), and the
//! run's timeout over the whole exchange, body included.

use std::time::Duration;

use anyhow::Context;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, StatusCode};
use serde::Deserialize;

use super::plan::{Shot, ShotKind};
use crate::headers::IDEMPOTENCY_KEY_HEADER;

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// An HTTP answer, read to the end. `decision` is set for a 200 to an unlock.
    Answered {
        status: StatusCode,
        decision: Option<Decision>,
    },
    /// No answer.
    Failed { kind: Failure, message: String },
}

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The connection could not be made (refused, unresolvable, unreachable).
    Connect,
    /// No whole answer within the timeout.
    Timeout,
    /// Anything else: the connection was cut, the answer was not HTTP.
    Transport,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Connect => "connect_error",
            Failure::Timeout => "timeout",
            Failure::Transport => "transport_error",
        }
    }
}

/// The decision in an unlock's 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Granted,
    Denied,
    /// A 200 whose body has no readable decision.
    Unreadable,
}

impl Decision {
    pub fn label(self) -> &'static str {
        match self {
            Decision::Granted => "granted",
            Decision::Denied => "denied",
            Decision::Unreadable => "unreadable",
        }
    }
}

/// The run's one HTTP client.
pub(crate) fn client(connections: usize, timeout: Duration) -> anyhow::Result<Client> {
    // reqwest is built without a default TLS provider (see the workspace manifest); it
    // may already be installed by the process, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .http1_only()
        .pool_max_idle_per_host(connections)
        .timeout(timeout)
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        .no_proxy()
        .user_agent(concat!("latch-sim/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")
}

/// Sends `shot` and reads its answer to the end.
pub(crate) async fn send(client: &Client, shot: Shot) -> Outcome {
    let mut request = client
        .post(shot.url)
        .header(AUTHORIZATION, shot.authorization)
        .header(CONTENT_TYPE, "application/json")
        .body(shot.body);
    if let Some(key) = shot.idempotency_key {
        request = request.header(IDEMPOTENCY_KEY_HEADER, key);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return failed(error),
    };
    let status = response.status();
    // Reading the body is part of the exchange (and frees the connection for reuse).
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(error) => return failed(error),
    };
    let decision =
        (shot.kind == ShotKind::Unlock && status == StatusCode::OK).then(|| decision_in(&body));
    Outcome::Answered { status, decision }
}

fn failed(error: reqwest::Error) -> Outcome {
    let kind = if error.is_timeout() {
        Failure::Timeout
    } else if error.is_connect() {
        Failure::Connect
    } else {
        Failure::Transport
    };
    Outcome::Failed {
        kind,
        message: format!("{:#}", anyhow::Error::from(error)),
    }
}

fn decision_in(body: &[u8]) -> Decision {
    #[derive(Deserialize)]
    struct Unlocked<'a> {
        decision: &'a str,
    }
    match serde_json::from_slice::<Unlocked<'_>>(body).map(|u| u.decision) {
        Ok("granted") => Decision::Granted,
        Ok("denied") => Decision::Denied,
        _ => Decision::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_read_leniently() {
        let cases: [(&[u8], Decision); 4] = [
            (
                br#"{"decision":"granted","reason":"valid_grant"}"#,
                Decision::Granted,
            ),
            (
                br#"{"decision":"denied","reason":"no_grant"}"#,
                Decision::Denied,
            ),
            (br#"{"decision":"maybe"}"#, Decision::Unreadable),
            (b"<html>", Decision::Unreadable),
        ];
        for (body, decision) in cases {
            assert_eq!(decision_in(body), decision);
        }
    }
}

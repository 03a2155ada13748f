//! Sending one request and saying what became of it, as an [`Outcome`]: an HTTP answer
//! (any status; 4xx are data, not errors) or a failure without one, by kind. Nothing the
//! network returns can make this panic.
//!
//! The client is built once per run: HTTP/1.1 with keep-alive, one idle connection kept
//! per request that may be in flight, no proxy (a proxy would be measured too), and the
//! run's timeout over the whole exchange, connecting and body included. Plain `http://`
//! targets get the lean client of [`super::conn`]; `https://` ones reqwest.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use serde::Deserialize;

use super::conn::{Connections, ExchangeError};
use super::plan::{Shot, ShotKind};
const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

const USER_AGENT_VALUE: &str = concat!("latch-load/", env!("CARGO_PKG_VERSION"));

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
pub(crate) struct Client {
    transport: Transport,
    timeout: Duration,
}

enum Transport {
    /// `http://`: hyper connections of our own; `host` is the `Host` header.
    Plain {
        connections: Connections,
        host: HeaderValue,
    },
    /// `https://`.
    Tls(reqwest::Client),
}

/// The client for targets under `base`, keeping up to `connections` idle connections.
pub(crate) fn client(
    base: &reqwest::Url,
    connections: usize,
    timeout: Duration,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<Client> {
    let transport = if base.scheme() == "http" {
        let host = base.host_str().context("the URL has no host")?;
        let port = base.port_or_known_default().unwrap_or(80);
        let authority = match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        // An IPv6 literal comes bracketed in the URL; the socket wants it bare.
        let connect_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Transport::Plain {
            connections: Connections::new(connect_host, port, connections),
            host: HeaderValue::try_from(authority).context("the URL's host is not a header")?,
        }
    } else {
        // reqwest is built without a default TLS provider (see the workspace manifest);
        // it may already be installed by the process, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder();
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read --ca-file {}", path.display()))?;
            builder =
                builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).with_context(
                    || format!("--ca-file {} is not a PEM certificate", path.display()),
                )?);
        }
        let client = builder
            .http1_only()
            .pool_max_idle_per_host(connections)
            .timeout(timeout)
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .no_proxy()
            .user_agent(USER_AGENT_VALUE)
            .build()
            .context("cannot build the HTTP client")?;
        Transport::Tls(client)
    };
    Ok(Client { transport, timeout })
}

/// Sends `shot` and reads its answer to the end (reading the body is part of the
/// exchange, and frees the connection for the next request).
pub(crate) async fn send(client: &Client, shot: Shot) -> Outcome {
    let kind = shot.kind;
    let exchanged = match &client.transport {
        Transport::Plain { connections, host } => {
            let exchange = send_plain(connections, host, shot);
            match tokio::time::timeout(client.timeout, exchange).await {
                Ok(exchanged) => exchanged,
                Err(_) => Err(Outcome::Failed {
                    kind: Failure::Timeout,
                    message: format!("no whole answer within {:?}", client.timeout),
                }),
            }
        }
        Transport::Tls(tls) => send_tls(tls, shot).await,
    };
    match exchanged {
        Ok((status, body)) => {
            let decision =
                (kind == ShotKind::Unlock && status == StatusCode::OK).then(|| decision_in(&body));
            Outcome::Answered { status, decision }
        }
        Err(failed) => failed,
    }
}

async fn send_plain(
    connections: &Connections,
    host: &HeaderValue,
    shot: Shot,
) -> Result<(StatusCode, Bytes), Outcome> {
    let failed = |kind, message| Outcome::Failed { kind, message };
    // Origin form (`/v1/unlock`): the connection is already to the host.
    let path = shot.url.path_and_query().cloned().map(Uri::from);
    let mut request = Request::post(path.unwrap_or_else(|| Uri::from_static("/")))
        .header(HOST, host)
        .header(AUTHORIZATION, shot.authorization)
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, USER_AGENT_VALUE);
    if let Some(key) = shot.idempotency_key {
        request = request.header(IDEMPOTENCY_KEY_HEADER, key);
    }
    let request = request
        .body(Full::new(shot.body))
        .map_err(|e| failed(Failure::Transport, format!("cannot build the request: {e}")))?;
    connections.exchange(request).await.map_err(|e| match e {
        ExchangeError::Connect(message) => failed(Failure::Connect, message),
        ExchangeError::Transport(message) => failed(Failure::Transport, message),
    })
}

async fn send_tls(client: &reqwest::Client, shot: Shot) -> Result<(StatusCode, Bytes), Outcome> {
    let mut request = client
        .post(shot.url.to_string())
        .header(AUTHORIZATION, shot.authorization)
        .header(CONTENT_TYPE, "application/json")
        .body(shot.body);
    if let Some(key) = shot.idempotency_key {
        request = request.header(IDEMPOTENCY_KEY_HEADER, key);
    }
    let response = request.send().await.map_err(failed)?;
    let status = response.status();
    let body = response.bytes().await.map_err(failed)?;
    Ok((status, body))
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

//! One call to a webhook endpoint: the outbound check, the signed request, what came back.
//!
//! Every endpoint shares one HTTP client (connections are pooled per host). Its resolver is
//! the outbound policy's ([`latch_core::outbound::Policy::resolve`]): a name is resolved
//! at connection time and every address checked, and the connection goes to those very
//! addresses; an address literal in the URL is checked before the call. Redirects are not
//! followed, and no proxy is used (`HTTP_PROXY`/`HTTPS_PROXY` are ignored here: a proxy
//! would resolve and connect past the check).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use latch_core::outbound::{Policy, Refused};
use latch_core::signature::{self, SigningKey};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use time::OffsetDateTime;

use crate::sink::{Outcome, classify};

/// The most of an answer kept in an attempt record.
pub const RESPONSE_KEPT: usize = 1024;

/// Resolves through the outbound policy.
struct Resolver(Arc<Policy>);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = policy.resolve(&host, 0).await?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client every endpoint's calls go through.
pub fn client(policy: Arc<Policy>, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(2)))
        // Several endpoints may share a host (one integrator's service, or a gateway), each
        // with its lanes: keep enough idle connections for them to be reused rather than
        // opened anew per call, and let idle ones go soon (many endpoints, many hosts).
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("latch/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        // A proxy from HTTP(S)_PROXY would resolve and connect for us, past the check.
        .no_proxy()
        .dns_resolver(Arc::new(Resolver(policy)))
        .build()?)
}

/// What a call came to, for the delivery and its attempt record.
#[derive(Debug)]
pub struct Called {
    pub outcome: Outcome,
    /// The answer's status, when there was one.
    pub status: Option<u16>,
    /// Without an answer: `connection_failed`, `timeout`, `transport`, `address_refused`,
    /// `dns_failed`, `url_refused`.
    pub error: Option<&'static str>,
    pub latency: Duration,
    /// The first KiB of the answer (lossy UTF-8).
    pub response: Option<String>,
}

impl Called {
    /// A `410 Gone`: the receiver says the endpoint is no more.
    pub fn gone(&self) -> bool {
        self.status == Some(410)
    }
}

/// One signed call.
pub struct Request<'a> {
    pub url: &'a str,
    pub keys: Vec<&'a SigningKey>,
    pub event_id: &'a str,
    pub body: &'a [u8],
    pub traceparent: Option<&'a str>,
}

pub async fn call(http: &reqwest::Client, policy: &Policy, request: Request<'_>) -> Called {
    let started = Instant::now();
    let refused = |refused: Refused| Called {
        outcome: Outcome::Retry {
            reason: refused.to_string(),
            after: None,
            throttled: false,
        },
        status: None,
        error: Some(refused.class()),
        latency: started.elapsed(),
        response: None,
    };
    // The URL's form, and an address written in it (a name is checked by the resolver).
    let url = match policy.check_url(request.url) {
        Ok(url) => url,
        Err(error) => return refused(error),
    };
    if let Some(host) = url.host_str()
        && let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse()
        && let Err(error) = policy.check_ip(host, ip)
    {
        return refused(error);
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut headers = HeaderMap::new();
    let signed = signature::sign(&request.keys, request.event_id, now, request.body);
    for (name, value) in [
        ("Idempotency-Key", request.event_id.to_owned()),
        (signature::ID_HEADER, request.event_id.to_owned()),
        (signature::TIMESTAMP_HEADER, now.to_string()),
        (signature::SIGNATURE_HEADER, signed),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    if let Some(value) = request
        .traceparent
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        headers.insert("traceparent", value);
    }
    let sent = http
        .post(url)
        .headers(headers)
        .header(CONTENT_TYPE, "application/json")
        .body(request.body.to_vec())
        .send()
        .await;
    match sent {
        Ok(mut response) => {
            let status = response.status();
            let outcome = classify(status, response.headers());
            let mut kept = Vec::new();
            while kept.len() < RESPONSE_KEPT {
                match response.chunk().await {
                    Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            kept.truncate(RESPONSE_KEPT);
            // PostgreSQL's text takes no NUL; other control characters but line breaks
            // and tabs are shown as U+FFFD too (an answer is anything the receiver sent).
            let mut text: String = String::from_utf8_lossy(&kept)
                .chars()
                .map(|c| {
                    if c.is_control() && !matches!(c, '\n' | '\r' | '\t') {
                        char::REPLACEMENT_CHARACTER
                    } else {
                        c
                    }
                })
                .collect();
            while text.len() > RESPONSE_KEPT {
                text.pop();
            }
            Called {
                outcome,
                status: Some(status.as_u16()),
                error: None,
                latency: started.elapsed(),
                response: (!text.is_empty()).then_some(text),
            }
        }
        Err(error) => {
            let policy_refusal =
                std::iter::successors(Some(&error as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .find_map(|e| e.downcast_ref::<Refused>())
                .cloned();
            if let Some(refusal) = policy_refusal {
                return refused(refusal);
            }
            let (class, reason) = if error.is_timeout() {
                ("timeout", "no answer in time".to_owned())
            } else if error.is_connect() {
                ("connection_failed", "connection failed".to_owned())
            } else {
                // Without the URL: a receiver's URL may carry its token.
                (
                    "transport",
                    format!("transport error: {}", error.without_url()),
                )
            };
            Called {
                outcome: Outcome::Retry {
                    reason,
                    after: None,
                    throttled: false,
                },
                status: None,
                error: Some(class),
                latency: started.elapsed(),
                response: None,
            }
        }
    }
}

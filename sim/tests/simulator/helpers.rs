//! `TestSim`: a simulator started for one test, with one method per request a test
//! sends, so the tests read like the specification.

use std::time::Duration;

use latch_sim::{
    DEFAULT_TNA_KEY, DEFAULT_WEBHOOK_SECRET, Faults, ID_HEADER, IDEMPOTENCY_KEY_HEADER, Punch,
    PunchType, SIGNATURE_HEADER, SimConfig, Simulator, Stats, TIMESTAMP_HEADER, TNA_KEY_HEADER,
    TRACEPARENT_HEADER, sign,
};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

pub const FORM: &str = "application/x-www-form-urlencoded";

pub struct TestSim {
    pub sim: Simulator,
    pub client: Client,
}

/// A client that keeps no idle connections, so every request opens its own: what a test
/// of refused connections needs.
pub fn fresh_client(timeout: Duration) -> Client {
    install_crypto();
    Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(timeout)
        .build()
        .expect("a reqwest client builds")
}

fn install_crypto() {
    // reqwest is built without a default TLS provider; another test may have installed
    // it already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl TestSim {
    pub async fn spawn() -> TestSim {
        TestSim::spawn_with(SimConfig::default()).await
    }

    pub async fn spawn_with(config: SimConfig) -> TestSim {
        install_crypto();
        let sim = Simulator::start(config)
            .await
            .expect("the simulator starts");
        let client = Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a reqwest client builds");
        TestSim { sim, client }
    }

    pub async fn stats(&self) -> Stats {
        self.sim.stats().await
    }

    pub async fn set_faults(&self, faults: Faults) {
        self.sim.set_faults(faults).await.expect("faults are set");
    }

    /// Posts a punch form with the default key.
    pub async fn punch(&self, key: &str, punch: &Punch) -> Response {
        self.post_punch(
            &self.client,
            Some(key),
            Some(DEFAULT_TNA_KEY),
            punch.to_form(),
            None,
        )
        .await
        .expect("the punch request completes")
    }

    pub async fn post_punch(
        &self,
        client: &Client,
        key: Option<&str>,
        tna_key: Option<&str>,
        form: String,
        traceparent: Option<&str>,
    ) -> reqwest::Result<Response> {
        let mut request = client
            .post(self.sim.punch_url())
            .header("content-type", FORM)
            .body(form);
        if let Some(key) = key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        if let Some(tna_key) = tna_key {
            request = request.header(TNA_KEY_HEADER, tna_key);
        }
        if let Some(traceparent) = traceparent {
            request = request.header(TRACEPARENT_HEADER, traceparent);
        }
        request.send().await
    }

    /// Posts `event`'s envelope signed now with the default secret, as latch sends it: the
    /// event id as `webhook-id` and `Idempotency-Key`.
    pub async fn deliver(&self, envelope: &Event) -> Response {
        let body = serde_json::to_vec(&envelope.body).expect("an envelope serialises");
        let id = envelope.id.to_string();
        let signed = Signed::new(DEFAULT_WEBHOOK_SECRET, &id, now(), &body);
        self.post_webhook(&id, body, Some(&signed)).await
    }

    /// Posts `body` with `Idempotency-Key: key` and, when given, the signature headers.
    pub async fn post_webhook(
        &self,
        key: &str,
        body: Vec<u8>,
        signed: Option<&Signed>,
    ) -> Response {
        let mut request = self
            .client
            .post(self.sim.webhook_url())
            .header("content-type", "application/json")
            .header(IDEMPOTENCY_KEY_HEADER, key)
            .body(body);
        if let Some(signed) = signed {
            request = signed.on(request);
        }
        request.send().await.expect("the webhook request completes")
    }

    /// `PUT /faults` on the admin listener, as an operator would.
    pub async fn put_faults(&self, faults: &serde_json::Value) -> Response {
        self.client
            .put(format!("{}/faults", self.sim.admin_url()))
            .json(faults)
            .send()
            .await
            .expect("the admin request completes")
    }
}

/// The Standard Webhooks headers of one call.
#[derive(Debug, Clone)]
pub struct Signed {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
}

impl Signed {
    /// Signed by the reference implementation with `secret`.
    pub fn new(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Signed {
        Signed {
            id: id.to_owned(),
            timestamp,
            signature: sign(secret, id, timestamp, body),
        }
    }

    pub fn on(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .header(ID_HEADER, &self.id)
            .header(TIMESTAMP_HEADER, self.timestamp.to_string())
            .header(SIGNATURE_HEADER, &self.signature)
    }
}

pub fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// A valid punch for `holder` referencing `event`.
pub fn punch(holder: &str, event: &str) -> Punch {
    Punch {
        emp_id: holder.to_owned(),
        punch_type: PunchType::In,
        punch_ts: datetime!(2026-11-22 09:30:05 UTC),
        terminal: "reader-7".to_owned(),
        site: "hq".to_owned(),
        late: false,
        reference: event.to_owned(),
    }
}

/// An event as a subscriber receives it: latch's envelope (schema version 1), written out
/// here field by field rather than taken from latch's own type.
pub struct Event {
    pub id: Uuid,
    pub holder_id: Option<Uuid>,
    pub body: Value,
}

/// An envelope of `kind` (`check_in`, `grant_revoked`, ...) about `holder`.
pub fn envelope(holder: Uuid, kind: &str) -> Event {
    let id = Uuid::now_v7();
    let now = OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("now formats");
    let body = json!({
        "id": id,
        "kind": kind,
        "schema_version": 1,
        "occurred_at": now,
        "recorded_at": now,
        "site": "hq",
        "door_id": Uuid::now_v7(),
        "holder_id": holder,
        "reader_id": Uuid::now_v7(),
        "reader_seq": 1,
        "decided_offline": false,
        "decision": null,
        "reason": null,
        "grant_id": null,
        "actor_id": null,
    });
    Event {
        id,
        holder_id: Some(holder),
        body,
    }
}

/// Waits until `check` answers `Some`, polling every 20 ms, and panics after `deadline`.
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() <= deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts the status and returns the body.
pub async fn expect(response: Response, status: StatusCode) -> String {
    let actual = response.status();
    let body = response.text().await.expect("the body is readable");
    assert_eq!(actual, status, "unexpected status; body: {body}");
    body
}

//! Named subscribers: each its own secrets, faults and ledger, side by side in one
//! simulator. Calls are signed here, by this file's own signer (the reference
//! implementation called directly), not by the simulator's.

use std::time::Duration;

use latch_sim::{
    Faults, ID_HEADER, IDEMPOTENCY_KEY_HEADER, SIGNATURE_HEADER, SinkFaults, SubscriberStats,
    TIMESTAMP_HEADER,
};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use standardwebhooks::Webhook;
use uuid::Uuid;

use crate::helpers::{Event, TestSim, envelope, expect, fresh_client, now, wait_until};

/// Three valid secrets (32-byte keys: "a"s, "b"s, "c"s).
const SECRET_A: &str = "whsec_YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=";
const SECRET_B: &str = "whsec_YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI=";
const SECRET_C: &str = "whsec_Y2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2M=";

/// The three Standard Webhooks headers for `body` sent as `id` now, signed with `secret`.
fn signature_headers(secret: &str, id: &str, body: &[u8]) -> [(&'static str, String); 3] {
    let timestamp = now();
    let signature = Webhook::new(secret)
        .and_then(|webhook| webhook.sign(id, timestamp, body))
        .expect("the test's secret signs");
    [
        (ID_HEADER, id.to_owned()),
        (TIMESTAMP_HEADER, timestamp.to_string()),
        (SIGNATURE_HEADER, signature),
    ]
}

impl TestSim {
    /// `GET /endpoints`, as JSON.
    async fn listed(&self) -> Value {
        self.client
            .get(self.admin("/endpoints"))
            .send()
            .await
            .expect("completes")
            .json()
            .await
            .expect("JSON")
    }

    fn admin(&self, path: &str) -> String {
        format!("{}{path}", self.sim.admin_url())
    }

    /// `PUT /endpoints/{name}` with `body` as is.
    async fn put_endpoint_body(&self, name: &str, body: Value) -> Response {
        self.client
            .put(self.admin(&format!("/endpoints/{name}")))
            .json(&body)
            .send()
            .await
            .expect("the admin request completes")
    }

    /// Creates `name` (or replaces its secrets) and expects 204.
    async fn put_endpoint(&self, name: &str, secrets: &[&str]) {
        let response = self
            .put_endpoint_body(name, json!({ "secrets": secrets }))
            .await;
        expect(response, StatusCode::NO_CONTENT).await;
    }

    async fn put_endpoint_faults(&self, name: &str, faults: Value) -> Response {
        self.client
            .put(self.admin(&format!("/endpoints/{name}/faults")))
            .json(&faults)
            .send()
            .await
            .expect("the admin request completes")
    }

    /// `GET /endpoints/{name}/stats`, raw, once it is known to be 200.
    async fn endpoint_stats(&self, name: &str) -> Value {
        let response = self
            .client
            .get(self.admin(&format!("/endpoints/{name}/stats")))
            .send()
            .await
            .expect("the admin request completes");
        let body = expect(response, StatusCode::OK).await;
        serde_json::from_str(&body).expect("stats JSON")
    }

    /// Posts `event` to subscriber `name` as latch sends it, signed with `secret`.
    async fn deliver_to(&self, name: &str, secret: &str, event: &Event) -> Response {
        self.post_to(&self.client, name, secret, event)
            .await
            .expect("the delivery completes")
    }

    async fn post_to(
        &self,
        client: &Client,
        name: &str,
        secret: &str,
        event: &Event,
    ) -> reqwest::Result<Response> {
        let id = event.id.to_string();
        let body = serde_json::to_vec(&event.body).expect("an envelope serialises");
        let mut request = client
            .post(self.sim.subscriber_url(name))
            .header("content-type", "application/json")
            .header(IDEMPOTENCY_KEY_HEADER, &id);
        for (header, value) in signature_headers(secret, &id, &body) {
            request = request.header(header, value);
        }
        request.body(body).send().await
    }
}

/// An envelope for `holder`, numbered `sequence` among its events.
fn numbered(holder: Uuid, sequence: Option<i64>) -> Event {
    let mut event = envelope(holder, "check_in");
    event.body["schema_version"] = json!(2);
    event.body["sequence"] = json!(sequence);
    event
}

/// The error code of a JSON error answer, once its status is checked.
async fn error_code(response: Response, status: StatusCode) -> String {
    let body = expect(response, status).await;
    let body: Value = serde_json::from_str(&body).expect("a JSON error");
    body["error"]["code"]
        .as_str()
        .expect("an error code")
        .to_owned()
}

#[tokio::test]
async fn each_subscriber_accepts_only_its_own_signatures() {
    let app = TestSim::spawn().await;
    app.put_endpoint("crm", &[SECRET_A]).await;
    app.put_endpoint("hr", &[SECRET_B]).await;
    let event = envelope(Uuid::now_v7(), "check_in");

    let accepted = expect(
        app.deliver_to("crm", SECRET_A, &event).await,
        StatusCode::OK,
    )
    .await;
    let accepted: Value = serde_json::from_str(&accepted).expect("JSON");
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(accepted["id"], event.id.to_string());
    let foreign = app.deliver_to("hr", SECRET_A, &event).await;
    assert_eq!(
        error_code(foreign, StatusCode::UNAUTHORIZED).await,
        "invalid_signature"
    );
    // The default receiver's secret opens no subscriber either.
    let default = app
        .deliver_to("hr", latch_sim::DEFAULT_WEBHOOK_SECRET, &event)
        .await;
    expect(default, StatusCode::UNAUTHORIZED).await;
    expect(app.deliver_to("hr", SECRET_B, &event).await, StatusCode::OK).await;

    let crm = app.endpoint_stats("crm").await;
    assert_eq!(
        (crm["applied"].as_u64(), crm["rejected_signature"].as_u64()),
        (Some(1), Some(0))
    );
    let hr = app.endpoint_stats("hr").await;
    assert_eq!(
        (hr["applied"].as_u64(), hr["rejected_signature"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(hr["received"], 3);
    assert_eq!(hr["answered"], json!({"200": 1, "401": 2}));
    // The sinks saw none of it.
    assert_eq!(app.stats().await.webhooks.requests, 0);
}

#[tokio::test]
async fn a_subscriber_with_two_secrets_accepts_either_until_one_is_dropped() {
    let app = TestSim::spawn().await;
    app.put_endpoint("crm", &[SECRET_A, SECRET_B]).await;
    let holder = Uuid::now_v7();
    let (old, new, other) = (
        envelope(holder, "check_in"),
        envelope(holder, "check_out"),
        envelope(holder, "check_in"),
    );
    expect(app.deliver_to("crm", SECRET_A, &old).await, StatusCode::OK).await;
    expect(app.deliver_to("crm", SECRET_B, &new).await, StatusCode::OK).await;
    expect(
        app.deliver_to("crm", SECRET_C, &other).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // The rotation is over: only the new secret, and the ledger is kept.
    app.put_endpoint("crm", &[SECRET_B]).await;
    expect(
        app.deliver_to("crm", SECRET_A, &other).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    expect(
        app.deliver_to("crm", SECRET_B, &other).await,
        StatusCode::OK,
    )
    .await;
    expect(app.deliver_to("crm", SECRET_B, &old).await, StatusCode::OK).await;
    let stats = app.endpoint_stats("crm").await;
    assert_eq!(stats["applied"], 3);
    assert_eq!(stats["duplicates"], 1);
    assert_eq!(stats["rejected_signature"], 2);
}

#[tokio::test]
async fn an_unknown_subscriber_is_404_with_no_effect() {
    let app = TestSim::spawn().await;
    let event = envelope(Uuid::now_v7(), "check_in");
    for name in ["nobody", "Not-A-Name", &"x".repeat(41)] {
        let response = app.deliver_to(name, SECRET_A, &event).await;
        assert_eq!(
            error_code(response, StatusCode::NOT_FOUND).await,
            "unknown_endpoint"
        );
    }
    let admin = [
        app.client.get(app.admin("/endpoints/nobody/stats")),
        app.client.get(app.admin("/endpoints/nobody/faults")),
        app.client
            .put(app.admin("/endpoints/nobody/faults"))
            .json(&json!({})),
        app.client.delete(app.admin("/endpoints/nobody")),
    ];
    for request in admin {
        let response = request.send().await.expect("completes");
        assert_eq!(
            error_code(response, StatusCode::NOT_FOUND).await,
            "unknown_endpoint"
        );
    }
    assert_eq!(app.stats().await, latch_sim::Stats::default());

    // Deleted, a subscriber is unknown again.
    app.put_endpoint("crm", &[SECRET_A]).await;
    expect(
        app.deliver_to("crm", SECRET_A, &event).await,
        StatusCode::OK,
    )
    .await;
    let deleted = app
        .client
        .delete(app.admin("/endpoints/crm"))
        .send()
        .await
        .expect("completes");
    expect(deleted, StatusCode::NO_CONTENT).await;
    let response = app.deliver_to("crm", SECRET_A, &event).await;
    expect(response, StatusCode::NOT_FOUND).await;
    let listed: Value = app.listed().await;
    assert_eq!(listed, json!({"endpoints": []}));
}

#[tokio::test]
async fn gone_answers_410_and_applies_nothing() {
    let app = TestSim::spawn().await;
    app.put_endpoint("crm", &[SECRET_A]).await;
    let set = app.put_endpoint_faults("crm", json!({"gone": true})).await;
    let set: Value = serde_json::from_str(&expect(set, StatusCode::OK).await).expect("JSON");
    assert_eq!(set["gone"], true);
    let event = envelope(Uuid::now_v7(), "check_in");
    let response = app.deliver_to("crm", SECRET_A, &event).await;
    assert_eq!(error_code(response, StatusCode::GONE).await, "gone");
    let stats = app.endpoint_stats("crm").await;
    assert_eq!(
        (stats["received"].as_u64(), stats["applied"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(stats["answered"], json!({"410": 1}));
    assert_eq!(stats["events"], json!([]));

    // `{}` clears the knobs: the same event now takes its first effect.
    expect(
        app.put_endpoint_faults("crm", json!({})).await,
        StatusCode::OK,
    )
    .await;
    expect(
        app.deliver_to("crm", SECRET_A, &event).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(app.endpoint_stats("crm").await["applied"], 1);
}

#[tokio::test]
async fn the_same_event_is_applied_once_per_subscriber() {
    let app = TestSim::spawn().await;
    app.put_endpoint("crm", &[SECRET_A]).await;
    app.put_endpoint("hr", &[SECRET_B]).await;
    let event = envelope(Uuid::now_v7(), "check_in");
    for (name, secret) in [("crm", SECRET_A), ("hr", SECRET_B)] {
        let first = expect(app.deliver_to(name, secret, &event).await, StatusCode::OK).await;
        // A retry, signed anew: the first answer again, no second effect.
        let again = expect(app.deliver_to(name, secret, &event).await, StatusCode::OK).await;
        assert_eq!(first, again);
    }
    for name in ["crm", "hr"] {
        let stats = app.endpoint_stats(name).await;
        assert_eq!(
            (stats["applied"].as_u64(), stats["duplicates"].as_u64()),
            (Some(1), Some(1)),
            "{name}"
        );
        assert_eq!(stats["events"].as_array().map(Vec::len), Some(1), "{name}");
        assert_eq!(stats["events"][0]["id"], event.id.to_string());
    }

    // Reset clears the ledgers and keeps the subscribers and their secrets.
    let reset = app
        .client
        .post(app.admin("/admin/reset"))
        .send()
        .await
        .expect("completes");
    expect(reset, StatusCode::NO_CONTENT).await;
    let cleared: SubscriberStats =
        serde_json::from_value(app.endpoint_stats("crm").await).expect("typed stats");
    assert_eq!(cleared, SubscriberStats::default());
    expect(
        app.deliver_to("crm", SECRET_A, &event).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(app.endpoint_stats("crm").await["applied"], 1);
}

#[tokio::test]
async fn a_holders_sequence_going_back_counts_as_an_order_violation() {
    let app = TestSim::spawn().await;
    app.put_endpoint("crm", &[SECRET_A]).await;
    let (holder, other) = (Uuid::now_v7(), Uuid::now_v7());
    let events = [
        numbered(holder, Some(1)),
        numbered(holder, Some(3)),
        numbered(other, Some(1)),
        numbered(holder, Some(2)),
        numbered(holder, None),
        numbered(holder, Some(4)),
    ];
    for event in &events {
        expect(app.deliver_to("crm", SECRET_A, event).await, StatusCode::OK).await;
    }
    // A duplicate of an old one is not applied again, so it is no violation.
    expect(
        app.deliver_to("crm", SECRET_A, &events[0]).await,
        StatusCode::OK,
    )
    .await;

    let stats = app.endpoint_stats("crm").await;
    assert_eq!(stats["order_violations"], 1, "{stats}");
    let applied: Vec<_> = stats["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| (event["id"].clone(), event["sequence"].clone()))
        .collect();
    let sent: Vec<_> = events
        .iter()
        .map(|event| (json!(event.id.to_string()), event.body["sequence"].clone()))
        .collect();
    assert_eq!(applied, sent);
    assert_eq!(stats["events"][2]["holder_id"], other.to_string());
    assert_eq!(stats["events"][2]["kind"], "check_in");

    // A sequence that is not a number is refused like any malformed body.
    let mut odd = numbered(holder, None);
    odd.body["sequence"] = json!("5");
    let response = app.deliver_to("crm", SECRET_A, &odd).await;
    assert_eq!(
        error_code(response, StatusCode::BAD_REQUEST).await,
        "invalid_body"
    );
}

#[tokio::test]
async fn a_bad_secret_is_400_and_never_repeated() {
    let app = TestSim::spawn().await;
    let short = "whsec_c2hvcnQtc2VjcmV0";
    let unprefixed = "c2VjcmV0LXdpdGhvdXQtaXRzLXByZWZpeC0zMi1ieXRlcw==";
    for body in [
        json!({"secrets": [short]}),
        json!({"secrets": [SECRET_A, unprefixed]}),
        json!({"secrets": [SECRET_A, SECRET_B, SECRET_C, SECRET_A]}),
        json!({"secrets": []}),
        json!({"secrets": short}),
        json!({"secret": [SECRET_A]}),
    ] {
        let response = app.put_endpoint_body("crm", body.clone()).await;
        let error = expect(response, StatusCode::BAD_REQUEST).await;
        for secret in [short, unprefixed, SECRET_A] {
            let key = secret.trim_start_matches("whsec_");
            assert!(!error.contains(key), "{error} repeats a secret of {body}");
        }
        let error: Value = serde_json::from_str(&error).expect("JSON");
        assert_eq!(error["error"]["code"], "invalid_secrets", "{body}");
    }
    let response = app
        .put_endpoint_body("CRM!", json!({"secrets": [SECRET_A]}))
        .await;
    assert_eq!(
        error_code(response, StatusCode::BAD_REQUEST).await,
        "invalid_name"
    );
    // Nothing was created.
    let listed: Value = app.listed().await;
    assert_eq!(listed, json!({"endpoints": []}));
}

#[tokio::test]
async fn one_subscribers_faults_leave_the_others_alone() {
    let app = TestSim::spawn().await;
    app.put_endpoint("crm", &[SECRET_A]).await;
    app.put_endpoint("hr", &[SECRET_B]).await;
    let holder = Uuid::now_v7();

    // Each of crm's faults answers crm's request as it says; hr answers 200 meanwhile.
    for (faults, kind, status, code, retry_after) in [
        (
            json!({"error_rate": 1.0}),
            "check_in",
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            None,
        ),
        (
            json!({"rate_limit": {"per_second": 0, "retry_after_secs": 9}}),
            "check_in",
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            Some("9"),
        ),
        (
            json!({"reject": {"kinds": ["grant_revoked"]}}),
            "grant_revoked",
            StatusCode::UNPROCESSABLE_ENTITY,
            "rejected",
            None,
        ),
    ] {
        expect(app.put_endpoint_faults("crm", faults).await, StatusCode::OK).await;
        let response = app
            .deliver_to("crm", SECRET_A, &envelope(holder, kind))
            .await;
        if let Some(seconds) = retry_after {
            assert_eq!(response.headers()["retry-after"], seconds);
        }
        assert_eq!(error_code(response, status).await, code);
        expect(
            app.deliver_to("hr", SECRET_B, &envelope(holder, kind))
                .await,
            StatusCode::OK,
        )
        .await;
    }

    // A hung subscriber holds its own requests only.
    expect(
        app.put_endpoint_faults("crm", json!({"hang": true})).await,
        StatusCode::OK,
    )
    .await;
    let impatient = fresh_client(Duration::from_millis(300));
    let hung = app
        .post_to(&impatient, "crm", SECRET_A, &envelope(holder, "check_in"))
        .await;
    assert!(hung.is_err_and(|error| error.is_timeout()));
    expect(
        app.deliver_to("hr", SECRET_B, &envelope(holder, "check_in"))
            .await,
        StatusCode::OK,
    )
    .await;
    wait_until(
        "the hung request to be abandoned",
        Duration::from_secs(5),
        || async { (app.endpoint_stats("crm").await["abandoned"] == 1).then_some(()) },
    )
    .await;

    // The sinks' knobs are not a subscriber's.
    app.set_faults(Faults::both(SinkFaults::failing(1.0))).await;
    expect(
        app.put_endpoint_faults("crm", json!({})).await,
        StatusCode::OK,
    )
    .await;
    expect(
        app.deliver_to("crm", SECRET_A, &envelope(holder, "check_in"))
            .await,
        StatusCode::OK,
    )
    .await;

    let (crm, hr) = (
        app.endpoint_stats("crm").await,
        app.endpoint_stats("hr").await,
    );
    assert_eq!(
        (crm["applied"].as_u64(), hr["applied"].as_u64()),
        (Some(1), Some(4))
    );
    assert_eq!(
        crm["answered"],
        json!({"200": 1, "422": 1, "429": 1, "503": 1})
    );
    assert_eq!(crm["received"], 5);
}

#[tokio::test]
async fn a_request_waiting_when_its_subscriber_is_deleted_is_404() {
    let app = TestSim::spawn().await;
    app.put_endpoint("crm", &[SECRET_A]).await;
    expect(
        app.put_endpoint_faults("crm", json!({"hang": true})).await,
        StatusCode::OK,
    )
    .await;
    let waiting = {
        let client = app.client.clone();
        let url = app.sim.subscriber_url("crm");
        let event = envelope(Uuid::now_v7(), "check_in");
        let id = event.id.to_string();
        let body = serde_json::to_vec(&event.body).expect("serialises");
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .header(IDEMPOTENCY_KEY_HEADER, &id);
        for (header, value) in signature_headers(SECRET_A, &id, &body) {
            request = request.header(header, value);
        }
        tokio::spawn(request.body(body).send())
    };
    wait_until(
        "the hung request to arrive",
        Duration::from_secs(5),
        || async { (app.endpoint_stats("crm").await["received"] == 1).then_some(()) },
    )
    .await;
    let deleted = app
        .client
        .delete(app.admin("/endpoints/crm"))
        .send()
        .await
        .expect("completes");
    expect(deleted, StatusCode::NO_CONTENT).await;
    let response = waiting.await.expect("joins").expect("answered");
    assert_eq!(
        error_code(response, StatusCode::NOT_FOUND).await,
        "unknown_endpoint"
    );
}

#[tokio::test]
async fn a_subscriber_makes_the_default_receivers_checks() {
    let app = TestSim::spawn().await;
    app.put_endpoint("crm", &[SECRET_A]).await;
    let url = app.sim.subscriber_url("crm");
    let body = br#"{"id":"e1","kind":"check_in"}"#.to_vec();
    let post = |key: Option<&str>, content_type: &str, signed_id: &str, body: Vec<u8>| {
        let mut request = app.client.post(&url).header("content-type", content_type);
        if let Some(key) = key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        for (header, value) in signature_headers(SECRET_A, signed_id, &body) {
            request = request.header(header, value);
        }
        request.body(body).send()
    };
    let cases = [
        (
            post(None, "application/json", "e1", body.clone()),
            StatusCode::BAD_REQUEST,
            "missing_idempotency_key",
        ),
        (
            post(Some("e2"), "application/json", "e1", body.clone()),
            StatusCode::BAD_REQUEST,
            "idempotency_key_mismatch",
        ),
        (
            post(Some("e1"), "text/plain", "e1", body.clone()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            post(Some("e1"), "application/json", "e1", b"{}".to_vec()),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            post(Some("e2"), "application/json", "e2", body.clone()),
            StatusCode::BAD_REQUEST,
            "webhook_id_mismatch",
        ),
    ];
    for (request, status, code) in cases {
        let response = request.await.expect("completes");
        assert_eq!(error_code(response, status).await, code);
    }
    expect(
        post(Some("e1"), "application/json", "e1", body)
            .await
            .expect("completes"),
        StatusCode::OK,
    )
    .await;
    // The same key with other content is a reuse, not a duplicate.
    let other = br#"{"id":"e1","kind":"check_out"}"#.to_vec();
    let response = post(Some("e1"), "application/json", "e1", other)
        .await
        .expect("completes");
    assert_eq!(
        error_code(response, StatusCode::UNPROCESSABLE_ENTITY).await,
        "idempotency_key_reused"
    );
    let stats = app.endpoint_stats("crm").await;
    assert_eq!(
        (stats["applied"].as_u64(), stats["duplicates"].as_u64()),
        (Some(1), Some(0))
    );
}

#[tokio::test]
async fn the_list_and_the_stats_read_as_documented() {
    let app = TestSim::spawn().await;
    app.put_endpoint("hr", &[SECRET_B]).await;
    app.put_endpoint("crm", &[SECRET_A, SECRET_C]).await;
    expect(
        app.put_endpoint_faults(
            "hr",
            json!({"gone": true, "latency": {"kind": "fixed", "ms": 1}}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let event = numbered(Uuid::now_v7(), Some(1));
    expect(
        app.deliver_to("crm", SECRET_C, &event).await,
        StatusCode::OK,
    )
    .await;

    let listed: Value = app.listed().await;
    let entries = listed["endpoints"].as_array().expect("a list");
    let names: Vec<_> = entries.iter().map(|entry| entry["name"].clone()).collect();
    assert_eq!(names, [json!("crm"), json!("hr")]);
    assert_eq!(entries[0]["secrets"], 2);
    assert_eq!(entries[0]["stats"]["applied"], 1);
    assert!(entries[0]["stats"].get("events").is_none(), "{listed}");
    assert_eq!(entries[1]["faults"]["gone"], true);
    assert_eq!(
        entries[1]["faults"]["latency"],
        json!({"kind": "fixed", "ms": 1})
    );
    assert!(!listed.to_string().contains("whsec_"), "{listed}");

    let faults: Value = app
        .client
        .get(app.admin("/endpoints/hr/faults"))
        .send()
        .await
        .expect("completes")
        .json()
        .await
        .expect("JSON");
    assert_eq!(faults, entries[1]["faults"]);

    let raw = app.endpoint_stats("crm").await;
    for counter in [
        "received",
        "applied",
        "duplicates",
        "rejected_signature",
        "abandoned",
        "order_violations",
    ] {
        assert!(raw[counter].is_u64(), "{counter} in {raw}");
    }
    assert_eq!(
        raw["events"],
        json!([{
            "id": event.id.to_string(),
            "kind": "check_in",
            "holder_id": event.holder_id.map(|holder| holder.to_string()),
            "sequence": 1,
        }])
    );
    let typed: SubscriberStats = serde_json::from_value(raw).expect("the typed stats read it");
    assert_eq!(typed, app.sim.subscriber_stats("crm").expect("known"));

    for bad in [
        json!({"gone": "yes"}),
        json!({"error_rate": 2.0}),
        json!({"down": true}),
    ] {
        let response = app.put_endpoint_faults("hr", bad).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "invalid_faults"
        );
    }
}

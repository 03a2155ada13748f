//! Webhook endpoints through the API: created, listed, changed, rotated and deleted by an
//! `admin` token for every site, each change an action naming the endpoint; URLs that
//! would reach inside the network refused; bad input refused with nothing written.

use latch_api::ApiConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const ENDPOINTS: &str = "/v1/webhooks/endpoints";

/// An API that lets endpoints be plain http on loopback (as the local stack does).
async fn local_app() -> TestApp {
    spawn_app_configured(
        64 * 1024,
        ApiConfig {
            outbound: latch_core::outbound::Policy::local(),
            ..unlimited()
        },
    )
    .await
}

async fn create(app: &TestApp, body: Value) -> Value {
    expect_status(
        app.post(ENDPOINTS, &app.admin_token, &body).await,
        StatusCode::CREATED,
    )
    .await
}

async fn send(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let request = app.request(method, path, &app.admin_token);
    match body {
        Some(body) => request.json(&body),
        None => request,
    }
    .send()
    .await
    .expect("request")
}

/// (endpoints, actions about endpoints), as the owner sees them.
async fn written(app: &TestApp) -> (i64, i64) {
    let row = app
        .db
        .owner()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM webhook_endpoints),
                    (SELECT count(*) FROM actions WHERE endpoint_id IS NOT NULL)",
            &[],
        )
        .await
        .expect("count");
    (row.get(0), row.get(1))
}

/// The actions about `endpoint`, oldest first: (kind, actor, reason).
async fn actions_of(app: &TestApp, endpoint: Uuid) -> Vec<(String, Option<Uuid>, String)> {
    app.db
        .owner()
        .await
        .query(
            "SELECT kind, actor_id, reason FROM actions WHERE endpoint_id = $1
             ORDER BY recorded_at, id",
            &[&endpoint],
        )
        .await
        .expect("actions")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

#[tokio::test]
async fn an_endpoint_is_created_listed_changed_rotated_and_deleted_each_change_recorded() {
    let app = local_app().await;
    app.create_door("hq", "Main").await;
    let created = create(
        &app,
        json!({"url": "http://127.0.0.1:9/hooks", "description": "HR system",
               "kinds": ["check_in", "check_out"], "sites": ["hq"], "rate_per_second": 20}),
    )
    .await;
    let id = uuid(&created["id"]);
    let secret = created["secret"].as_str().expect("the secret, shown once");
    assert!(
        latch_core::signature::SigningKey::parse(secret).is_ok(),
        "{secret}"
    );
    assert_eq!(created["kinds"], json!(["check_in", "check_out"]));
    assert_eq!(created["rate_per_second"], 20);
    assert!(created["disabled_at"].is_null());

    // Never shown again.
    let listed = app.admin_get(ENDPOINTS).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert!(listed[0].get("secret").is_none(), "{listed}");
    let one = app.admin_get(&format!("{ENDPOINTS}/{id}")).await;
    assert!(one.get("secret").is_none() && one["url"] == "http://127.0.0.1:9/hooks");

    // Every kind again, another rate; then disabled, enabled from now.
    let path = format!("{ENDPOINTS}/{id}");
    let changed = expect_status(
        send(
            &app,
            Method::PATCH,
            &path,
            Some(json!({"kinds": null, "rate_per_second": 5})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(
        changed["kinds"].is_null() && changed["sites"] == json!(["hq"]),
        "{changed}"
    );
    let disabled = expect_status(
        send(&app, Method::PATCH, &path, Some(json!({"disabled": true}))).await,
        StatusCode::OK,
    )
    .await;
    assert!(disabled["disabled_at"].is_string(), "{disabled}");
    let enabled = expect_status(
        send(
            &app,
            Method::PATCH,
            &path,
            Some(json!({"disabled": false, "resume": "now"})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(enabled["disabled_at"].is_null(), "{enabled}");

    let rotated = expect_status(
        send(
            &app,
            Method::POST,
            &format!("{path}/secret:rotate"),
            Some(json!({"grace_secs": 600})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let new_secret = rotated["secret"].as_str().expect("the new secret");
    assert_ne!(new_secret, secret);
    assert!(rotated["previous_secret_until"].is_string(), "{rotated}");
    let stored: (String, Option<String>) = {
        let row = app
            .db
            .owner()
            .await
            .query_one(
                "SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1",
                &[&id],
            )
            .await
            .expect("secrets");
        (row.get(0), row.get(1))
    };
    assert_eq!(stored, (new_secret.to_owned(), Some(secret.to_owned())));

    expect_status(
        send(&app, Method::DELETE, &path, None).await,
        StatusCode::NO_CONTENT,
    )
    .await;
    expect_error(
        app.get(&path, &app.admin_token).await,
        StatusCode::NOT_FOUND,
        "endpoint_not_found",
    )
    .await;

    let kinds: Vec<String> = actions_of(&app, id)
        .await
        .into_iter()
        .map(|(kind, actor, reason)| {
            assert!(actor.is_some(), "{kind} has its author");
            assert!(reason.contains(&id.to_string()), "{reason}");
            kind
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "webhook_endpoint_created",
            "webhook_endpoint_updated",
            "webhook_endpoint_disabled",
            "webhook_endpoint_enabled",
            "webhook_secret_rotated",
            "webhook_endpoint_deleted"
        ]
    );
    // The event the outbox carries names the endpoint.
    let envelope = &app
        .db
        .owner()
        .await
        .query_one(
            "SELECT o.payload FROM outbox o JOIN actions a ON a.id = o.event_id
             WHERE a.endpoint_id = $1 AND a.kind = 'webhook_endpoint_created'",
            &[&id],
        )
        .await
        .map(|row| row.get::<_, Value>(0))
        .expect("outbox row");
    let envelope: latch_core::event::Envelope =
        serde_json::from_value(envelope.clone()).expect("an envelope");
    assert_eq!(envelope.endpoint_id, Some(id));
}

#[tokio::test]
async fn urls_that_reach_inside_the_network_are_refused_and_nothing_is_written() {
    let app = spawn_app().await;
    for url in [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "https://localhost:8443/hook",
        "https://0.0.0.0/hook",
    ] {
        let refused = expect_error(
            app.post(ENDPOINTS, &app.admin_token, &json!({"url": url}))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "url_refused",
        )
        .await;
        let message = refused["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("may not reach"), "{url}: {message}");
    }
    let plain = expect_error(
        app.post(
            ENDPOINTS,
            &app.admin_token,
            &json!({"url": "http://example.com/hook"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "url_refused",
    )
    .await;
    assert!(
        plain["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("https")
    );
    assert_eq!(written(&app).await, (0, 0));

    // Changing a URL is checked the same way.
    let local = local_app().await;
    let id = uuid(&create(&local, json!({"url": "http://127.0.0.1:9/hook"})).await["id"]);
    let strict = local.spawn_replica(unlimited());
    let refused = local
        .http
        .patch(format!("{}{ENDPOINTS}/{id}", strict.base))
        .bearer_auth(&local.admin_token)
        .json(&json!({"url": "https://169.254.169.254/"}))
        .send()
        .await
        .expect("request");
    expect_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "url_refused").await;
    assert_eq!(written(&local).await, (1, 1));
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_error_and_nothing_written() {
    let app = local_app().await;
    app.create_door("hq", "Main").await;
    let url = "http://127.0.0.1:9/hook";
    for (body, status, code) in [
        (
            json!({"url": "not a url"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
        ),
        (
            json!({"url": "ftp://example.com/"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "url_refused",
        ),
        (
            json!({"url": "http://user:pw@127.0.0.1/"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "url_refused",
        ),
        (
            json!({"url": url, "kinds": ["check_inn"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_kind",
        ),
        (
            json!({"url": url, "kinds": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"url": url, "sites": ["nowhere"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_site",
        ),
        (
            json!({"url": url, "sites": ["Not A Site"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"url": url, "description": "x".repeat(501)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"url": url, "rate_per_second": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"url": url, "secret": "whsec_mine"}),
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            json!({"description": "no url"}),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
    ] {
        let answer = app.post(ENDPOINTS, &app.admin_token, &body).await;
        assert_eq!(answer.status(), status, "{body}");
        expect_error(answer, status, code).await;
    }
    assert_eq!(written(&app).await, (0, 0));

    let id = uuid(&create(&app, json!({"url": url})).await["id"]);
    let path = format!("{ENDPOINTS}/{id}");
    for (body, code) in [
        (json!({"resume": "now"}), "invalid_field"),
        (json!({"kinds": ["nope"]}), "unknown_kind"),
        (json!({"url": "not a url"}), "invalid_url"),
    ] {
        expect_error(
            send(&app, Method::PATCH, &path, Some(body)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
        )
        .await;
    }
    expect_error(
        send(&app, Method::PATCH, &path, Some(json!({"url": null}))).await,
        StatusCode::BAD_REQUEST,
        "malformed_body",
    )
    .await;
    expect_error(
        send(
            &app,
            Method::POST,
            &format!("{path}/secret:rotate"),
            Some(json!({"grace_secs": -1})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    let unknown = format!("{ENDPOINTS}/{}", Uuid::now_v7());
    for (method, path, body) in [
        (Method::GET, unknown.clone(), None),
        (
            Method::PATCH,
            unknown.clone(),
            Some(json!({"description": "x"})),
        ),
        (Method::DELETE, unknown.clone(), None),
        (Method::POST, format!("{unknown}/secret:rotate"), None),
    ] {
        expect_error(
            send(&app, method, &path, body).await,
            StatusCode::NOT_FOUND,
            "endpoint_not_found",
        )
        .await;
    }
    assert_eq!(written(&app).await, (1, 1), "only the one creation");
}

#[tokio::test]
async fn only_an_admin_token_for_every_site_manages_endpoints() {
    let app = local_app().await;
    app.create_door("hq", "Main").await;
    let id = uuid(&create(&app, json!({"url": "http://127.0.0.1:9/hook"})).await["id"]);
    let (_, narrow) = app.token(&["admin"], Some(&["hq"])).await;
    let (_, reader_of_events) = app.token(&["events:read", "registry:read"], None).await;
    for (token, code) in [
        (&narrow, "site_not_allowed"),
        (&reader_of_events, "insufficient_scope"),
    ] {
        expect_error(
            app.post(ENDPOINTS, token, &json!({"url": "http://127.0.0.1:9/x"}))
                .await,
            StatusCode::FORBIDDEN,
            code,
        )
        .await;
        expect_error(app.get(ENDPOINTS, token).await, StatusCode::FORBIDDEN, code).await;
        let rotate = app
            .request(
                Method::POST,
                &format!("{ENDPOINTS}/{id}/secret:rotate"),
                token,
            )
            .send()
            .await
            .expect("request");
        expect_error(rotate, StatusCode::FORBIDDEN, code).await;
    }
    expect_error(
        app.get(ENDPOINTS, "lat_not-a-token").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(written(&app).await, (1, 1));

    // The API's own login cannot read a secret back.
    let denied = app
        .db
        .app()
        .await
        .query("SELECT secret FROM webhook_endpoints", &[])
        .await
        .expect_err("the API's login may not read secrets");
    let message = denied.as_db_error().map(|e| e.message().to_owned());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("permission denied")),
        "{denied:?}"
    );
}

#[tokio::test]
async fn attempts_are_listed_newest_first_filtered_and_paged() {
    let app = local_app().await;
    let id = uuid(&create(&app, json!({"url": "http://127.0.0.1:9/hook"})).await["id"]);
    let owner = app.db.owner().await;
    // 5 attempts of one event: two refused connections, a 503, a 429, then delivered.
    let event = Uuid::now_v7();
    for (n, (outcome, status, error)) in [
        ("retry", None, Some("connection_failed")),
        ("retry", None, Some("connection_failed")),
        ("retry", Some(503i16), None),
        ("retry", Some(429), None),
        ("delivered", Some(200), None),
    ]
    .into_iter()
    .enumerate()
    {
        owner
            .execute(
                "INSERT INTO webhook_attempts (endpoint_id, attempted_at, event_id, outcome,
                                               status, error, latency_ms, response)
                 VALUES ($1, now() - make_interval(secs => $2), $3, $4, $5, $6, 12, 'ok')",
                &[&id, &(10.0 - n as f64), &event, &outcome, &status, &error],
            )
            .await
            .expect("attempt");
    }
    let path = format!("{ENDPOINTS}/{id}/attempts");
    let all = app.admin_get(&path).await;
    let statuses: Vec<Value> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [json!(200), json!(429), json!(503), Value::Null, Value::Null]
    );
    assert!(all["next_cursor"].is_null());
    let delivered = app.admin_get(&format!("{path}?status=delivered")).await;
    assert_eq!(delivered["items"].as_array().map(Vec::len), Some(1));
    let throttled = app.admin_get(&format!("{path}?status=429")).await;
    assert_eq!(throttled["items"][0]["status"], 429);

    // Pages of two, each attempt once.
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page = app
            .admin_get(&match &cursor {
                Some(cursor) => format!("{path}?limit=2&cursor={cursor}"),
                None => format!("{path}?limit=2"),
            })
            .await;
        seen += page["items"].as_array().map(Vec::len).unwrap_or(0);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, 5);

    for (query, code) in [
        ("status=gone", "invalid_status"),
        ("cursor=not-ours", "invalid_cursor"),
        ("limit=0", "invalid_limit"),
    ] {
        expect_error(
            app.get(&format!("{path}?{query}"), &app.admin_token).await,
            StatusCode::BAD_REQUEST,
            code,
        )
        .await;
    }
    expect_error(
        app.get(
            &format!("{ENDPOINTS}/{}/attempts", Uuid::now_v7()),
            &app.admin_token,
        )
        .await,
        StatusCode::NOT_FOUND,
        "endpoint_not_found",
    )
    .await;
}

#[tokio::test]
async fn a_recovery_moves_the_endpoints_cursor_back_and_is_recorded() {
    let app = local_app().await;
    let id = uuid(&create(&app, json!({"url": "http://127.0.0.1:9/hook"})).await["id"]);
    let path = format!("{ENDPOINTS}/{id}/recover");
    expect_error(
        send(
            &app,
            Method::POST,
            &path,
            Some(json!({"since": "2999-01-01T00:00:00Z"})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    expect_error(
        send(&app, Method::POST, &path, Some(json!({}))).await,
        StatusCode::BAD_REQUEST,
        "malformed_body",
    )
    .await;
    let since = "2026-01-02T03:04:05Z";
    let answer = send(&app, Method::POST, &path, Some(json!({"since": since}))).await;
    expect_status(answer, StatusCode::ACCEPTED).await;
    let row = app
        .db
        .owner()
        .await
        .query_one(
            "SELECT start_at = $2::timestamptz, position IS NULL, recover_since = $2::timestamptz
             FROM webhook_endpoints WHERE id = $1",
            &[
                &id,
                &time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
                    .expect("time"),
            ],
        )
        .await
        .expect("endpoint");
    assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1) && row.get::<_, bool>(2));
    let kinds: Vec<String> = actions_of(&app, id)
        .await
        .into_iter()
        .map(|a| a.0)
        .collect();
    assert_eq!(
        kinds,
        ["webhook_endpoint_created", "webhook_recovery_started"]
    );

    // Stats without the event stream: what the database knows, the rest null.
    let stats = app.admin_get(&format!("{ENDPOINTS}/{id}/stats")).await;
    assert_eq!(stats["delivered"], 0);
    assert_eq!(stats["breaker"], "closed");
    assert!(
        stats["pending"].is_null() && stats["dead_letters"].is_null(),
        "{stats}"
    );
    assert_eq!(stats["recover_since"], since);
}

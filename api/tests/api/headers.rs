//! Security headers on every answer, and no credential echoed back in an error.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let http = reqwest::Client::new();
    for (method, path, token) in [
        (Method::GET, "/healthz", None),
        (Method::GET, "/v1/doors", Some(app.admin_token.as_str())),
        (Method::GET, "/v1/doors", None),
        (Method::POST, "/v1/unlock", Some(door.reader_key.as_str())),
        (Method::GET, "/no/such/path", None),
        (Method::GET, "/openapi.json", None),
        (Method::GET, "/docs/", None),
    ] {
        let mut request = http.request(method.clone(), format!("{}{path}", app.base));
        if let Some(token) = token {
            request = request.bearer_auth(token).json(&json!({"card_id": "X"}));
        }
        let response = request.send().await.expect("request");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let what = format!("{method} {path} ({})", response.status());
        assert_eq!(
            header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(header("x-frame-options").as_deref(), Some("DENY"), "{what}");
        assert_eq!(
            header("referrer-policy").as_deref(),
            Some("no-referrer"),
            "{what}"
        );
        let csp = header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        if path.starts_with("/docs") {
            assert!(
                !csp.contains("default-src 'none'"),
                "{what}: the viewer needs its scripts"
            );
        } else {
            assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
        }
        if path.starts_with("/v1/") {
            assert_eq!(
                header("cache-control").as_deref(),
                Some("no-store"),
                "{what}"
            );
        }
        // Plain HTTP: no HSTS (it would be ignored, and is wrong for an http:// origin).
        assert_eq!(header("strict-transport-security"), None, "{what}");
    }
}

#[tokio::test]
async fn a_key_sent_in_the_wrong_place_is_never_echoed() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let key = door.reader_key.clone();
    let secret = &key["lrk_".len()..];
    for response in [
        // In a path.
        app.get(&format!("/v1/{key}"), &app.admin_token).await,
        // As a value serde cannot read as the field's type.
        app.post("/v1/unlock", &key, &json!({"card_id": "ADA", "seq": key}))
            .await,
        app.post(
            "/v1/doors",
            &app.admin_token,
            &json!({"site": "hq", "name": 1, key.as_str(): 1}),
        )
        .await,
    ] {
        let status = response.status();
        let text = response.text().await.expect("body");
        assert!(status.is_client_error(), "{status}: {text}");
        assert!(!text.contains(secret), "the key came back: {text}");
    }
    assert_eq!(
        app.get("/healthz", "").await.status(),
        StatusCode::OK,
        "still serving"
    );
}

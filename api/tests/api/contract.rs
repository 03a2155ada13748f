//! The OpenAPI document tells the truth: Schemathesis (PyPI) generates requests from the
//! served `/openapi.json` — valid and invalid ones, for every operation — and runs all its
//! checks on the answers: no 5xx, every status and body as documented, every request the
//! document calls valid accepted and every invalid one refused, 405 with `Allow` for other
//! methods. Once as a card reader, once as an administrator.
//!
//! `GET /v1/events/stream` is left out: it answers an endless Server-Sent Events stream,
//! not one response to check (its statuses and messages have tests of their own in the
//! `stack` tests' `feed` module).

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use latch_api::ApiConfig;
use latch_api::openapi::ApiDoc;
use latch_core::nats::NatsConfig;
use latch_testkit::NatsServer;
use utoipa::OpenApi;

use crate::helpers::*;

/// Examples per operation and phase: a few minutes for both runs on two cores.
const EXAMPLES: &str = "100";

/// The operation Schemathesis cannot check (an endless stream).
const STREAM: &str = "/v1/events/stream";

fn schemathesis() -> String {
    std::env::var("LATCH_SCHEMATHESIS").unwrap_or_else(|_| {
        panic!(
            "LATCH_SCHEMATHESIS is not set: run the tests with ./deploy/local/test.sh, which \\
             installs Schemathesis"
        )
    })
}

/// Runs Schemathesis against `app` with `credential`; fails with its report.
async fn run_as(app: &TestApp, credential: &str) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let report = tempfile::tempdir().unwrap();
    let schema = format!("{}/openapi.json", app.base);
    let authorization = format!("Authorization: Bearer {credential}");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis())
            .arg("--no-color")
            .arg("--config-file")
            .arg(&config)
            .args([
                "run",
                &schema,
                "--checks",
                "all",
                "--max-examples",
                EXAMPLES,
                "--exclude-path",
                STREAM,
            ])
            // One worker thread: with two, Python 3.11's `ast` module (which Hypothesis
            // calls to describe its filters) can fail with "AST constructor recursion depth
            // mismatch" when both threads parse at once (CPython issue 106905), a crash of
            // the tool reported as an error of the API operation it was testing.
            .args([
                "--workers",
                "1",
                "--no-shrink",
                "--output-truncate",
                "false",
            ])
            // Hypothesis's health checks judge how efficiently requests are generated
            // (too slow, too many draws filtered out), not the API; on a busy two-core
            // machine they trip, and reporting one has crashed Hypothesis itself.
            .args(["--suppress-health-check", "all"])
            .args(["-H", &authorization])
            .current_dir(report.path())
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let operations: usize = ApiDoc::openapi()
        .paths
        .paths
        .iter()
        .filter(|(path, _)| path.as_str() != STREAM)
        .map(|(_, item)| {
            [&item.get, &item.post, &item.put, &item.patch, &item.delete]
                .into_iter()
                .filter(|operation| operation.is_some())
                .count()
        })
        .sum();
    assert!(
        stdout.contains(&format!("Tested: {operations}")),
        "not all {operations} operations were tested:\n{stdout}"
    );
}

/// A site with something in it, so that valid requests can succeed, and the event feed's
/// stream (empty: pages read from it answer empty).
async fn seeded() -> (TestApp, TestDoor, NatsServer) {
    let nats = NatsServer::start();
    let config = NatsConfig::for_url(nats.url());
    let client = async_nats::connect(nats.url()).await.unwrap();
    latch_core::nats::ensure_events_stream(&async_nats::jetstream::new(client), &config)
        .await
        .unwrap();
    let app = spawn_app_configured(
        64 * 1024,
        ApiConfig {
            nats: Some(config),
            ..unlimited()
        },
    )
    .await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("04A2B9C1D2").await;
    app.grant(holder, door.id).await;
    let check_in = app
        .post(
            "/v1/check-ins",
            &door.reader_key,
            &json!({"card_id": "04A2B9C1D2"}),
        )
        .await;
    expect_status(check_in, StatusCode::CREATED).await;
    (app, door, nats)
}

#[tokio::test]
async fn the_document_holds_for_a_card_reader() {
    let (app, door, _nats) = seeded().await;
    run_as(&app, &door.reader_key).await;
}

#[tokio::test]
async fn the_document_holds_for_an_administrator() {
    let (app, _, _nats) = seeded().await;
    run_as(&app, &app.admin_token).await;
}

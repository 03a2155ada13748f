//! The event stream in a real browser: Debian's Chromium, driven through chromedriver
//! (WebDriver), runs the page's own `EventSource` against `latch api` — the client browsers
//! really use, with its own reconnection and `Last-Event-ID` — through an API restart.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use latch_testkit::process::{Proc, get_text, start_listening};
use latch_testkit::{NatsServer, wait_until};
use serde_json::{Value, json};

use crate::feed::{Site, assert_in_order_once};
use crate::harness::{Stack, token};

const DEADLINE: Duration = Duration::from_secs(60);

fn binary(variable: &str, fallback: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        if Path::new(fallback).exists() {
            fallback.to_owned()
        } else {
            panic!(
                "{variable} is not set and {fallback} is missing: run the tests with \
                 ./deploy/local/test.sh, which installs Debian's chromium and chromium-driver"
            )
        }
    })
}

/// `latch api` on `port`, its feed reading `nats`.
fn api_command(stack: &Stack, nats: &NatsServer, port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latch"));
    command
        .arg("api")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LATCH_LOG", "info")
        .env("LATCH_DATABASE_URL", stack.db.app_url().expose())
        .env("LATCH_DATABASE_POOL_SIZE", "4")
        .env("LATCH_NATS_URL", nats.url())
        .env("LATCH_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("LATCH_HTTP_WORKERS", "2")
        // Quick reconnection, so the test does not wait on the default 2 s.
        .env("LATCH_FEED_RETRY", "250ms");
    command
}

/// A headless Chromium session.
pub(crate) async fn browser(dir: &Path, http: &reqwest::Client) -> (Proc, Client) {
    let driver_bin = binary("CHROMEDRIVER_BIN", "/usr/bin/chromedriver");
    let chromium = binary("CHROMIUM_BIN", "/usr/bin/chromium");
    let driver = start_listening(http, "chromedriver", dir, "/status", |port| {
        let mut command = Command::new(&driver_bin);
        command.arg(format!("--port={port}"));
        command
    })
    .await;
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--no-first-run",
                     format!("--user-data-dir={}", dir.join("profile").display())],
        },
    });
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session");
    (driver.proc, client)
}

/// What the page's EventSource has received: `[{id, event}]`.
async fn seen(client: &Client) -> Vec<Value> {
    client
        .execute("return window.seen;", vec![])
        .await
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browsers_event_source_resumes_after_the_api_restarts() {
    let stack = Stack::new().await;
    let nats = NatsServer::start();
    stack.relay(&nats).await;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let hq = token(&stack.db, "integrator", &["events:read"], Some(&["hq"])).await;

    let api = start_listening(&http, "api", dir.path(), "/readyz", |port| {
        api_command(&stack, &nats, port)
    })
    .await;
    let base = format!("http://127.0.0.1:{}", api.port);
    let (_driver, client) = browser(dir.path(), &http).await;

    // A page of the API's own origin (its API viewer: JSON answers forbid scripts with
    // `default-src 'none'`): log in (the token goes in a header, once, and becomes an
    // HttpOnly cookie), then follow the stream from the start.
    client.goto(&format!("{base}/docs/")).await.unwrap();
    let status = client
        .execute_async(
            "const [token, done] = arguments;
             fetch('/v1/sessions', {method: 'POST', headers: {Authorization: 'Bearer ' + token}})
               .then(r => done(r.status), e => done(String(e)));",
            vec![json!(hq)],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(201));
    let cookie_visible = client
        .execute("return document.cookie.includes('latch_session');", vec![])
        .await
        .unwrap();
    assert_eq!(
        cookie_visible,
        json!(false),
        "the session cookie is HttpOnly"
    );
    client
        .execute(
            "window.seen = []; window.drops = 0;
             const source = new EventSource('/v1/events/stream?after=0');
             source.onmessage = e => window.seen.push({id: e.lastEventId, event: JSON.parse(e.data)});
             source.onerror = () => { window.drops += 1; };",
            vec![],
        )
        .await
        .unwrap();

    let site = Site::new();
    site.record(&stack, 0, 200).await;
    // hq's half of the events (doors 0 and 1).
    wait_until(
        "the browser to receive hq's first 100 events",
        DEADLINE,
        || async { (seen(&client).await.len() >= 100).then_some(()) },
    )
    .await;

    // The API is killed; events go on being recorded; a new API comes up on the same
    // address. The browser reconnects by itself, sending its Last-Event-ID.
    api.proc.kill();
    site.record(&stack, 200, 400).await;
    let restarted = Proc::spawn(
        "api (restarted)",
        api_command(&stack, &nats, api.port),
        dir.path().join("api-restarted.log"),
    );
    wait_until("the restarted API", DEADLINE, || async {
        get_text(&http, &format!("{base}/readyz")).await.map(|_| ())
    })
    .await;
    let received = wait_until(
        "the browser to receive all 200 hq events",
        DEADLINE,
        || async {
            let seen = seen(&client).await;
            (seen.len() >= 200).then_some(seen)
        },
    )
    .await;
    assert_eq!(received.len(), 200, "{}", restarted.tail());
    let drops = client
        .execute("return window.drops;", vec![])
        .await
        .unwrap();
    assert!(drops.as_u64().unwrap() >= 1, "the browser saw the API go");

    let events: Vec<Value> = received
        .iter()
        .map(|seen| {
            assert_eq!(
                seen["id"], seen["event"]["cursor"],
                "the SSE id is the cursor"
            );
            seen["event"].clone()
        })
        .collect();
    assert!(events.iter().all(|e| e["site"] == "hq"));
    assert_in_order_once(&events);
    let recorded = stack
        .count("SELECT count(*) FROM actions WHERE site = 'hq'")
        .await;
    assert_eq!(recorded, 200);
    client.close().await.unwrap();
}

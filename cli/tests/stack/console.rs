//! The operator console in a real browser: Debian's Chromium through chromedriver, against
//! an API, relay, worker and the simulated sinks. Screenshots of each page are written to
//! `target/tmp/console/` (the ones in `docs/console/` come from there).

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, Locator};
use latch_sim::{Faults, Reject, SimConfig, Simulator, SinkFaults};
use latch_testkit::{NatsServer, wait_until};
use latch_worker::config::RetryConfig;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::browser::browser;
use crate::harness::{Api, Stack, first_admin};

const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `script` in the page; answers what it returns.
async fn js(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap()
}

/// Waits until `script` returns `true` in the page.
async fn until(client: &Client, what: &str, script: &str) {
    wait_until(what, DEADLINE, || async {
        (js(client, script).await == json!(true)).then_some(())
    })
    .await;
}

/// Waits until the dead letters page's summary of a replay or dry run says `text`.
async fn summary_says(client: &Client, text: &str) {
    let script = format!(
        "return (document.getElementById('dl-summary') || {{}}).textContent === {};",
        json!(text)
    );
    until(client, text, &script).await;
}

/// Waits until an element matching `css` is on the page.
async fn present(client: &Client, what: &str, css: &str) {
    until(
        client,
        what,
        &format!("return !!document.querySelector({});", json!(css)),
    )
    .await;
}

/// Opens the console's page `route` (`live`, `doors?…`, …).
async fn open_page(client: &Client, base: &str, route: &str) {
    client
        .goto(&format!("{base}/console/#/{route}"))
        .await
        .unwrap();
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Runs `fetch` from the page and answers the status.
async fn fetch_status(client: &Client, call: &str) -> Value {
    client
        .execute_async(
            &format!(
                "const done = arguments[0]; {call}.then(r => done(r.status), e => done(String(e)));"
            ),
            vec![],
        )
        .await
        .unwrap()
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

async fn log_in(client: &Client, base: &str, token: &str) {
    client.goto(&format!("{base}/console/")).await.unwrap();
    until(
        client,
        "the login form",
        "return !!document.getElementById('token');",
    )
    .await;
    client
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    click(client, "#login button[type=submit]").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_live_events_alarms_roll_call_and_replays_dead_letters() {
    let stack = Stack::new().await;
    let nats = NatsServer::start();
    let bob_card = "BOB";
    // The legacy system refuses Bob's punches (his events are dead-lettered there); the
    // webhook sink refuses grant creations (one is revoked later: a stale replay).
    let sim = Simulator::start(SimConfig {
        faults: Faults {
            webhooks: SinkFaults::rejecting(Reject {
                kinds: vec!["grant_created".into()],
                ..Reject::default()
            }),
            ..Faults::none()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    stack.relay(&nats).await;
    stack
        .worker(
            &nats,
            &sim,
            |sink| sink.max_attempts = 2,
            RetryConfig {
                base: Duration::from_millis(20),
                max: Duration::from_millis(100),
            },
        )
        .await;
    // Webhook endpoints may be on loopback here (the simulator's subscriber).
    let api: Api = stack.api_with(2, |config| {
        config.nats = Some(latch_core::nats::NatsConfig::for_url(nats.url()));
        config.outbound = latch_core::outbound::Policy::local();
    });
    let admin = first_admin(&stack.db, "guard desk").await;
    let (door, reader_key) = api.door_with_reader(&admin, "hq", "Main").await;
    let ada = api
        .created(
            &admin,
            "/v1/holders",
            json!({"card_id": "ADA", "name": "Ada Lovelace"}),
        )
        .await;
    let bob = api
        .created(
            &admin,
            "/v1/holders",
            json!({"card_id": bob_card, "name": "Bob"}),
        )
        .await;
    let bob_id = bob["id"].as_str().unwrap().to_owned();
    sim.set_faults(Faults {
        legacy: SinkFaults::rejecting(Reject {
            holders: vec![bob_id.clone()],
            ..Reject::default()
        }),
        webhooks: SinkFaults::rejecting(Reject {
            kinds: vec!["grant_created".into()],
            ..Reject::default()
        }),
        ..Faults::none()
    })
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (_driver, client) = browser(dir.path(), &http).await;
    client.set_window_size(1280, 900).await.unwrap();

    // A reader key cannot log in; the page says why.
    log_in(&client, &api.base, &reader_key).await;
    until(
        &client,
        "the refusal",
        "return document.getElementById('login-error').textContent.includes('reader');",
    )
    .await;
    shot(&client, "login").await;
    log_in(&client, &api.base, &admin).await;
    until(
        &client,
        "the Live page",
        "return !document.getElementById('nav').hidden && !!document.getElementById('events');",
    )
    .await;
    until(
        &client,
        "the stream",
        "return document.getElementById('stream-status').textContent === 'live';",
    )
    .await;
    let token_in_page = js(
        &client,
        "return document.cookie + location.href + sessionStorage.getItem('latch.csrf');",
    )
    .await;
    assert!(
        !token_in_page.as_str().unwrap().contains(&admin),
        "the token is kept nowhere the page can read"
    );

    // A check-in appears on Live.
    let checked_in = api
        .post(&reader_key, "/v1/check-ins", json!({"card_id": "ADA"}))
        .await;
    assert_eq!(checked_in.status(), 201);
    let action: Value = checked_in.json().await.unwrap();
    until(
        &client,
        "the check-in on Live",
        &format!(
            "return !!document.querySelector('#events tr[data-id=\"{}\"]');",
            action["action_id"].as_str().unwrap()
        ),
    )
    .await;

    // A forced door stands out until restored.
    let alarm = |restored: bool| {
        api.post(
            &reader_key,
            "/v1/doors/alarm",
            json!({"alarm": "forced_open", "restored": restored}),
        )
    };
    assert_eq!(alarm(false).await.status(), 201);
    until(
        &client,
        "the alarm listed",
        "return !!document.querySelector('#alarms tr.alarm[data-kind=door_forced_open]')
                && !!document.querySelector('#events tr.alarm[data-kind=door_forced_open]');",
    )
    .await;
    shot(&client, "live").await;
    assert_eq!(alarm(true).await.status(), 201);
    until(
        &client,
        "the alarm cleared",
        "return !document.querySelector('#alarms tr[data-kind=door_forced_open]');",
    )
    .await;

    // Doors and readers.
    open_page(&client, &api.base, "doors").await;
    until(
        &client,
        "the readers",
        "return document.querySelectorAll('#readers tr').length === 1;",
    )
    .await;
    shot(&client, "doors").await;

    // Roll-call: Ada is on site; the marshal marks her safe; the CSV matches the database.
    open_page(&client, &api.base, "roll-call?site=hq").await;
    let ada_row = format!(
        "#people tr[data-holder=\"{}\"]",
        ada["id"].as_str().unwrap()
    );
    present(&client, "Ada on the roll-call", &ada_row).await;
    click(&client, &format!("{ada_row} button.mark-safe")).await;
    until(
        &client,
        "Ada marked safe",
        &format!("return document.querySelector('{ada_row}').className === 'safe';"),
    )
    .await;
    // Bob checks in (his punch is refused by the legacy system: a dead letter) and the
    // roll-call follows by itself.
    let bob_in = api
        .post(&reader_key, "/v1/check-ins", json!({"card_id": bob_card}))
        .await;
    assert_eq!(bob_in.status(), 201);
    let bob_event: Value = bob_in.json().await.unwrap();
    let bob_event = bob_event["action_id"].as_str().unwrap().to_owned();
    until(
        &client,
        "Bob on the roll-call",
        "return document.querySelectorAll('#people tr').length === 2;",
    )
    .await;
    shot(&client, "roll-call").await;
    let csv = client
        .execute_async(
            "const done = arguments[0];
             fetch('/v1/sites/hq/presence.csv').then(r => r.text()).then(done, e => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    let csv = csv.as_str().unwrap().to_owned();
    let rows = stack
        .db
        .owner()
        .await
        .query(
            "SELECT p.holder_id, p.safe_at >= p.as_of AS safe FROM presence p
             JOIN holders h ON h.id = p.holder_id WHERE p.site = 'hq' AND p.present ORDER BY h.name",
            &[],
        )
        .await
        .unwrap();
    let lines: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(lines.len(), rows.len(), "{csv}");
    for (line, row) in lines.iter().zip(&rows) {
        let holder: Uuid = row.get(0);
        let safe: Option<bool> = row.get(1);
        assert!(line.starts_with(&holder.to_string()), "{line}");
        assert_eq!(!line.ends_with(','), safe == Some(true), "{line}");
    }

    // A grant created and revoked while the webhook sink refused its creation: replaying
    // that creation would be stale.
    let grant = api
        .created(
            &admin,
            "/v1/grants",
            json!({"holder_id": ada["id"], "door_id": door["id"]}),
        )
        .await;
    let revoked = api
        .http
        .delete(format!(
            "{}/v1/grants/{}",
            api.base,
            grant["id"].as_str().unwrap()
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());

    // Dead letters: Bob's punch and the grant; a dry run first, then the replay.
    open_page(&client, &api.base, "dead-letters").await;
    until(
        &client,
        "both dead letters",
        &format!(
            "return !!document.querySelector('#dead-letters tr[data-event=\"{bob_event}\"]')
                    && document.querySelectorAll('#dead-letters tr[data-event]').length === 2;"
        ),
    )
    .await;
    sim.set_faults(Faults::none()).await.unwrap();
    click(&client, "#dl-dry-run").await;
    summary_says(
        &client,
        "1 would be replayed, 1 refused by the stale-replay guard",
    )
    .await;
    let refusal = js(
        &client,
        "return document.querySelector('tr.refused').textContent;",
    )
    .await;
    assert!(refusal.as_str().unwrap().contains("revoked"), "{refusal}");
    shot(&client, "dead-letters").await;
    assert_eq!(
        sim.stats().await.legacy.effects,
        1,
        "only Ada's punch so far"
    );
    click(&client, "#dl-replay").await;
    summary_says(&client, "1 replayed, 1 refused by the stale-replay guard").await;
    wait_until("Bob's punch takes effect", DEADLINE, || async {
        let stats = sim.stats().await;
        stats
            .legacy
            .events
            .get(&bob_event)
            .is_some_and(|e| e.applied)
            .then_some(())
    })
    .await;
    assert_eq!(sim.stats().await.legacy.effects, 2, "one effect each");

    // Pipeline and webhooks pages render.
    open_page(&client, &api.base, "pipeline").await;
    until(
        &client,
        "the pipeline",
        "return document.querySelectorAll('#pipeline > div').length > 5;",
    )
    .await;
    shot(&client, "pipeline").await;

    // Webhooks: an endpoint, its stats and attempts; its secret rotated from the page.
    let endpoint = api
        .created(
            &admin,
            "/v1/webhooks/endpoints",
            json!({"url": sim.subscriber_url("hr"), "description": "HR system", "kinds": ["check_in", "check_out"]}),
        )
        .await;
    open_page(&client, &api.base, "webhooks").await;
    let row = format!(
        "#endpoints tr[data-endpoint=\"{}\"]",
        endpoint["id"].as_str().unwrap()
    );
    present(&client, "the endpoint", &row).await;
    click(&client, &format!("{row} button")).await;
    until(
        &client,
        "its stats",
        "return !!document.querySelector('#wh-detail .numbers');",
    )
    .await;
    click(&client, "#wh-rotate").await;
    client.accept_alert().await.unwrap();
    until(
        &client,
        "the new secret",
        "return !document.getElementById('wh-secret').hidden
                && document.getElementById('wh-secret').textContent.includes('whsec_');",
    )
    .await;
    shot(&client, "webhooks").await;
    assert_eq!(
        stack
            .count("SELECT count(*) FROM actions WHERE kind = 'webhook_secret_rotated'")
            .await,
        1,
        "rotated once, recorded"
    );

    // A reader disabled from the page (after its confirmation).
    open_page(&client, &api.base, "doors").await;
    until(
        &client,
        "the reader",
        "return !!document.querySelector('#readers button.danger');",
    )
    .await;
    click(&client, "#readers button.danger").await;
    client.accept_alert().await.unwrap();
    until(
        &client,
        "the reader disabled",
        "return document.querySelector('#readers tr').textContent.includes('disabled');",
    )
    .await;
    assert_eq!(
        api.post(&reader_key, "/v1/check-ins", json!({"card_id": "ADA"}))
            .await
            .status(),
        401,
        "its key no longer works"
    );

    // A change without the CSRF token is refused, even from the console's own page.
    let status = fetch_status(
        &client,
        "fetch('/v1/dead-letters:purge', {method: 'POST', headers: {'content-type': 'application/json'}, body: '{\"all\": true}'})",
    )
    .await;
    assert_eq!(status, json!(403));

    // An expired session goes back to the login.
    stack
        .db
        .owner()
        .await
        .execute(
            "UPDATE sessions SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    // (Another page than the one shown: the console asks the API as it opens it.)
    open_page(&client, &api.base, "pipeline").await;
    until(
        &client,
        "the login again",
        "return !!document.getElementById('token')
                && document.getElementById('login-error').textContent.includes('ended');",
    )
    .await;

    // An integrator's token reads what its scopes allow; the rest the API refuses, and the
    // page says so. On a tablet's width.
    client.set_window_size(820, 1180).await.unwrap();
    let integrator = crate::harness::token(
        &stack.db,
        "front desk",
        &["events:read", "registry:read"],
        Some(&["hq"]),
    )
    .await;
    log_in(&client, &api.base, &integrator).await;
    until(
        &client,
        "the stream",
        "return (document.getElementById('stream-status') || {}).textContent === 'live';",
    )
    .await;
    open_page(&client, &api.base, "roll-call?site=hq").await;
    present(&client, "the roll-call", "#people tr[data-holder]").await;
    shot(&client, "roll-call-tablet").await;
    open_page(&client, &api.base, "dead-letters").await;
    until(
        &client,
        "the refusal",
        "return document.getElementById('notice').textContent.includes('admin');",
    )
    .await;
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_content_security_policy() {
    let stack = Stack::new().await;
    let api = stack.api(1);
    for (path, kind) in [
        ("/console/", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let response = api
            .http
            .get(format!("{}{path}", api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
    // Only its own three files: any other name under /console/ is the console's 404.
    let missing = api
        .http
        .get(format!("{}/console/secrets.env", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.text().await.unwrap(), "no such file in the console");
    let page = api
        .http
        .get(format!("{}/console/", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains("<script>") && !page.contains(" style="),
        "nothing inline"
    );
}

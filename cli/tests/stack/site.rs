//! `latch doors|holders|readers|grants` against a real API: a site run from the shell.

use std::process::Output;

use uuid::Uuid;

use crate::harness::{Stack, first_admin};

/// The API in this process and its first administrator.
struct Site {
    stack: Stack,
    api: String,
    token: String,
}

impl Site {
    async fn start() -> Site {
        let stack = Stack::new().await;
        let api = stack.api(1).base;
        let token = first_admin(&stack.db, "shell").await;
        Site { stack, api, token }
    }

    async fn latch(&self, args: &[&str]) -> Output {
        self.latch_with(args, &self.token, &self.api).await
    }

    async fn latch_with(&self, args: &[&str], token: &str, api: &str) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_latch"))
            .args(args)
            .env("LATCH_API_URL", api)
            .env("LATCH_ADMIN_TOKEN", token)
            .output()
            .await
            .unwrap()
    }

    /// `latch admins ...` with `login`'s database URL as LATCH_MIGRATION_DATABASE_URL.
    async fn admins(&self, args: &[&str], login: &str) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_latch"))
            .arg("admins")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LATCH_MIGRATION_DATABASE_URL", login)
            .output()
            .await
            .unwrap()
    }
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The id printed after `word` ("door 0193...").
fn id_after(text: &str, word: &str) -> String {
    text.split_whitespace()
        .skip_while(|w| *w != word)
        .nth(1)
        .unwrap_or_else(|| panic!("no {word} id in {text:?}"))
        .to_owned()
}

#[tokio::test]
async fn a_site_is_set_up_and_changed_from_the_shell() {
    let site = Site::start().await;
    let door = id_after(
        &stdout(
            &site
                .latch(&["doors", "add", "--site", "hq", "--name", "Lobby"])
                .await,
        ),
        "door",
    );
    let holder = id_after(
        &stdout(
            &site
                .latch(&["holders", "add", "--card", "C-1", "--name", "Ada"])
                .await,
        ),
        "holder",
    );
    let reader_out = stdout(
        &site
            .latch(&[
                "readers",
                "add",
                "--door",
                &door,
                "--name",
                "Lobby in",
                "--offline-after",
                "10m",
            ])
            .await,
    );
    assert!(
        reader_out.contains("key (shown once): lrk_"),
        "{reader_out}"
    );
    let grant = id_after(
        &stdout(
            &site
                .latch(&[
                    "grants",
                    "add",
                    "--holder",
                    &holder,
                    "--door",
                    &door,
                    "--until",
                    "2099-01-01T00:00:00Z",
                ])
                .await,
        ),
        "grant",
    );

    let doors = stdout(&site.latch(&["doors", "list"]).await);
    assert!(
        doors.starts_with("ID") && doors.contains("Lobby"),
        "{doors}"
    );
    let holders = stdout(&site.latch(&["holders", "list", "--json"]).await);
    let holders: serde_json::Value = serde_json::from_str(&holders).unwrap();
    assert_eq!(holders[0]["card_id"], "C-1");
    let grants = stdout(&site.latch(&["grants", "list", "--holder", &holder]).await);
    assert!(
        grants.contains(&grant) && grants.contains("2099-01-01"),
        "{grants}"
    );

    stdout(&site.latch(&["grants", "revoke", &grant]).await);
    stdout(&site.latch(&["holders", "deactivate", &holder]).await);
    let reader_id = serde_json::from_str::<serde_json::Value>(&stdout(
        &site.latch(&["readers", "list", "--json"]).await,
    ))
    .unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rotated = stdout(
        &site
            .latch(&["readers", "rotate-key", &reader_id, "--grace", "1h"])
            .await,
    );
    assert!(
        rotated.contains("the old one works until") && rotated.contains("key (shown once): lrk_"),
        "{rotated}"
    );
    stdout(&site.latch(&["readers", "disable", &reader_id]).await);

    let readers: serde_json::Value =
        serde_json::from_str(&stdout(&site.latch(&["readers", "list", "--json"]).await)).unwrap();
    assert_eq!(readers[0]["offline_after_secs"], 600);

    // Every change is in the registry with its author.
    let kinds: Vec<String> = site
        .stack
        .db
        .owner()
        .await
        .query(
            "SELECT kind FROM actions WHERE actor_id IS NOT NULL ORDER BY recorded_at, id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        kinds,
        [
            "door_created",
            "holder_created",
            "reader_enrolled",
            "grant_created",
            "grant_revoked",
            "holder_updated",
            "reader_key_rotated",
            "reader_disabled"
        ]
    );
}

#[tokio::test]
async fn shell_errors_are_clear_and_change_nothing() {
    let site = Site::start().await;
    let refused = site
        .latch(&["grants", "revoke", &Uuid::now_v7().to_string()])
        .await;
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("404 grant_not_found"), "{message}");

    let wrong = site
        .latch_with(&["doors", "list"], "lat_wrong", &site.api)
        .await;
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("401 unauthorized"));

    let down = site
        .latch_with(&["doors", "list"], &site.token, "http://127.0.0.1:1")
        .await;
    assert_eq!(down.status.code(), Some(1));
    let message = String::from_utf8_lossy(&down.stderr);
    assert!(
        message.contains("LATCH_API_URL") && !message.contains("panicked"),
        "{message}"
    );

    let usage = site
        .latch(&["grants", "add", "--holder", "not-a-uuid"])
        .await;
    assert_eq!(
        usage.status.code(),
        Some(2),
        "bad usage is clap's exit code 2"
    );
    assert_eq!(site.stack.count("SELECT count(*) FROM actions").await, 0);
}

#[tokio::test]
async fn administrators_are_made_listed_and_revoked_by_the_owner_only() {
    let site = Site::start().await;
    let owner = site.stack.db.owner_url().expose().clone();
    let admins = || site.stack.count("SELECT count(*) FROM admins");
    let before = admins().await;

    // The API's login, and a blank name, are refused with a clear message; nothing changes.
    let app = site.stack.db.app_url().expose().clone();
    let refused = site.admins(&["add", "--name", "Night desk"], &app).await;
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("LATCH_MIGRATION_DATABASE_URL"),
        "{message}"
    );
    let blank = site.admins(&["add", "--name", " "], &owner).await;
    assert_eq!(blank.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&blank.stderr).contains("--name"));
    assert_eq!(admins().await, before);

    // The owner makes one; its token works at once and is shown only here.
    let added = stdout(&site.admins(&["add", "--name", "Night desk"], &owner).await);
    let id = id_after(&added, "token");
    let token = added
        .lines()
        .find_map(|line| line.strip_prefix("token (shown once): "))
        .unwrap_or_else(|| panic!("no token in {added:?}"))
        .to_owned();
    stdout(&site.latch_with(&["doors", "list"], &token, &site.api).await);
    let listed = stdout(&site.admins(&["list"], &owner).await);
    let line = listed
        .lines()
        .find(|line| line.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed: {listed}"));
    assert!(
        line.contains("Night desk") && line.contains(" active ") && line.contains(" admin "),
        "{line}"
    );
    assert!(!listed.contains(&token), "a token is never shown again");

    // Revoked: the token stops working, the list says so, a second revoke is an error.
    stdout(&site.admins(&["revoke", &id], &owner).await);
    let refused = site.latch_with(&["doors", "list"], &token, &site.api).await;
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401 unauthorized"));
    let listed = stdout(&site.admins(&["list"], &owner).await);
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with(&id) && line.contains(" revoked ")),
        "{listed}"
    );
    let again = site.admins(&["revoke", &id], &owner).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no active admin"));

    // A narrow token: read-only, one site, expiring. Bad scopes, sites and expiries are
    // refused with nothing made.
    let before = admins().await;
    for (args, error) in [
        (&["--scope", "doors"][..], "unknown scope"),
        (&["--sites", "HQ!"][..], "--sites"),
        (&["--expires", "yesterday"][..], "--expires"),
        (
            &["--expires", "2020-01-01T00:00:00Z"][..],
            "not in the future",
        ),
    ] {
        let mut full = vec!["add", "--name", "Bad"];
        full.extend_from_slice(args);
        let refused = site.admins(&full, &owner).await;
        assert!(!refused.status.success(), "{args:?}");
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(message.contains(error), "{args:?}: {message}");
    }
    assert_eq!(admins().await, before);
    let added = stdout(
        &site
            .admins(
                &[
                    "add",
                    "--name",
                    "Lobby screen",
                    "--scope",
                    "sites:read",
                    "--sites",
                    "hq,north",
                    "--expires",
                    "90d",
                ],
                &owner,
            )
            .await,
    );
    assert!(
        added.contains("scopes sites:read, sites hq,north, expires 20"),
        "{added}"
    );
    let narrow = added
        .lines()
        .find_map(|line| line.strip_prefix("token (shown once): "))
        .unwrap_or_else(|| panic!("no token in {added:?}"))
        .to_owned();
    stdout(
        &site
            .latch_with(&["doors", "list"], &narrow, &site.api)
            .await,
    );
    let refused = site
        .latch_with(
            &["doors", "add", "--site", "hq", "--name", "X"],
            &narrow,
            &site.api,
        )
        .await;
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("403 insufficient_scope"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let listed = stdout(&site.admins(&["list"], &owner).await);
    assert!(
        listed.lines().any(|line| line.contains("Lobby screen")
            && line.contains("sites:read")
            && line.contains("hq,north")),
        "{listed}"
    );

    // Every change is in the registry.
    let recorded = site
        .stack
        .count("SELECT count(*) FROM actions WHERE kind IN ('admin_created', 'admin_revoked')")
        .await;
    assert_eq!(recorded, 3);
}

/// `latch webhooks` against an API whose endpoints may be on loopback, with its event feed,
/// the relay and an endpoint worker in this process delivering to the simulator's named
/// subscribers (which check every signature).
struct Hooked {
    site: Site,
    sim: latch_sim::Simulator,
    _nats: latch_testkit::NatsServer,
}

impl Hooked {
    async fn start() -> Hooked {
        let stack = Stack::new().await;
        let nats = latch_testkit::NatsServer::start();
        let sim = latch_sim::Simulator::start(latch_sim::SimConfig::default())
            .await
            .unwrap();
        let api = stack
            .api_with(2, |config| {
                config.outbound = latch_core::outbound::Policy::local();
                config.nats = Some(latch_core::nats::NatsConfig::for_url(nats.url()));
            })
            .base;
        stack.relay(&nats).await;
        stack
            .endpoint_worker(
                &nats,
                latch_worker::endpoints::EndpointsConfig {
                    refresh: std::time::Duration::from_millis(200),
                    ..latch_worker::endpoints::EndpointsConfig::with_policy(
                        latch_core::outbound::Policy::local(),
                    )
                },
            )
            .await;
        let token = first_admin(&stack.db, "shell").await;
        Hooked {
            site: Site { stack, api, token },
            sim,
            _nats: nats,
        }
    }
}

const HOOKS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// The rest of the line that starts with `prefix`.
fn after_prefix(text: &str, prefix: &str) -> String {
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {text:?}"))
        .to_owned()
}

/// The value of a `  name:   value` line of `latch webhooks show|stats`.
fn field(text: &str, name: &str) -> String {
    after_prefix(text, &format!("  {name}:")).trim().to_owned()
}

fn failed(output: &Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_webhook_endpoint_is_managed_and_watched_from_the_shell() {
    let h = Hooked::start().await;
    let site = &h.site;
    let url = h.sim.subscriber_url("crm");

    // Created: the endpoint and its secret, once.
    let created = stdout(
        &site
            .latch(&[
                "webhooks",
                "create",
                "--url",
                &url,
                "--description",
                "CRM",
                "--kinds",
                "holder_created",
                "--rate",
                "20",
            ])
            .await,
    );
    let id = id_after(&created, "endpoint");
    let secret = after_prefix(&created, "secret (shown once): ");
    assert!(
        created.starts_with(&format!("endpoint {id} created\n"))
            && secret.starts_with("whsec_")
            && created.contains("shown only this once"),
        "{created}"
    );
    assert_eq!(field(&created, "kinds"), "holder_created");
    assert_eq!(field(&created, "sites"), "all");
    assert_eq!(field(&created, "rate"), "20/s");
    h.sim.put_subscriber("crm", &[&secret]).unwrap();

    let listed = stdout(&site.latch(&["webhooks", "list"]).await);
    assert!(listed.starts_with("ID "), "{listed}");
    let line = after_prefix(&listed, &id);
    assert!(
        line.contains(&url)
            && line.contains(" holder_created ")
            && line.contains(" all ")
            && line.contains(" 20/s ")
            && line.contains(" enabled"),
        "{listed}"
    );
    assert!(!listed.contains(&secret), "a secret is never shown again");

    // An event of its kinds reaches it, signed with the secret the shell printed; the
    // attempt and the figures are there to see.
    stdout(
        &site
            .latch(&["holders", "add", "--card", "C-1", "--name", "Ada"])
            .await,
    );
    latch_testkit::wait_until(
        "the holder's creation is delivered",
        HOOKS_DEADLINE,
        || async { (h.sim.subscriber_stats("crm").unwrap().counters.applied == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        h.sim
            .subscriber_stats("crm")
            .unwrap()
            .counters
            .rejected_signature,
        0
    );
    let attempts = latch_testkit::wait_until("the attempt is recorded", HOOKS_DEADLINE, || async {
        let out = stdout(&site.latch(&["webhooks", "attempts", &id]).await);
        out.contains(" delivered ").then_some(out)
    })
    .await;
    assert!(attempts.starts_with("TIME (UTC) "), "{attempts}");
    let row = attempts.lines().nth(1).unwrap();
    assert!(
        row.contains(" delivered ") && row.contains(" 200 "),
        "{attempts}"
    );
    assert!(
        attempts.ends_with("\n1 attempt(s), newest first\n"),
        "{attempts}"
    );
    let stats = latch_testkit::wait_until("the delivery is counted", HOOKS_DEADLINE, || async {
        let out = stdout(&site.latch(&["webhooks", "stats", &id]).await);
        (field(&out, "delivered") == "1 call(s)").then_some(out)
    })
    .await;
    assert_eq!(field(&stats, "failed"), "0 call(s)", "{stats}");
    assert_eq!(field(&stats, "breaker"), "closed", "{stats}");
    assert_eq!(field(&stats, "failing since"), "not failing", "{stats}");
    assert!(
        field(&stats, "dead-lettered").starts_with("0 event(s)"),
        "{stats}"
    );

    // Many older attempts: the shell follows the API's pages up to --limit.
    site.stack
        .db
        .owner()
        .await
        .execute(
            "INSERT INTO webhook_attempts
                 (endpoint_id, attempted_at, event_id, outcome, status, latency_ms, response)
             SELECT $1, now() - interval '2 hours', gen_random_uuid(), 'retry', 503, 7, 'busy'
             FROM generate_series(1, 600)",
            &[&id.parse::<Uuid>().unwrap()],
        )
        .await
        .unwrap();
    let every: serde_json::Value = serde_json::from_str(&stdout(
        &site
            .latch(&["webhooks", "attempts", &id, "--limit", "1000", "--json"])
            .await,
    ))
    .unwrap();
    assert_eq!(every.as_array().unwrap().len(), 601);
    let some = stdout(
        &site
            .latch(&["webhooks", "attempts", &id, "--limit", "550"])
            .await,
    );
    assert_eq!(some.lines().count(), 1 + 550 + 1, "{some}");
    assert!(
        some.ends_with("550 attempt(s), newest first; older ones not shown (raise --limit)\n"),
        "{some}"
    );
    let busy = stdout(
        &site
            .latch(&[
                "webhooks", "attempts", &id, "--status", "503", "--limit", "1000",
            ])
            .await,
    );
    assert!(busy.ends_with("\n600 attempt(s), newest first\n"), "{busy}");
    let recent = stdout(
        &site
            .latch(&["webhooks", "attempts", &id, "--since", "1h"])
            .await,
    );
    assert!(
        recent.ends_with("\n1 attempt(s), newest first\n"),
        "{recent}"
    );

    // Changed: every kind, one site, a new description; the rate stays. A site no door is
    // on is refused first, with nothing changed.
    let change = [
        "webhooks",
        "update",
        &id,
        "--all-kinds",
        "--sites",
        "hq",
        "--description",
        "CRM, HQ only",
    ];
    let unknown = failed(&site.latch(&change).await, 1);
    assert!(unknown.contains("422 unknown_site"), "{unknown}");
    stdout(
        &site
            .latch(&["doors", "add", "--site", "hq", "--name", "Lobby"])
            .await,
    );
    let updated = stdout(&site.latch(&change).await);
    assert!(
        updated.starts_with(&format!("endpoint {id} updated\n")),
        "{updated}"
    );
    assert_eq!(field(&updated, "kinds"), "all");
    assert_eq!(field(&updated, "sites"), "hq");
    assert_eq!(field(&updated, "description"), "CRM, HQ only");
    assert_eq!(field(&updated, "rate"), "20/s");

    // Disabled and enabled again (new events only); doing either twice changes nothing.
    let disabled = stdout(&site.latch(&["webhooks", "disable", &id]).await);
    assert!(
        disabled.contains(&format!("endpoint {id} disabled")),
        "{disabled}"
    );
    let shown = stdout(&site.latch(&["webhooks", "show", &id]).await);
    assert!(
        field(&shown, "state").starts_with("disabled since ")
            && field(&shown, "state").ends_with("(disabled by an administrator)"),
        "{shown}"
    );
    let listed = stdout(&site.latch(&["webhooks", "list"]).await);
    assert!(
        after_prefix(&listed, &id).contains(" disabled (disabled by an administrator)"),
        "{listed}"
    );
    let again = stdout(&site.latch(&["webhooks", "disable", &id]).await);
    assert!(again.contains("disabled already"), "{again}");
    let enabled = stdout(&site.latch(&["webhooks", "enable", &id, "--from-now"]).await);
    assert!(enabled.contains("new events only"), "{enabled}");
    let shown: serde_json::Value = serde_json::from_str(&stdout(
        &site.latch(&["webhooks", "show", &id, "--json"]).await,
    ))
    .unwrap();
    assert!(shown["disabled_at"].is_null(), "{shown}");
    assert_eq!(shown["sites"], serde_json::json!(["hq"]));
    let again = stdout(&site.latch(&["webhooks", "enable", &id]).await);
    assert!(again.contains("enabled already"), "{again}");

    // A new secret, once; the old one signs beside it for the grace period.
    let rotated = stdout(
        &site
            .latch(&["webhooks", "rotate", &id, "--grace", "1h"])
            .await,
    );
    let new_secret = after_prefix(&rotated, "secret (shown once): ");
    assert!(
        rotated.contains("the previous one signs beside it until")
            && new_secret.starts_with("whsec_")
            && new_secret != secret
            && rotated.contains("shown only this once"),
        "{rotated}"
    );
    let shown = stdout(&site.latch(&["webhooks", "show", &id]).await);
    assert!(
        field(&shown, "old secret").starts_with("signs beside the new one until "),
        "{shown}"
    );
    assert!(!shown.contains(&new_secret), "{shown}");

    // A recovery from an hour ago is under way.
    let recovering = stdout(
        &site
            .latch(&["webhooks", "recover", &id, "--since", "1h"])
            .await,
    );
    assert!(recovering.contains("delivering again"), "{recovering}");
    let stats = stdout(&site.latch(&["webhooks", "stats", &id]).await);
    assert!(
        field(&stats, "recovering from").starts_with("20"),
        "{stats}"
    );

    // Deleted only when confirmed.
    let unconfirmed = failed(&site.latch(&["webhooks", "delete", &id]).await, 1);
    assert!(unconfirmed.contains("--yes"), "{unconfirmed}");
    stdout(&site.latch(&["webhooks", "show", &id]).await);
    let deleted = stdout(&site.latch(&["webhooks", "delete", &id, "--yes"]).await);
    assert_eq!(deleted, format!("endpoint {id} deleted\n"));
    let gone = failed(&site.latch(&["webhooks", "show", &id]).await, 1);
    assert!(gone.contains("404 endpoint_not_found"), "{gone}");
    assert_eq!(
        stdout(&site.latch(&["webhooks", "list"]).await),
        "no webhook endpoints\n"
    );

    // Every change is in the registry, naming the endpoint.
    let kinds: Vec<String> = site
        .stack
        .db
        .owner()
        .await
        .query(
            "SELECT kind FROM actions WHERE endpoint_id = $1 ORDER BY recorded_at, id",
            &[&id.parse::<Uuid>().unwrap()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        kinds,
        [
            "webhook_endpoint_created",
            "webhook_endpoint_updated",
            "webhook_endpoint_disabled",
            "webhook_endpoint_enabled",
            "webhook_secret_rotated",
            "webhook_recovery_started",
            "webhook_endpoint_deleted",
        ]
    );
}

#[tokio::test]
async fn webhook_mistakes_and_narrow_tokens_are_refused_clearly() {
    // The API's own outbound policy: https to public addresses only.
    let site = Site::start().await;
    let public = "https://93.184.215.14/hooks/latch";

    // Bad arguments: refused by the command line (exit 2) before any request.
    let bad_url = failed(
        &site
            .latch(&["webhooks", "create", "--url", "hooks.example/latch"])
            .await,
        2,
    );
    assert!(
        bad_url.contains("invalid value 'hooks.example/latch' for '--url <URL>'")
            && bad_url.contains("not a URL"),
        "{bad_url}"
    );
    let bad_kind = failed(
        &site
            .latch(&[
                "webhooks",
                "create",
                "--url",
                public,
                "--kinds",
                "check_in,teleport",
            ])
            .await,
        2,
    );
    assert!(
        bad_kind.contains("unknown event kind \"teleport\"") && bad_kind.contains("check_out"),
        "{bad_kind}"
    );
    let bad_grace = failed(
        &site
            .latch(&[
                "webhooks",
                "rotate",
                &Uuid::now_v7().to_string(),
                "--grace",
                "1y",
            ])
            .await,
        2,
    );
    assert!(bad_grace.contains("--grace"), "{bad_grace}");

    // What only the API can tell: its code and message, exit 1.
    let refused = failed(
        &site
            .latch(&["webhooks", "create", "--url", "http://127.0.0.1:9/hook"])
            .await,
        1,
    );
    assert!(refused.contains("422 url_refused"), "{refused}");
    let unknown_site = failed(
        &site
            .latch(&["webhooks", "create", "--url", public, "--sites", "nowhere"])
            .await,
        1,
    );
    assert!(
        unknown_site.contains("422 unknown_site") && unknown_site.contains("nowhere"),
        "{unknown_site}"
    );
    let missing = failed(
        &site
            .latch(&["webhooks", "show", &Uuid::now_v7().to_string()])
            .await,
        1,
    );
    assert!(missing.contains("404 endpoint_not_found"), "{missing}");

    // A token without `admin`, or for some sites only, manages no endpoint.
    let viewer = crate::harness::token(
        &site.stack.db,
        "viewer",
        &["sites:read", "sites:write"],
        None,
    )
    .await;
    let no_admin = failed(
        &site
            .latch_with(&["webhooks", "list"], &viewer, &site.api)
            .await,
        1,
    );
    assert!(
        no_admin.contains("403 insufficient_scope") && no_admin.contains("admin"),
        "{no_admin}"
    );
    let hq_admin =
        crate::harness::token(&site.stack.db, "hq admin", &["admin"], Some(&["hq"])).await;
    let one_site = failed(
        &site
            .latch_with(
                &["webhooks", "create", "--url", public],
                &hq_admin,
                &site.api,
            )
            .await,
        1,
    );
    assert!(
        one_site.contains("403 site_not_allowed") && one_site.contains("every site"),
        "{one_site}"
    );

    assert_eq!(
        site.stack
            .count("SELECT count(*) FROM webhook_endpoints")
            .await,
        0
    );
    assert_eq!(site.stack.count("SELECT count(*) FROM actions").await, 0);
}

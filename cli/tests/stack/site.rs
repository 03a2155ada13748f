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

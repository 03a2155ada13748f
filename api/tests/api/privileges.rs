//! Each database login holds only what its process needs: what the API's login can do on
//! its own (a stolen password, an injection) cannot mint tokens, change permissions
//! without a trace, forge events or drop them.

use latch_testkit::{APP_LOGIN, OPERATOR_LOGIN, RELAY_LOGIN};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// Runs `sql` as `login`; answers the SQLSTATE it failed with (`None`: it succeeded).
async fn refused(app: &TestApp, login: &str, sql: &str) -> Option<String> {
    let client = app.db.login(login).await;
    client
        .batch_execute(sql)
        .await
        .err()
        .and_then(|e| e.code().map(|c| c.code().to_owned()))
}

const INSUFFICIENT_PRIVILEGE: &str = "42501";

#[tokio::test]
async fn the_api_login_cannot_rewrite_permissions_tokens_or_events() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("ADA").await;
    let grant = app.grant(holder, door.id).await;
    app.revoke(grant).await;
    app.unlock(&door.reader_key, "ADA").await;
    let before = app.counts().await;

    for sql in [
        // Mint or revive an admin token.
        "INSERT INTO admins (id, name, token_hash) VALUES (gen_random_uuid(), 'x', '\\x01')",
        "UPDATE admins SET revoked_at = NULL",
        // Un-revoke or delete a grant, or make one, without its registry entry.
        "UPDATE grants SET revoked_at = NULL",
        "DELETE FROM grants",
        "INSERT INTO grants (id, holder_id, door_id, valid_from, granted_by)
         SELECT gen_random_uuid(), holder_id, door_id, now(), granted_by FROM grants",
        // Re-enable a disabled reader, or give a door a reader.
        "UPDATE readers SET enabled = true",
        "INSERT INTO readers (id, door_id, name, key_hash)
         SELECT gen_random_uuid(), id, 'x', '\\x02' FROM doors",
        "UPDATE holders SET active = true",
        "INSERT INTO doors (id, site, name) VALUES (gen_random_uuid(), 'hq', 'x')",
        // Drop events before they leave, or forge one the worker would deliver.
        "DELETE FROM outbox",
        "INSERT INTO outbox (event_id, subject, ordering_key, payload, headers)
         VALUES (gen_random_uuid(), 'latch.events.unlock_granted', 'x', '{}', '{}')",
        // Rewrite the registry, or record what only an administrator may.
        "UPDATE actions SET decision = 'granted'",
        "DELETE FROM actions",
        "INSERT INTO actions (id, kind, occurred_at) VALUES (gen_random_uuid(), 'grant_created', now())",
        "INSERT INTO actions (id, kind, reader_id, actor_id, occurred_at)
         SELECT gen_random_uuid(), 'check_in', id, gen_random_uuid(), now() FROM readers",
        // A reader event without its reader.
        "INSERT INTO actions (id, kind, occurred_at) VALUES (gen_random_uuid(), 'unlock_granted', now())",
        // The owner's functions.
        "SELECT latch_add_admin(gen_random_uuid(), gen_random_uuid(), 'x', '\\x03')",
        "SELECT latch_add_token(gen_random_uuid(), gen_random_uuid(), 'x', '\\x04', '{admin}', NULL, NULL)",
        // A narrow token cannot be widened by the API's login.
        "UPDATE admins SET scopes = '{admin}', sites = NULL, expires_at = NULL",
        "SELECT latch_republish(now() - interval '1 day', NULL, NULL, NULL)",
    ] {
        assert_eq!(
            refused(&app, APP_LOGIN, sql).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "{sql}"
        );
    }
    // Partitions: the function the API calls takes a bounded argument.
    assert_eq!(
        refused(
            &app,
            APP_LOGIN,
            "SELECT latch_ensure_action_partitions(1000)"
        )
        .await
        .as_deref(),
        Some("22023")
    );
    // The administrative functions it may call want an admin's token.
    let answer: String = app
        .db
        .app()
        .await
        .query_one(
            "SELECT latch_revoke_grant('\\x00', gen_random_uuid(), NULL, $1)",
            &[&grant],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(answer, "unauthorized");

    assert_eq!(app.counts().await, before, "nothing changed");
    let grants = app
        .admin_get(&format!("/v1/grants?holder_id={holder}"))
        .await;
    assert_eq!(grants.as_array().unwrap().len(), 1);
    assert!(grants[0]["revoked_at"].is_string());
    let denied = expect_status(app.unlock(&door.reader_key, "ADA").await, StatusCode::OK).await;
    assert_eq!(denied["reason"], "grant_revoked");
}

#[tokio::test]
async fn the_relay_and_operator_logins_hold_only_their_own_rights() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.create_holder("ADA").await;
    app.post(
        "/v1/check-ins",
        &door.reader_key,
        &json!({"card_id": "ADA"}),
    )
    .await;
    for (login, sql) in [
        (
            RELAY_LOGIN,
            "INSERT INTO actions (id, kind, occurred_at) VALUES (gen_random_uuid(), 'dlq_replayed', now())",
        ),
        (RELAY_LOGIN, "UPDATE outbox SET payload = '{}'"),
        (RELAY_LOGIN, "UPDATE grants SET revoked_at = NULL"),
        (RELAY_LOGIN, "SELECT count(*) FROM holders"),
        (OPERATOR_LOGIN, "DELETE FROM outbox"),
        (
            OPERATOR_LOGIN,
            "INSERT INTO outbox (event_id, subject, ordering_key, payload, headers)
                          VALUES (gen_random_uuid(), 'latch.events.check_in', 'x', '{}', '{}')",
        ),
        (
            OPERATOR_LOGIN,
            "INSERT INTO actions (id, kind, reader_id, occurred_at)
                          SELECT gen_random_uuid(), 'check_in', id, now() FROM readers",
        ),
        (OPERATOR_LOGIN, "UPDATE admins SET revoked_at = NULL"),
    ] {
        assert_eq!(
            refused(&app, login, sql).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "{login}: {sql}"
        );
    }
    // What each one is for still works.
    assert_eq!(
        refused(
            &app,
            RELAY_LOGIN,
            "SELECT id FROM outbox ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
        )
        .await,
        None
    );
    assert_eq!(
        refused(
            &app,
            OPERATOR_LOGIN,
            "INSERT INTO actions (id, kind, reason, occurred_at)
             VALUES (gen_random_uuid(), 'dlq_replayed', 'replayed by a test', now());
             SELECT latch_republish(now() - interval '1 hour', NULL, 'check_in', 'webhooks')"
        )
        .await,
        None
    );
}

#[tokio::test]
async fn admin_tokens_are_made_and_revoked_by_the_owner_with_a_registry_entry() {
    let app = spawn_app().await;
    let owner = app.db.owner().await;
    let id = uuid::Uuid::now_v7();
    owner
        .execute(
            "SELECT latch_add_admin(gen_random_uuid(), $1, 'Night desk', '\\x0a0b')",
            &[&id],
        )
        .await
        .unwrap();
    let revoked: String = owner
        .query_one("SELECT latch_revoke_admin(gen_random_uuid(), $1)", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(revoked, "done");
    let again: String = owner
        .query_one("SELECT latch_revoke_admin(gen_random_uuid(), $1)", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(again, "not_found");
    // The test's own administrator was made the same way.
    assert_eq!(app.count_kind("admin_created").await, 2);
    assert_eq!(app.count_kind("admin_revoked").await, 1);
    let page = app
        .admin_get("/v1/actions?kind=admin_created&limit=1")
        .await;
    let reason = page["items"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&id.to_string()) && reason.contains("Night desk"),
        "{reason}"
    );
}

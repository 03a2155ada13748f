//! What the schema itself guarantees.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn the_application_role_cannot_rewrite_the_registry() {
    let app = spawn_app().await;
    let door = app.create_door("hq", "Main").await;
    app.unlock(&door.reader_key, "ANY").await;
    let client = app.db.app().await;
    let update = client
        .execute("UPDATE actions SET reason = 'forged'", &[])
        .await;
    let error = update.expect_err("UPDATE must fail");
    assert_eq!(error.code().map(|c| c.code()), Some("42501"), "{error}");
    let delete = client.execute("DELETE FROM actions", &[]).await;
    let error = delete.expect_err("DELETE must fail");
    assert_eq!(error.code().map(|c| c.code()), Some("42501"), "{error}");
    let truncate = client.batch_execute("TRUNCATE actions").await;
    assert!(truncate.is_err());
    // It can read and append.
    let count: i64 = client
        .query_one("SELECT count(*) FROM actions", &[])
        .await
        .unwrap()
        .get(0);
    assert!(count > 0);
    let _ = json!(null);
}

#[tokio::test]
async fn registry_partitions_exist_ahead_and_the_app_can_extend_them() {
    let app = spawn_app().await;
    let owner = app.db.owner().await;
    let months = |client: tokio_postgres::Client| async move {
        client
            .query_one(
                "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'actions'::regclass AND c.relname ~ '^actions_[0-9]{4}_[0-9]{2}$'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(months(owner).await, 4, "this month and three ahead");
    let app_client = app.db.app().await;
    let created: i32 = app_client
        .query_one("SELECT latch_ensure_action_partitions(6)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(created, 3);
    assert_eq!(months(app.db.owner().await).await, 7);
    // The application role still cannot create tables itself.
    assert!(
        app_client
            .batch_execute("CREATE TABLE sneaky (id int)")
            .await
            .is_err()
    );
    let stray: i64 = app
        .db
        .owner()
        .await
        .query_one("SELECT count(*) FROM actions_default", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stray, 0);
}

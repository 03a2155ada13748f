//! The relay's side of the `outbox` table: claim a batch, delete what was published.
//!
//! Rows are claimed oldest-first with `FOR UPDATE SKIP LOCKED` inside a transaction that
//! stays open while the batch is published and is committed together with the DELETE of
//! the acknowledged rows. A relay that dies in between leaves its rows unlocked and
//! pending; the next relay publishes them again and the stream's duplicate window makes
//! that a no-op. Published rows are deleted, not kept: the `actions` registry is the
//! permanent record and the outbox stays small (no bloat to vacuum away, no prune job).
//!
//! There is no `id > last_seen` cursor: every claim looks at every pending row, so a row
//! whose transaction committed late (a lower id than rows already relayed) is found.
//!
//! [`Claimed`] owns its pooled connection, so that the DELETE and COMMIT of a published
//! batch can run while the relay claims and publishes the next one (its rows stay locked
//! until then, and the next claim skips them).

use deadpool_postgres::{GenericClient, Object, Pool};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// One event waiting to be published.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Also the message's `Nats-Msg-Id`.
    pub id: i64,
    pub event_id: Uuid,
    pub subject: String,
    /// Rows with the same key (the holder, or the door) reach the stream in commit order.
    pub ordering_key: String,
    /// The envelope, as JSON text.
    pub payload: String,
    /// `traceparent`, `Latch-Event-Id`.
    pub headers: Map<String, Value>,
    pub created_at: OffsetDateTime,
}

const CLAIM: &str = "
SELECT id, event_id, subject, ordering_key, payload::text AS payload, headers, created_at
FROM outbox
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED";

const DELETE: &str = "DELETE FROM outbox WHERE id = ANY($1)";

/// Locks and returns up to `limit` pending rows, oldest first (call in a transaction).
pub async fn claim(
    tx: &impl GenericClient,
    limit: usize,
) -> Result<Vec<OutboxRow>, tokio_postgres::Error> {
    let statement = tx.prepare_cached(CLAIM).await?;
    claim_prepared(tx, &statement, limit).await
}

async fn claim_prepared(
    client: &impl GenericClient,
    statement: &tokio_postgres::Statement,
    limit: usize,
) -> Result<Vec<OutboxRow>, tokio_postgres::Error> {
    let rows = client.query(statement, &[&(limit as i64)]).await?;
    Ok(rows
        .into_iter()
        .map(|row| OutboxRow {
            id: row.get("id"),
            event_id: row.get("event_id"),
            subject: row.get("subject"),
            ordering_key: row.get("ordering_key"),
            payload: row.get("payload"),
            headers: match row.get::<_, Value>("headers") {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            created_at: row.get("created_at"),
        })
        .collect())
}

/// Removes published rows (call in the claiming transaction, then commit).
pub async fn delete(tx: &impl GenericClient, ids: &[i64]) -> Result<u64, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let statement = tx.prepare_cached(DELETE).await?;
    tx.execute(&statement, &[&ids]).await
}

/// A claimed batch: its rows, and the open transaction that holds their locks.
pub struct Claimed {
    pub rows: Vec<OutboxRow>,
    /// `None` once the transaction has ended.
    client: Option<Object>,
}

impl Claimed {
    /// Opens a transaction and claims up to `limit` rows in it, in one round trip.
    pub async fn begin(pool: &Pool, limit: usize) -> Result<Claimed, ClaimError> {
        let client = pool.get().await?;
        // Prepared (once per connection) beforehand, so that BEGIN and the claim go out
        // together: requests polled together are pipelined, in the order first polled.
        let statement = client.prepare_cached(CLAIM).await?;
        let mut claimed = Claimed {
            rows: Vec::new(),
            client: Some(client),
        };
        let client = claimed.client.as_ref().expect("just set");
        let (begun, rows) = tokio::join!(
            client.batch_execute("BEGIN"),
            claim_prepared(client, &statement, limit)
        );
        begun?;
        claimed.rows = rows?;
        Ok(claimed)
    }

    /// Deletes the published rows `ids` and ends the transaction, which releases every
    /// claimed row (rolls back when `ids` is empty).
    pub async fn finish(mut self, ids: &[i64]) -> Result<(), tokio_postgres::Error> {
        let client = self.client.as_ref().expect("transaction open");
        if ids.is_empty() {
            client.batch_execute("ROLLBACK").await?;
        } else {
            // DELETE and COMMIT go out together; if the DELETE fails, COMMIT only ends the
            // failed transaction, and the error is the DELETE's.
            let statement = client.prepare_cached(DELETE).await?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
            let (deleted, committed) = tokio::join!(
                client.execute(&statement, &params),
                client.batch_execute("COMMIT")
            );
            deleted?;
            committed?;
        }
        // Ended cleanly: the connection goes back to the pool.
        self.client = None;
        Ok(())
    }
}

impl Drop for Claimed {
    /// A transaction left open (an error, or a cancelled drain) must not go back to the
    /// pool: the connection is closed instead, and the server rolls the transaction back.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

/// Why a claim failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
}

/// Pending rows and the age of the oldest, for metrics and `latch outbox status`.
pub async fn backlog(
    client: &impl deadpool_postgres::GenericClient,
) -> Result<(i64, f64), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0)
             FROM outbox",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

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

use deadpool_postgres::Transaction;
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
    /// The envelope, as JSON text.
    pub payload: String,
    /// `traceparent`, `Latch-Event-Id`.
    pub headers: Map<String, Value>,
    pub created_at: OffsetDateTime,
}

const CLAIM: &str = "
SELECT id, event_id, subject, payload::text, headers, created_at
FROM outbox
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED";

/// Locks and returns up to `limit` pending rows, oldest first.
pub async fn claim(
    tx: &Transaction<'_>,
    limit: usize,
) -> Result<Vec<OutboxRow>, tokio_postgres::Error> {
    let statement = tx.prepare_cached(CLAIM).await?;
    let rows = tx.query(&statement, &[&(limit as i64)]).await?;
    Ok(rows
        .into_iter()
        .map(|row| OutboxRow {
            id: row.get(0),
            event_id: row.get(1),
            subject: row.get(2),
            payload: row.get(3),
            headers: match row.get::<_, Value>(4) {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            created_at: row.get(5),
        })
        .collect())
}

/// Removes published rows (call in the claiming transaction, then commit).
pub async fn delete(tx: &Transaction<'_>, ids: &[i64]) -> Result<u64, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let statement = tx
        .prepare_cached("DELETE FROM outbox WHERE id = ANY($1)")
        .await?;
    tx.execute(&statement, &[&ids]).await
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

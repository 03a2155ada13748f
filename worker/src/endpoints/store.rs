//! What the endpoints' delivery reads from and writes to PostgreSQL (migration V8): the
//! endpoints themselves, each one's progress, the attempts, and disabling.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use latch_core::event::EventKind;
use latch_core::signature::SigningKey;
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::endpoint::Routed;

/// One endpoint as the registry has it.
#[derive(Debug, Clone)]
pub struct EndpointRow {
    pub id: Uuid,
    pub url: String,
    /// `None`: every kind.
    pub kinds: Option<Vec<EventKind>>,
    /// `None`: every site (and events without one).
    pub sites: Option<Vec<String>>,
    pub rate_per_second: u32,
    /// The current key, then the previous one while it still signs.
    pub keys: Vec<SigningKey>,
    /// When the previous key stops signing.
    pub previous_until: Option<OffsetDateTime>,
    pub disabled: bool,
    pub updated_at: OffsetDateTime,
    pub start_at: OffsetDateTime,
    pub position: Option<u64>,
    pub last_success_at: Option<OffsetDateTime>,
    pub failing_since: Option<OffsetDateTime>,
    pub recover_since: Option<OffsetDateTime>,
    pub recover_requested_at: Option<OffsetDateTime>,
    pub recover_applied_at: Option<OffsetDateTime>,
}

impl EndpointRow {
    /// The `since` of a recovery asked for and not yet applied.
    pub fn pending_recovery(&self) -> Option<OffsetDateTime> {
        match self.recover_requested_at {
            Some(requested) if self.recover_applied_at != Some(requested) => self.recover_since,
            _ => None,
        }
    }

    /// True if the event is routed to this endpoint: of its kinds, on its sites, and
    /// recorded at or after it started (its creation, the time it was enabled "from now",
    /// or a recovery's `since`) — or a dead letter replayed to it.
    pub fn routes(&self, event: &Routed) -> bool {
        if let Some(target) = event.replay_for {
            return target == self.id;
        }
        self.kinds
            .as_ref()
            .is_none_or(|kinds| kinds.contains(&event.kind))
            && self.sites.as_ref().is_none_or(|sites| {
                event
                    .site
                    .as_deref()
                    .is_some_and(|s| sites.iter().any(|x| x == s))
            })
            && event.recorded_at.is_none_or(|at| at >= self.start_at)
    }

    /// The keys that sign now.
    pub fn signing_keys(&self, now: OffsetDateTime) -> Vec<&SigningKey> {
        let previous_valid = self.previous_until.is_some_and(|until| until > now);
        self.keys
            .iter()
            .take(if previous_valid { 2 } else { 1 })
            .collect()
    }

    /// Same delivery settings (what a change through the API alters).
    pub fn same_version(&self, other: &EndpointRow) -> bool {
        self.updated_at == other.updated_at && self.start_at == other.start_at
    }

    /// Delivery must start again from the table's position: enabled "from now", or a new
    /// recovery.
    pub fn restarts(&self, other: &EndpointRow) -> bool {
        self.start_at != other.start_at || self.recover_requested_at != other.recover_requested_at
    }
}

/// Which endpoints there are (a fingerprint of their ids: it changes when one is deleted,
/// even if another is created), and the latest change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    pub ids: (i64, i64),
    pub latest: Option<OffsetDateTime>,
}

pub async fn census(pool: &Pool) -> anyhow::Result<Census> {
    let row = pool
        .get()
        .await?
        .query_one(
            "SELECT count(*), COALESCE(sum(hashtext(id::text)), 0)::bigint, max(updated_at)
             FROM webhook_endpoints",
            &[],
        )
        .await?;
    Ok(Census {
        ids: (row.get(0), row.get(1)),
        latest: row.get(2),
    })
}

/// The ids of every endpoint.
pub async fn ids(pool: &Pool) -> anyhow::Result<std::collections::HashSet<Uuid>> {
    Ok(pool
        .get()
        .await?
        .query("SELECT id FROM webhook_endpoints", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// The endpoints changed since `since` (every one when `None`); one whose row cannot be
/// read is logged and left out.
pub async fn load(pool: &Pool, since: Option<OffsetDateTime>) -> anyhow::Result<Vec<EndpointRow>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, url, kinds, sites, rate_per_second, secret, previous_secret,
                    previous_secret_until, disabled_at IS NOT NULL AS disabled, updated_at,
                    start_at, position, last_success_at, failing_since, recover_since,
                    recover_requested_at, recover_applied_at
             FROM webhook_endpoints
             WHERE $1::timestamptz IS NULL OR updated_at >= $1",
            &[&since],
        )
        .await?;
    let mut endpoints = Vec::with_capacity(rows.len());
    for row in rows {
        let id: Uuid = row.get("id");
        let parsed = (|| -> anyhow::Result<EndpointRow> {
            let kinds = row
                .get::<_, Option<Vec<String>>>("kinds")
                .map(|kinds| {
                    kinds
                        .iter()
                        .map(|k| k.parse::<EventKind>().map_err(anyhow::Error::msg))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
                .transpose()?;
            let mut keys = vec![SigningKey::parse(row.get("secret"))?];
            if let Some(previous) = row.get::<_, Option<&str>>("previous_secret") {
                keys.push(SigningKey::parse(previous)?);
            }
            Ok(EndpointRow {
                id,
                url: row.get("url"),
                kinds,
                sites: row.get("sites"),
                rate_per_second: row.get::<_, i32>("rate_per_second").max(1) as u32,
                keys,
                previous_until: row.get("previous_secret_until"),
                disabled: row.get("disabled"),
                updated_at: row.get("updated_at"),
                start_at: row.get("start_at"),
                position: row.get::<_, Option<i64>>("position").map(|p| p as u64),
                last_success_at: row.get("last_success_at"),
                failing_since: row.get("failing_since"),
                recover_since: row.get("recover_since"),
                recover_requested_at: row.get("recover_requested_at"),
                recover_applied_at: row.get("recover_applied_at"),
            })
        })();
        match parsed {
            Ok(endpoint) => endpoints.push(endpoint),
            Err(error) => {
                tracing::error!(endpoint = %id, %error, "cannot read the endpoint; not delivering to it")
            }
        }
    }
    Ok(endpoints)
}

/// An endpoint's delivery state, to be saved.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub id: Uuid,
    /// The `start_at` the worker delivers from: the position of an endpoint enabled "from
    /// now", or recovering, since is not saved over its fresh start (its counts are).
    pub start_at: OffsetDateTime,
    /// The recovery it delivers under (its position is not saved over a newer one's).
    pub recover_requested_at: Option<OffsetDateTime>,
    /// That recovery's cursor has been moved back.
    pub recover_applied: bool,
    pub position: u64,
    pub last_success_at: Option<OffsetDateTime>,
    pub failing_since: Option<OffsetDateTime>,
    /// Calls delivered, calls failed, events dead-lettered since the last save.
    pub delivered: i64,
    pub failed: i64,
    pub dead_lettered: i64,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
}

/// Saves the endpoints' progress in one statement.
pub async fn save(pool: &Pool, progress: &[Progress]) -> anyhow::Result<()> {
    if progress.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = progress.iter().map(|p| p.id).collect();
    let starts: Vec<OffsetDateTime> = progress.iter().map(|p| p.start_at).collect();
    let recoveries: Vec<Option<OffsetDateTime>> =
        progress.iter().map(|p| p.recover_requested_at).collect();
    let applied: Vec<bool> = progress.iter().map(|p| p.recover_applied).collect();
    let positions: Vec<i64> = progress.iter().map(|p| p.position as i64).collect();
    let successes: Vec<Option<OffsetDateTime>> =
        progress.iter().map(|p| p.last_success_at).collect();
    let failing: Vec<Option<OffsetDateTime>> = progress.iter().map(|p| p.failing_since).collect();
    let delivered: Vec<i64> = progress.iter().map(|p| p.delivered).collect();
    let failed: Vec<i64> = progress.iter().map(|p| p.failed).collect();
    let dead: Vec<i64> = progress.iter().map(|p| p.dead_lettered).collect();
    let breakers: Vec<&str> = progress.iter().map(|p| p.breaker).collect();
    pool.get()
        .await?
        .execute(
            "UPDATE webhook_endpoints AS e
             SET position = CASE WHEN e.start_at = v.start_at
                                      AND e.recover_requested_at IS NOT DISTINCT FROM v.recovery
                                 THEN v.position ELSE e.position END,
                 recover_applied_at = CASE WHEN v.applied AND e.start_at = v.start_at
                                      AND e.recover_requested_at IS NOT DISTINCT FROM v.recovery
                                 THEN e.recover_requested_at ELSE e.recover_applied_at END,
                 last_success_at = v.last_success_at,
                 failing_since = v.failing_since,
                 delivered_count = e.delivered_count + v.delivered,
                 failed_count = e.failed_count + v.failed,
                 dead_lettered_count = e.dead_lettered_count + v.dead, breaker = v.breaker
             FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::timestamptz[],
                         $5::timestamptz[], $6::bigint[], $7::bigint[], $8::bigint[],
                         $9::text[], $10::timestamptz[], $11::boolean[])
                 AS v(id, start_at, position, last_success_at, failing_since, delivered,
                      failed, dead, breaker, recovery, applied)
             WHERE e.id = v.id",
            &[
                &ids as &(dyn ToSql + Sync),
                &starts,
                &positions,
                &successes,
                &failing,
                &delivered,
                &failed,
                &dead,
                &breakers,
                &recoveries,
                &applied,
            ],
        )
        .await?;
    Ok(())
}

/// One call to an endpoint.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub endpoint_id: Uuid,
    pub at: OffsetDateTime,
    pub event_id: Uuid,
    pub outcome: &'static str,
    pub status: Option<i16>,
    pub error: Option<String>,
    pub latency_ms: i32,
    pub response: Option<String>,
}

/// Writes attempts in batches.
pub async fn record(pool: &Pool, attempts: &[Attempt]) -> anyhow::Result<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    let endpoints: Vec<Uuid> = attempts.iter().map(|a| a.endpoint_id).collect();
    let at: Vec<OffsetDateTime> = attempts.iter().map(|a| a.at).collect();
    let events: Vec<Uuid> = attempts.iter().map(|a| a.event_id).collect();
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome).collect();
    let statuses: Vec<Option<i16>> = attempts.iter().map(|a| a.status).collect();
    let errors: Vec<Option<&str>> = attempts.iter().map(|a| a.error.as_deref()).collect();
    let latencies: Vec<i32> = attempts.iter().map(|a| a.latency_ms).collect();
    let responses: Vec<Option<&str>> = attempts.iter().map(|a| a.response.as_deref()).collect();
    pool.get()
        .await?
        .execute(
            "INSERT INTO webhook_attempts (endpoint_id, attempted_at, event_id, outcome, status,
                                           error, latency_ms, response)
             SELECT v.* FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[], $4::text[],
                                    $5::smallint[], $6::text[], $7::int[], $8::text[])
                 AS v(endpoint_id, attempted_at, event_id, outcome, status, error, latency_ms,
                      response)
             -- An endpoint deleted meanwhile takes its attempts with it.
             WHERE EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = v.endpoint_id)",
            &[
                &endpoints as &(dyn ToSql + Sync),
                &at,
                &events,
                &outcomes,
                &statuses,
                &errors,
                &latencies,
                &responses,
            ],
        )
        .await?;
    Ok(())
}

/// Forgets attempts older than `retention`; how many.
pub async fn prune(pool: &Pool, retention: Duration) -> anyhow::Result<u64> {
    let cutoff = OffsetDateTime::now_utc() - retention;
    Ok(pool
        .get()
        .await?
        .execute(
            "DELETE FROM webhook_attempts WHERE attempted_at < $1",
            &[&cutoff],
        )
        .await?)
}

/// Disables an endpoint, recording a `webhook_endpoint_disabled` action (and so an event).
/// `false` if it was disabled (or deleted) meanwhile.
pub async fn disable(pool: &Pool, id: Uuid, reason: &str) -> anyhow::Result<bool> {
    let outcome: String = pool
        .get()
        .await?
        .query_one(
            "SELECT latch_disable_webhook_endpoint($1, $2, $3)",
            &[&Uuid::now_v7() as &(dyn ToSql + Sync), &id, &reason],
        )
        .await?
        .get(0);
    Ok(outcome == "done")
}

/// Shared ownership of the pool for the endpoint tasks.
pub type SharedPool = Arc<Pool>;

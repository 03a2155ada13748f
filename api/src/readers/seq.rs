//! Per-reader sequence numbers: the `reader_seqs` registry.
//!
//! A reader may number its events (`seq`, monotonic per reader). The first time a seq
//! arrives it is claimed in `reader_seqs` — keyed `(reader_id, seq)`, holding the hash of
//! the event and, before commit, the response it got — in the same transaction as the
//! event's action. The same seq again is a replay of that event: with the same event it
//! gets the stored response and writes nothing, with another event it is refused
//! (`seq_reused`). A concurrent duplicate waits on the first one's uncommitted row and then
//! sees its outcome. A request that fails rolls its claim back, so the seq stays free.
//!
//! The hash covers the event, not the HTTP request: its type, card, reader clock, offline
//! decision and alarm, each in a canonical form ([`EventFingerprint`]). So an event first
//! posted live and then uploaded again in an offline batch (the reader never saw the
//! answer) is recognised as the same one, as long as the reader sends the same fields.
//!
//! This module also owns [`run_guarded`], the transaction a live post runs in when it
//! carries a `seq`, an `Idempotency-Key` or both (the key is claimed first).

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use deadpool_postgres::{GenericClient, Pool, Transaction};
use latch_core::event::Decision;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::{ReaderKey, reader_rejection};
use crate::error::{ApiError, Kind};
use crate::idempotency::{self, Keyed, Reply, StoredResponse};
use crate::metrics::ApiMetrics;
use crate::readers::alarm::AlarmKind;
use crate::readers::heartbeat::LastSeen;

/// The canonical form of a reader event, hashed to tell a replay from a reused seq.
#[derive(Debug, Serialize)]
pub struct EventFingerprint<'a> {
    /// `check_in`, `check_out`, `unlock` or `alarm`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub card_id: Option<&'a str>,
    /// UTC, RFC 3339; `None` when the reader sent no clock reading.
    pub occurred_at: Option<String>,
    /// What the reader decided offline (unlocks uploaded later).
    pub decision: Option<Decision>,
    pub alarm: Option<AlarmKind>,
    pub restored: bool,
}

/// A seq to claim, with the hash of the event it numbers.
#[derive(Debug, Clone)]
pub struct SeqClaim {
    pub seq: i64,
    request_hash: Vec<u8>,
}

impl SeqClaim {
    pub fn new(seq: i64, event: &EventFingerprint<'_>) -> Result<SeqClaim, ApiError> {
        let bytes = serde_json::to_vec(event).map_err(ApiError::internal)?;
        Ok(SeqClaim {
            seq,
            request_hash: Sha256::digest(bytes).to_vec(),
        })
    }
}

/// What claiming a seq found.
pub enum Claim {
    /// The seq is ours now. `jumped` when it skipped past the reader's last seq + 1.
    Fresh { reader_id: Uuid, jumped: bool },
    /// The same event with this seq was accepted before.
    Duplicate(StoredSeq),
    /// This seq was accepted before for another event.
    Reused,
    /// No enabled reader has this key.
    UnknownReader,
}

/// The outcome stored for an accepted seq.
pub struct StoredSeq {
    pub response: StoredResponse,
    pub action_id: Option<Uuid>,
}

/// Claims `(reader, seq)` for the reader with this key, unless it is taken. The reader's
/// last seq is read in the same statement (and snapshot) as the claim, before it.
const CLAIM_SQL: &str = concat!(
    "
WITH reader AS (
    SELECT id FROM readers r WHERE ",
    crate::auth::key_matches!(),
    " AND enabled
), claimed AS (
    INSERT INTO reader_seqs (reader_id, seq, request_hash)
    SELECT id, $2, $3 FROM reader
    ON CONFLICT (reader_id, seq) DO NOTHING
    RETURNING seq
)
SELECT reader.id AS reader_id, EXISTS (SELECT FROM claimed) AS claimed,
       (SELECT max(s.seq) FROM reader_seqs s WHERE s.reader_id = reader.id) AS last_seq
FROM reader"
);

pub async fn claim(
    db: &impl GenericClient,
    key: &ReaderKey,
    claim: &SeqClaim,
) -> Result<Claim, ApiError> {
    let statement = db.prepare_cached(CLAIM_SQL).await?;
    let Some(row) = db
        .query_opt(
            &statement,
            &[&key.presented, &claim.seq, &claim.request_hash],
        )
        .await?
    else {
        return Ok(Claim::UnknownReader);
    };
    let reader_id: Uuid = row.get("reader_id");
    if row.get::<_, bool>("claimed") {
        let last: Option<i64> = row.get("last_seq");
        return Ok(Claim::Fresh {
            reader_id,
            jumped: last.is_some_and(|last| claim.seq > last.saturating_add(1)),
        });
    }
    // Taken. A new statement sees the other transaction's row even if it committed while
    // this one's claim waited for it.
    let row = db
        .query_one(
            "SELECT request_hash, status, response, action_id FROM reader_seqs
             WHERE reader_id = $1 AND seq = $2",
            &[&reader_id, &claim.seq],
        )
        .await?;
    if row.get::<_, Vec<u8>>("request_hash") != claim.request_hash {
        return Ok(Claim::Reused);
    }
    let status: Option<i16> = row.get("status");
    let body: Option<serde_json::Value> = row.get("response");
    match (
        status.and_then(|s| StatusCode::from_u16(s as u16).ok()),
        body,
    ) {
        (Some(status), Some(body)) => Ok(Claim::Duplicate(StoredSeq {
            response: StoredResponse::stored(status, body),
            action_id: row.get("action_id"),
        })),
        // Claims and responses are committed together, so this is not seen in practice.
        _ => Err(ApiError::conflict(
            "request_in_progress",
            "an event with this seq is still being processed",
        )),
    }
}

/// Stores the response of a claimed seq (same transaction as the claim and the action).
pub async fn store(
    db: &impl GenericClient,
    reader_id: Uuid,
    seq: i64,
    response: &StoredResponse,
    action_id: Option<Uuid>,
) -> Result<(), ApiError> {
    let statement = db
        .prepare_cached(
            "UPDATE reader_seqs SET status = $3, response = $4, action_id = $5
             WHERE reader_id = $1 AND seq = $2",
        )
        .await?;
    db.execute(
        &statement,
        &[
            &reader_id,
            &seq,
            &(response.status.as_u16() as i16),
            &response.body,
            &action_id,
        ],
    )
    .await?;
    Ok(())
}

/// Gives a claimed seq back (its event was rejected), within the claiming transaction.
pub async fn release(db: &impl GenericClient, reader_id: Uuid, seq: i64) -> Result<(), ApiError> {
    let statement = db
        .prepare_cached("DELETE FROM reader_seqs WHERE reader_id = $1 AND seq = $2")
        .await?;
    db.execute(&statement, &[&reader_id, &seq]).await?;
    Ok(())
}

pub fn seq_reused(seq: i64) -> ApiError {
    ApiError::conflict(
        "seq_reused",
        format!("seq {seq} was already used by this reader for another event"),
    )
}

/// What a guarded operation recorded.
pub struct Recorded {
    pub response: StoredResponse,
    pub reader_id: Uuid,
    pub action_id: Option<Uuid>,
}

/// The answer of a guarded post, and what it committed (`None` for a replay).
pub struct Guarded {
    pub response: HttpResponse,
    pub committed: Option<Committed>,
}

pub struct Committed {
    pub reader_id: Uuid,
    /// The seq skipped past the reader's last one + 1: a gap opened.
    pub seq_jumped: bool,
}

impl Guarded {
    /// Notes what a committed post did (its reader was seen; maybe a gap opened) and
    /// answers the response and whether anything was recorded (`false`: a replay).
    pub fn settle(self, last_seen: &LastSeen, metrics: &ApiMetrics) -> (HttpResponse, bool) {
        if let Some(committed) = &self.committed {
            last_seen.mark(committed.reader_id);
            if committed.seq_jumped {
                metrics.reader_seq_gaps.inc();
            }
        }
        (self.response, self.committed.is_some())
    }
}

/// Runs a live post that carries a `seq` and/or an `Idempotency-Key` in one transaction:
/// the key's claim, the seq's claim, `op` (the action), the seq's stored response. A replay
/// of either answers the stored response and writes nothing. `op` answers
/// `ApiError::unauthorized` when its statement found no reader; that becomes the proper
/// 401/403 here.
pub async fn run_guarded<F>(
    pool: &Pool,
    key: &ReaderKey,
    keyed: Option<Keyed>,
    seq: Option<SeqClaim>,
    op: F,
) -> Result<Guarded, ApiError>
where
    F: AsyncFnOnce(&Transaction<'_>) -> Result<Recorded, ApiError>,
{
    let mut committed = None;
    let outcome = idempotency::run_replayable(pool, keyed, async |tx| {
        let mut jumped = false;
        if let Some(seq) = &seq {
            match claim(tx, key, seq).await? {
                Claim::UnknownReader => return Err(ApiError::unknown_reader()),
                Claim::Duplicate(stored) => return Ok(Reply::Replayed(stored.response)),
                Claim::Reused => return Err(seq_reused(seq.seq)),
                Claim::Fresh { jumped: j, .. } => jumped = j,
            }
        }
        let recorded = op(tx).await?;
        if let Some(seq) = &seq {
            store(
                tx,
                recorded.reader_id,
                seq.seq,
                &recorded.response,
                recorded.action_id,
            )
            .await?;
        }
        committed = Some(Committed {
            reader_id: recorded.reader_id,
            seq_jumped: jumped,
        });
        Ok(Reply::Fresh(recorded.response))
    })
    .await;
    match outcome {
        Err(e) if e.kind() == Kind::UnknownReader => Err(reader_rejection(pool, key).await),
        Err(e) => Err(e),
        Ok(response) => Ok(Guarded {
            response,
            committed,
        }),
    }
}

/// Forgets accepted seqs older than `retention`, except each reader's latest (which gap
/// detection compares the next one with), a bounded batch at a time; returns how many
/// went. A replay older than that is no longer recognised.
pub async fn prune(
    client: &impl GenericClient,
    retention: std::time::Duration,
) -> Result<u64, tokio_postgres::Error> {
    // Capped at a century: an interval cannot hold any number of seconds.
    let seconds = i64::try_from(retention.as_secs().min(100 * 365 * 86_400)).unwrap_or(0);
    let mut total = 0;
    loop {
        let deleted = client
            .execute(
                "DELETE FROM reader_seqs WHERE ctid = ANY (ARRAY(
                     SELECT s.ctid FROM reader_seqs s
                     WHERE s.created_at < now() - $1::bigint * interval '1 second'
                       AND s.seq < (SELECT max(m.seq) FROM reader_seqs m
                                    WHERE m.reader_id = s.reader_id)
                     LIMIT 5000))",
                &[&seconds],
            )
            .await?;
        total += deleted;
        if deleted < 5000 {
            return Ok(total);
        }
    }
}

//! `Idempotency-Key` on POST requests.
//!
//! A keyed request runs in one transaction that first claims `(client, key)` in the
//! `idempotency` table, then does its work and stores its response there before commit.
//! A retry with the same key and the same body gets the stored response (marked
//! `Idempotent-Replayed: true`) and writes nothing; the same key with another body is 422.
//! A concurrent retry waits on the first one's row lock and then sees its committed
//! response. A request that fails rolls back its claim, so the retry runs afresh. Keys are
//! scoped per credential and expire after 24 hours (an expired key is claimed anew; the
//! API also deletes old rows hourly).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use deadpool_postgres::{Pool, Transaction};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

pub const HEADER: &str = "Idempotency-Key";
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";
/// A key: 1 to 255 visible ASCII characters.
pub const KEY_PATTERN: &str = "^[!-~]{1,255}$";

/// A response as it is sent and as it is stored for replays.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status: StatusCode,
    /// What is stored, and what a replay answers.
    pub body: serde_json::Value,
    /// A field of this answer that is never stored: a secret shown once (a new reader's
    /// key). A replay answers without it.
    shown_once: Option<(&'static str, String)>,
}

impl StoredResponse {
    pub fn new(status: StatusCode, body: &impl Serialize) -> Result<Self, ApiError> {
        Ok(StoredResponse {
            status,
            body: serde_json::to_value(body).map_err(ApiError::internal)?,
            shown_once: None,
        })
    }

    /// A response as it was stored.
    pub fn stored(status: StatusCode, body: serde_json::Value) -> Self {
        StoredResponse {
            status,
            body,
            shown_once: None,
        }
    }

    /// Adds `field` to this answer only: it is not stored, and a replay does not show it.
    pub fn showing_once(mut self, field: &'static str, secret: String) -> Self {
        self.shown_once = Some((field, secret));
        self
    }

    pub fn into_http(self, replayed: bool) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if replayed {
            response.insert_header((REPLAYED_HEADER, "true"));
        }
        let mut body = self.body;
        if let (Some((field, secret)), Some(object)) = (self.shown_once, body.as_object_mut()) {
            object.insert(field.to_owned(), serde_json::Value::String(secret));
        }
        response.json(body)
    }
}

/// A keyed request: who sent it, its key and a hash of what it asked.
pub struct Keyed {
    client: String,
    key: String,
    request_hash: Vec<u8>,
}

impl Keyed {
    /// `None` when the request carries no key.
    pub fn from_request(
        req: &HttpRequest,
        client: String,
        body: &impl Serialize,
    ) -> Result<Option<Keyed>, ApiError> {
        let Some(value) = req.headers().get(HEADER) else {
            return Ok(None);
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                )
            })?;
        let mut digest = Sha256::new();
        digest.update(req.method().as_str());
        digest.update(b" ");
        digest.update(req.match_pattern().unwrap_or_default());
        digest.update(req.match_info().as_str());
        digest.update(b"\n");
        digest.update(serde_json::to_vec(body).map_err(ApiError::internal)?);
        Ok(Some(Keyed {
            client,
            key: key.to_owned(),
            request_hash: digest.finalize().to_vec(),
        }))
    }
}

enum Claim {
    Fresh,
    Replay(StoredResponse),
}

async fn claim(tx: &Transaction<'_>, keyed: &Keyed) -> Result<Claim, ApiError> {
    let fresh = tx
        .query_opt(
            "INSERT INTO idempotency (client, key, request_hash) VALUES ($1, $2, $3)
             ON CONFLICT (client, key) DO UPDATE
                 SET request_hash = EXCLUDED.request_hash, status = NULL, response = NULL,
                     created_at = now()
                 WHERE idempotency.created_at < now() - interval '24 hours'
             RETURNING 1",
            &[&keyed.client, &keyed.key, &keyed.request_hash],
        )
        .await?;
    if fresh.is_some() {
        return Ok(Claim::Fresh);
    }
    let row = tx
        .query_one(
            "SELECT request_hash, status, response FROM idempotency WHERE client = $1 AND key = $2",
            &[&keyed.client, &keyed.key],
        )
        .await?;
    let stored_hash: Vec<u8> = row.get("request_hash");
    if stored_hash != keyed.request_hash {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request",
        ));
    }
    let status: Option<i16> = row.get("status");
    let body: Option<serde_json::Value> = row.get("response");
    match (
        status.and_then(|s| StatusCode::from_u16(s as u16).ok()),
        body,
    ) {
        (Some(status), Some(body)) => Ok(Claim::Replay(StoredResponse::stored(status, body))),
        _ => Err(ApiError::conflict(
            "request_in_progress",
            "a request with this Idempotency-Key is still being processed",
        )),
    }
}

/// Runs `op` in a transaction, honouring the request's `Idempotency-Key` if it has one.
pub async fn run<F>(pool: &Pool, keyed: Option<Keyed>, op: F) -> Result<HttpResponse, ApiError>
where
    F: AsyncFnOnce(&Transaction<'_>) -> Result<StoredResponse, ApiError>,
{
    run_replayable(pool, keyed, async |tx| op(tx).await.map(Reply::Fresh)).await
}

/// What a guarded operation answered: a fresh response, committed with what it wrote, or
/// a response it found already stored (a reader's `seq` sent again), whose transaction is
/// rolled back so that nothing at all is written.
pub enum Reply {
    Fresh(StoredResponse),
    Replayed(StoredResponse),
}

/// Like [`run`], for operations that can themselves recognise a replay.
pub async fn run_replayable<F>(
    pool: &Pool,
    keyed: Option<Keyed>,
    op: F,
) -> Result<HttpResponse, ApiError>
where
    F: AsyncFnOnce(&Transaction<'_>) -> Result<Reply, ApiError>,
{
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    if let Some(keyed) = &keyed
        && let Claim::Replay(stored) = claim(&tx, keyed).await?
    {
        return Ok(stored.into_http(true));
    }
    let response = match op(&tx).await? {
        Reply::Fresh(response) => response,
        // Dropping the transaction rolls it back, the key's claim included: a retry with
        // the same key finds the same replay.
        Reply::Replayed(stored) => return Ok(stored.into_http(true)),
    };
    if let Some(keyed) = &keyed {
        tx.execute(
            "UPDATE idempotency SET status = $3, response = $4 WHERE client = $1 AND key = $2",
            &[
                &keyed.client,
                &keyed.key,
                &(response.status.as_u16() as i16),
                &response.body,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(response.into_http(false))
}

/// Deletes keys older than 24 hours, a bounded batch at a time; returns how many went.
pub async fn prune(
    client: &impl deadpool_postgres::GenericClient,
) -> Result<u64, tokio_postgres::Error> {
    let mut total = 0;
    loop {
        let deleted = client
            .execute(
                "DELETE FROM idempotency WHERE ctid = ANY (ARRAY(
                     SELECT ctid FROM idempotency
                     WHERE created_at < now() - interval '24 hours' LIMIT 5000))",
                &[],
            )
            .await?;
        total += deleted;
        if deleted < 5000 {
            return Ok(total);
        }
    }
}

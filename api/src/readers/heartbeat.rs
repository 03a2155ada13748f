//! Heartbeats: `POST /v1/readers/heartbeat`, and [`LastSeen`], the in-memory table of when
//! this API process last heard from each reader.
//!
//! Every authenticated reader post counts as a heartbeat, the explicit heartbeat being the
//! one for a reader with nothing else to say. None of them writes: they note the time in
//! [`LastSeen`] (a mutex around a map, held for one insert), and
//! [`crate::readers::liveness`] writes the whole table to `readers.last_seen_at` every
//! few seconds in one statement. A reader's request path thus stays free of writes to its
//! own row (and of the row lock such a write would take).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use actix_web::{HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::reader_rejection;
use crate::error::{ApiError, ErrorBody};
use crate::readers::post::ReaderPost;

/// When each reader was last heard from by this process, since the last flush.
#[derive(Debug, Default)]
pub struct LastSeen {
    seen: Mutex<HashMap<Uuid, OffsetDateTime>>,
}

impl LastSeen {
    /// Notes that `reader` was heard from now.
    pub fn mark(&self, reader: Uuid) {
        self.mark_at(reader, OffsetDateTime::now_utc());
    }

    fn mark_at(&self, reader: Uuid, at: OffsetDateTime) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = seen.entry(reader).or_insert(at);
        if *entry < at {
            *entry = at;
        }
    }

    /// Takes everything noted so far, leaving the table empty.
    pub fn take(&self) -> HashMap<Uuid, OffsetDateTime> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts back what a failed flush took, to be written next time.
    pub fn restore(&self, taken: HashMap<Uuid, OffsetDateTime>) {
        for (reader, at) in taken {
            self.mark_at(reader, at);
        }
    }
}

/// A heartbeat carries nothing; the body may be empty or `{}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    pub reader_id: Uuid,
    /// The server's clock, for the reader to check its own against.
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub server_time: OffsetDateTime,
    /// Silent longer than this, the reader is reported offline.
    pub offline_after_secs: i64,
}

/// Tell the server this reader is alive.
///
/// Any other authenticated reader post counts as a heartbeat too; this one is for a
/// reader with nothing else to report. Nothing is written per heartbeat.
#[utoipa::path(
    tag = "card readers",
    request_body(content = Option<HeartbeatRequest>, description = "Empty, `{}` or `null`"),
    responses(
        (status = 200, body = HeartbeatResponse),
        (status = 400, description = "A body that is not `{}`", body = ErrorBody),
        (status = 401, description = "Unknown or disabled reader key", body = ErrorBody),
        (status = 403, description = "Not a reader key", body = ErrorBody),
    ),
    security(("reader_key" = []))
)]
#[post("/v1/readers/heartbeat")]
pub async fn heartbeat(post: ReaderPost, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let ReaderPost {
        pool,
        last_seen,
        key,
        ..
    } = &post;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("malformed_body", "the body is not UTF-8"))?
        .trim();
    // No bytes at all and `null` are no body (the document lets the body be absent); white
    // space alone is not JSON, so it is refused like any other bad body.
    if !body.is_empty() && text != "null" {
        crate::body::object::<HeartbeatRequest>(text)?;
    }
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(concat!(
            "SELECT id, extract(epoch FROM offline_after)::bigint
             FROM readers r WHERE ",
            crate::auth::key_matches!(),
            " AND enabled"
        ))
        .await?;
    let Some(row) = client.query_opt(&statement, &[&key.presented]).await? else {
        return Err(reader_rejection(pool, key).await);
    };
    let reader_id: Uuid = row.get(0);
    last_seen.mark(reader_id);
    Ok(HttpResponse::Ok().json(HeartbeatResponse {
        reader_id,
        server_time: OffsetDateTime::now_utc(),
        offline_after_secs: row.get(1),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_seen_keeps_the_latest_time_and_survives_a_failed_flush() {
        let seen = LastSeen::default();
        let reader = Uuid::now_v7();
        let early = OffsetDateTime::UNIX_EPOCH;
        let late = early + time::Duration::hours(1);
        seen.mark_at(reader, late);
        seen.mark_at(reader, early);
        let taken = seen.take();
        assert_eq!(taken.get(&reader), Some(&late));
        assert!(seen.take().is_empty());
        seen.mark_at(reader, early);
        seen.restore(taken);
        assert_eq!(seen.take().get(&reader), Some(&late));
    }
}

//! `GET /v1/readers/{id}/gaps` (admin): the seq numbers a reader used around but never got
//! accepted — events lost on the way, or rejected — read from the `reader_seqs` registry.
//!
//! A gap is a run of numbers missing between two accepted ones; numbers before the first
//! accepted seq are not gaps (a reader may start anywhere).

use actix_web::{HttpResponse, get, web};
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody};
use latch_core::credentials::Scope;

/// The most gaps one answer lists.
pub const MAX_GAPS: i64 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GapFilter {
    /// Most gaps listed, 1 to 1000 (default 100), oldest first.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SeqGaps {
    pub reader_id: Uuid,
    /// The lowest and highest seq accepted from this reader (absent: none yet).
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// How many seqs were accepted.
    pub accepted: i64,
    /// How many numbers between `first_seq` and `last_seq` were never accepted.
    pub missing: i64,
    /// The missing runs, oldest first, each from `from` to `to` inclusive.
    pub gaps: Vec<SeqGap>,
    /// More gaps exist than listed.
    pub truncated: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SeqGap {
    pub from: i64,
    pub to: i64,
}

/// The seq numbers a reader skipped: missing events.
#[utoipa::path(
    tag = "registry",
    params(("id" = Uuid, Path, description = "Reader id"), GapFilter),
    responses(
        (status = 200, body = SeqGaps),
        (status = 400, description = "Invalid limit", body = ErrorBody),
        (status = 404, description = "No such reader", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[get("/v1/readers/{id}/gaps")]
pub async fn gaps(
    pool: web::Data<Pool>,
    admin: Admin,
    id: web::Path<Uuid>,
    filter: web::Query<GapFilter>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Scope::SitesRead)?;
    let reader_id = id.into_inner();
    let limit = filter.limit.unwrap_or(100);
    if !(1..=MAX_GAPS).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be 1 to {MAX_GAPS}"),
        ));
    }
    let client = pool.get().await?;
    let summary = client
        .query_opt(
            "SELECT (SELECT min(seq) FROM reader_seqs WHERE reader_id = $1) AS first_seq,
                    (SELECT max(seq) FROM reader_seqs WHERE reader_id = $1) AS last_seq,
                    (SELECT count(*) FROM reader_seqs WHERE reader_id = $1) AS accepted,
                    d.site
             FROM readers r JOIN doors d ON d.id = r.door_id WHERE r.id = $1",
            &[&reader_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("reader_not_found", "no reader with this id"))?;
    admin.require_site(summary.get("site"))?;
    let first_seq: Option<i64> = summary.get("first_seq");
    let last_seq: Option<i64> = summary.get("last_seq");
    let accepted: i64 = summary.get("accepted");
    let rows = client
        .query(
            "SELECT seq + 1, next - 1 FROM (
                 SELECT seq, lead(seq) OVER (ORDER BY seq) AS next
                 FROM reader_seqs WHERE reader_id = $1
             ) s
             WHERE next - seq > 1
             ORDER BY seq
             LIMIT $2",
            &[&reader_id, &(limit + 1)],
        )
        .await?;
    let truncated = rows.len() as i64 > limit;
    let gaps = rows
        .iter()
        .take(limit as usize)
        .map(|row| SeqGap {
            from: row.get(0),
            to: row.get(1),
        })
        .collect();
    let missing = match (first_seq, last_seq) {
        (Some(first), Some(last)) => last
            .saturating_sub(first)
            .saturating_add(1)
            .saturating_sub(accepted),
        _ => 0,
    };
    Ok(HttpResponse::Ok().json(SeqGaps {
        reader_id,
        first_seq,
        last_seq,
        accepted,
        missing,
        gaps,
        truncated,
    }))
}

//! Reading the registry: the action log (newest first, keyset-paginated) and the
//! presence roll-call.
//!
//! Pages are cut on `(recorded_at, id)`, the registry's primary key, so a page boundary
//! never moves when new actions arrive: following `next_cursor` returns every older row
//! exactly once, however much is written meanwhile.

use actix_web::{HttpResponse, get, post, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use deadpool_postgres::Pool;
use latch_core::event::EventKind;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody};
use crate::timestamp::Timestamp;
use latch_core::credentials::Scope;

/// The largest page of the action log.
pub const MAX_PAGE: i64 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ActionFilter {
    pub door_id: Option<Uuid>,
    pub holder_id: Option<Uuid>,
    /// An event kind, e.g. `unlock_denied`.
    pub kind: Option<String>,
    /// Recorded at or after (RFC 3339).
    #[serde(default)]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<Timestamp>,
    /// Recorded before (RFC 3339).
    #[serde(default)]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<Timestamp>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Action {
    pub id: Uuid,
    pub kind: String,
    pub site: Option<String>,
    pub door_id: Option<Uuid>,
    pub holder_id: Option<Uuid>,
    pub card_id: Option<String>,
    pub reader_id: Option<Uuid>,
    pub reader_seq: Option<i64>,
    pub grant_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    /// The webhook endpoint an action about one concerns.
    pub endpoint_id: Option<Uuid>,
    /// What was decided; for an unlock decided offline, what the reader decided.
    pub decision: Option<String>,
    /// For an unlock decided offline: the server's verdict when it was uploaded (`reason`
    /// explains it).
    pub server_decision: Option<String>,
    pub reason: Option<String>,
    pub decided_offline: bool,
    /// The reader's clock (`occurred_at`) was too far from server time when it arrived.
    pub clock_skewed: bool,
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: OffsetDateTime,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActionPage {
    pub items: Vec<Action>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn encode_cursor(recorded_at: OffsetDateTime, id: Uuid) -> String {
    let at = recorded_at.format(&Rfc3339).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(format!("{at}|{id}"))
}

fn decode_cursor(cursor: &str) -> Result<(OffsetDateTime, Uuid), ApiError> {
    let invalid = || ApiError::bad_request("invalid_cursor", "cursor is not one this API issued");
    let text = URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(invalid)?;
    let (at, id) = text.split_once('|').ok_or_else(invalid)?;
    Ok((
        OffsetDateTime::parse(at, &Rfc3339).map_err(|_| invalid())?,
        id.parse().map_err(|_| invalid())?,
    ))
}

/// Browse the registry, newest first.
#[utoipa::path(
    tag = "registry",
    params(ActionFilter),
    responses(
        (status = 200, body = ActionPage),
        (status = 400, description = "Invalid filter or cursor", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[get("/v1/actions")]
pub async fn list_actions(
    pool: web::Data<Pool>,
    admin: Admin,
    filter: web::Query<ActionFilter>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Scope::RegistryRead)?;
    let filter = filter.into_inner();
    let since = Timestamp::checked_opt(filter.since, "since")?;
    let until = Timestamp::checked_opt(filter.until, "until")?;
    let limit = filter.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    if let Some(kind) = &filter.kind {
        kind.parse::<EventKind>()
            .map_err(|message| ApiError::bad_request("invalid_kind", message))?;
    }
    let (after_at, after_id) = match &filter.cursor {
        Some(cursor) => {
            let (at, id) = decode_cursor(cursor)?;
            (Some(at), Some(id))
        }
        None => (None, None),
    };
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, kind, site, door_id, holder_id, card_id, reader_id, reader_seq, grant_id,
                    actor_id, endpoint_id, decision, server_decision, reason, decided_offline, clock_skewed,
                    occurred_at, recorded_at
             FROM actions
             WHERE ($1::uuid IS NULL OR door_id = $1)
               AND ($2::uuid IS NULL OR holder_id = $2)
               AND ($3::text IS NULL OR kind = $3)
               AND ($4::timestamptz IS NULL OR recorded_at >= $4)
               AND ($5::timestamptz IS NULL OR recorded_at < $5)
               AND ($6::timestamptz IS NULL OR (recorded_at, id) < ($6, $7::uuid))
               AND ($9::text[] IS NULL OR site = ANY ($9))
             ORDER BY recorded_at DESC, id DESC
             LIMIT $8",
            &[
                &filter.door_id,
                &filter.holder_id,
                &filter.kind,
                &since,
                &until,
                &after_at,
                &after_id,
                &(limit + 1),
                admin.site_filter(),
            ],
        )
        .await?;
    let more = rows.len() as i64 > limit;
    let items: Vec<Action> = rows
        .iter()
        .take(limit as usize)
        .map(|row| Action {
            id: row.get("id"),
            kind: row.get("kind"),
            site: row.get("site"),
            door_id: row.get("door_id"),
            holder_id: row.get("holder_id"),
            card_id: row.get("card_id"),
            reader_id: row.get("reader_id"),
            reader_seq: row.get("reader_seq"),
            grant_id: row.get("grant_id"),
            actor_id: row.get("actor_id"),
            endpoint_id: row.get("endpoint_id"),
            decision: row.get("decision"),
            server_decision: row.get("server_decision"),
            reason: row.get("reason"),
            decided_offline: row.get("decided_offline"),
            clock_skewed: row.get("clock_skewed"),
            occurred_at: row.get("occurred_at"),
            recorded_at: row.get("recorded_at"),
        })
        .collect();
    let next_cursor = match (more, items.last()) {
        (true, Some(last)) => Some(encode_cursor(last.recorded_at, last.id)),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(ActionPage { items, next_cursor }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Presence {
    pub site: String,
    pub count: usize,
    /// How many of them are marked safe (during an evacuation).
    pub safe: usize,
    pub people: Vec<PresentHolder>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PresentHolder {
    pub holder_id: Uuid,
    pub name: String,
    pub card_id: String,
    /// The door they checked in through.
    pub door_id: Uuid,
    pub door_name: String,
    /// When they checked in: the reader's clock, capped at the server's (the server's
    /// alone when the reader's clock was flagged skewed).
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub since: OffsetDateTime,
    /// When a marshal marked them safe during this stay (`POST .../safe`), if one did.
    #[serde(with = "crate::timestamp::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub marked_safe_at: Option<OffsetDateTime>,
}

/// The people present at `site` (one, with `holder`), by name.
async fn present(
    client: &deadpool_postgres::Object,
    site: &str,
    holder: Option<Uuid>,
) -> Result<Vec<PresentHolder>, ApiError> {
    let rows = client
        .query(
            "SELECT p.holder_id, h.name, h.card_id, p.door_id, d.name AS door_name, p.as_of,
                    CASE WHEN p.safe_at >= p.as_of THEN p.safe_at END AS marked_safe_at
             FROM presence p
             JOIN holders h ON h.id = p.holder_id
             JOIN doors d ON d.id = p.door_id
             WHERE p.site = $1 AND p.present AND ($2::uuid IS NULL OR p.holder_id = $2)
             ORDER BY h.name, p.holder_id",
            &[&site, &holder],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| PresentHolder {
            holder_id: row.get("holder_id"),
            name: row.get("name"),
            card_id: row.get("card_id"),
            door_id: row.get("door_id"),
            door_name: row.get("door_name"),
            since: row.get("as_of"),
            marked_safe_at: row.get("marked_safe_at"),
        })
        .collect())
}

/// The roll-call of a site the token may read.
async fn roll_call(pool: &Pool, admin: &Admin, site: String) -> Result<Presence, ApiError> {
    admin.require(Scope::RegistryRead)?;
    crate::admin::check_site(&site)?;
    admin.require_site(&site)?;
    let people = present(&pool.get().await?, &site, None).await?;
    Ok(Presence {
        site,
        count: people.len(),
        safe: people.iter().filter(|p| p.marked_safe_at.is_some()).count(),
        people,
    })
}

/// Who is checked in at a site now: the evacuation roll-call.
#[utoipa::path(
    tag = "registry",
    params(("site" = String, Path, description = "Site name")),
    responses((status = 200, body = Presence)),
    security(("admin_token" = []))
)]
#[get("/v1/sites/{site}/presence")]
pub async fn presence(
    pool: web::Data<Pool>,
    admin: Admin,
    site: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(roll_call(&pool, &admin, site.into_inner()).await?))
}

/// The roll-call as CSV, for a spreadsheet or a printout: one line per person present
/// (`name,card_id,door,since,marked_safe_at`, times in RFC 3339), by name.
#[utoipa::path(
    tag = "registry",
    params(("site" = String, Path, description = "Site name")),
    responses((status = 200, content_type = "text/csv", body = String)),
    security(("admin_token" = []))
)]
#[get("/v1/sites/{site}/presence.csv")]
pub async fn presence_csv(
    pool: web::Data<Pool>,
    admin: Admin,
    site: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let roll = roll_call(&pool, &admin, site.into_inner()).await?;
    let mut csv = String::from("holder_id,name,card_id,door,since,marked_safe_at\r\n");
    let time = |at: OffsetDateTime| at.format(&Rfc3339).unwrap_or_default();
    for person in &roll.people {
        let fields = [
            person.holder_id.to_string(),
            person.name.clone(),
            person.card_id.clone(),
            person.door_name.clone(),
            time(person.since),
            person.marked_safe_at.map(time).unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        csv.push_str(&line.join(","));
        csv.push_str("\r\n");
    }
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"roll-call-{}.csv\"", roll.site),
        ))
        .body(csv))
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break. A field a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) gets a leading `'`.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Mark a person present at the site safe, during an evacuation.
///
/// Recorded as `marked_safe` with its author and published; the roll-call shows it until
/// they check out or in again. Marking someone already marked changes nothing.
#[utoipa::path(
    tag = "registry",
    params(
        ("site" = String, Path, description = "Site name"),
        ("holder_id" = Uuid, Path, description = "The person"),
    ),
    responses(
        (status = 200, description = "Marked (or already marked)", body = PresentHolder),
        (status = 404, description = "Not on this site now", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[post("/v1/sites/{site}/presence/{holder_id}/safe")]
pub async fn mark_safe(
    req: actix_web::HttpRequest,
    pool: web::Data<Pool>,
    admin: Admin,
    path: web::Path<(String, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (site, holder) = path.into_inner();
    admin.require(Scope::SitesWrite)?;
    crate::admin::check_site(&site)?;
    admin.require_site(&site)?;
    let trace = crate::trace::TraceParent::for_request(&req);
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    const MARK: &str = "latch_mark_safe";
    let outcome = crate::admin::change(&tx, MARK, &admin, &trace, &[&site, &holder]).await?;
    tx.commit().await?;
    if outcome == crate::admin::Outcome::NotFound {
        return Err(ApiError::not_found(
            "not_present",
            "this person is not checked in at this site",
        ));
    }
    let person = present(&client, &site, Some(holder))
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found("not_present", "this person has just left"))?;
    Ok(HttpResponse::Ok().json(person))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let at = OffsetDateTime::now_utc();
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(at, id)).ok(), Some((at, id)));
        assert!(decode_cursor("not-a-cursor").is_err());
    }
}

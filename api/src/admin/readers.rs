//! Card readers: enrol (the key is shown once), disable, list.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use deadpool_postgres::{GenericClient, Pool};
use latch_core::credentials::{self, CredentialKind};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Outcome, change, check_text, door_not_found, unexpected};
use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::{self, Keyed, StoredResponse};
use crate::trace::TraceParent;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReader {
    pub door_id: Uuid,
    #[schema(example = "Main entrance, outside")]
    pub name: String,
    /// Silent longer than this many seconds, the reader is reported offline
    /// (`reader_offline`); 1 to 604800, default 300.
    #[serde(default, deserialize_with = "crate::whole::optional")]
    #[schema(example = 300)]
    pub offline_after_secs: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Reader {
    pub id: Uuid,
    pub door_id: Uuid,
    pub name: String,
    pub enabled: bool,
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Silent longer than this many seconds, the reader is reported offline.
    pub offline_after_secs: i64,
    /// `false` from a `reader_offline` until the reader is heard from again.
    pub online: bool,
    /// When the reader was last heard from (written every few seconds, not per request);
    /// absent if never.
    #[serde(with = "crate::timestamp::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen_at: Option<OffsetDateTime>,
}

/// The columns [`Reader`] is read from.
const READER_COLUMNS: &str = "id, door_id, name, enabled, created_at, \
     extract(epoch FROM offline_after)::bigint AS offline_after_secs, online, last_seen_at";

impl From<&Row> for Reader {
    fn from(row: &Row) -> Self {
        Reader {
            id: row.get("id"),
            door_id: row.get("door_id"),
            name: row.get("name"),
            enabled: row.get("enabled"),
            created_at: row.get("created_at"),
            offline_after_secs: row.get("offline_after_secs"),
            online: row.get("online"),
            last_seen_at: row.get("last_seen_at"),
        }
    }
}

/// The longest `offline_after_secs`: a week.
/// The longest a reader may be silent before it is reported offline: a week.
pub const MAX_OFFLINE_AFTER_SECS: i64 = 7 * 86_400;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnrolledReader {
    #[serde(flatten)]
    pub reader: Reader,
    /// The reader's key. Shown only in this response: store it in the reader now. A replay
    /// of the request (the same `Idempotency-Key`) answers without it, since the key is
    /// never stored; if the first answer was lost, disable this reader and enrol another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Enrol a card reader at a door; the answer carries its key, once.
#[utoipa::path(
    tag = "administration",
    request_body = NewReader,
    responses(
        (status = 201, description = "The reader and its key (`Idempotent-Replayed: true`, and no key, when it answers an `Idempotency-Key` sent before)", body = EnrolledReader),
        (status = 404, description = "No such door", body = ErrorBody),
        (status = 422, description = "Invalid name", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[post("/v1/readers")]
pub async fn enrol_reader(
    req: HttpRequest,
    pool: web::Data<Pool>,
    admin: Admin,
    body: crate::body::Json<NewReader>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    check_text("name", &body.name, 200)?;
    if let Some(secs) = body.offline_after_secs
        && !(1..=MAX_OFFLINE_AFTER_SECS).contains(&secs)
    {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("offline_after_secs must be 1 to {MAX_OFFLINE_AFTER_SECS}"),
        ));
    }
    let trace = TraceParent::for_request(&req);
    let keyed = Keyed::from_request(&req, admin.client_scope(), &body)?;
    let key = credentials::generate(CredentialKind::ReaderKey);
    idempotency::run(&pool, keyed, async |tx| {
        let id = Uuid::now_v7();
        const ENROL: &str = "latch_enrol_reader";
        let args: [&(dyn ToSql + Sync); 5] = [
            &id,
            &body.door_id,
            &body.name,
            &key.hash,
            &body.offline_after_secs,
        ];
        match change(tx, ENROL, &admin, &trace, &args).await? {
            Outcome::Done => {}
            Outcome::DoorNotFound => return Err(door_not_found()),
            other => return Err(unexpected(ENROL, other)),
        }
        // The key is shown in this answer only; a replay of the request answers without it.
        Ok(
            StoredResponse::new(StatusCode::CREATED, &reader_by_id(tx, id).await?)?
                .showing_once("key", key.plain.expose().clone()),
        )
    })
    .await
}

#[utoipa::path(
    tag = "administration",
    params(("id" = Uuid, Path, description = "Reader id")),
    responses(
        (status = 200, body = Reader),
        (status = 404, description = "No such reader", body = ErrorBody),
        (status = 409, description = "Already disabled", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[post("/v1/readers/{id}/disable")]
pub async fn disable_reader(
    req: HttpRequest,
    pool: web::Data<Pool>,
    admin: Admin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let trace = TraceParent::for_request(&req);
    let keyed = Keyed::from_request(&req, admin.client_scope(), &id)?;
    idempotency::run(&pool, keyed, async |tx| {
        const DISABLE: &str = "latch_disable_reader";
        match change(tx, DISABLE, &admin, &trace, &[&id]).await? {
            Outcome::Done => {}
            Outcome::NotFound => {
                return Err(ApiError::not_found(
                    "reader_not_found",
                    "no reader with this id",
                ));
            }
            Outcome::Already => {
                return Err(ApiError::conflict(
                    "reader_disabled",
                    "this reader is already disabled",
                ));
            }
            other => return Err(unexpected(DISABLE, other)),
        }
        StoredResponse::new(StatusCode::OK, &reader_by_id(tx, id).await?)
    })
    .await
}

async fn reader_by_id(db: &impl GenericClient, id: Uuid) -> Result<Reader, ApiError> {
    let row = db
        .query_one(
            &format!("SELECT {READER_COLUMNS} FROM readers WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(Reader::from(&row))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReaderFilter {
    pub door_id: Option<Uuid>,
}

/// List readers, optionally of one door.
#[utoipa::path(
    tag = "administration",
    params(ReaderFilter),
    responses((status = 200, body = Vec<Reader>)),
    security(("admin_token" = []))
)]
#[get("/v1/readers")]
pub async fn list_readers(
    pool: web::Data<Pool>,
    _admin: Admin,
    filter: web::Query<ReaderFilter>,
) -> Result<HttpResponse, ApiError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {READER_COLUMNS} FROM readers
                 WHERE $1::uuid IS NULL OR door_id = $1 ORDER BY created_at, id"
            ),
            &[&filter.door_id],
        )
        .await?;
    let readers: Vec<Reader> = rows.iter().map(Reader::from).collect();
    Ok(HttpResponse::Ok().json(readers))
}

//! Card readers: enrol (the key is shown once), disable, rotate the key, list.

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
use latch_core::credentials::Scope;

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
    /// Binds the reader to a client certificate (mutual TLS): the SHA-256 of the
    /// certificate, 64 hex digits (pairs may be separated by `:`). The reader's key then
    /// works only over a connection that presented this certificate.
    #[serde(default)]
    #[schema(pattern = "^([0-9a-fA-F]{64}|([0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2})$")]
    pub client_cert_sha256: Option<String>,
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
    /// After a key rotation: until when the key the reader had before still works;
    /// absent when only the current key does.
    #[serde(with = "crate::timestamp::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_key_until: Option<OffsetDateTime>,
    /// The SHA-256 of the client certificate the reader must present (hex), if bound.
    pub client_cert_sha256: Option<String>,
}

/// The columns [`Reader`] is read from.
const READER_COLUMNS: &str = "id, door_id, name, enabled, created_at, \
     extract(epoch FROM offline_after)::bigint AS offline_after_secs, online, last_seen_at, \
     CASE WHEN previous_key_until > now() THEN previous_key_until END AS previous_key_until, \
     encode(client_cert_sha256, 'hex') AS client_cert_sha256";

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
            previous_key_until: row.get("previous_key_until"),
            client_cert_sha256: row.get("client_cert_sha256"),
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
    admin.require(Scope::SitesWrite)?;
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
    let client_cert = match &body.client_cert_sha256 {
        Some(text) => Some(crate::tls::parse_fingerprint(text).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_field",
                "client_cert_sha256 must be 64 hex digits (pairs may be separated by ':')",
            )
        })?),
        None => None,
    }
    .map(Vec::from);
    let trace = TraceParent::for_request(&req);
    let keyed = Keyed::from_request(&req, admin.client_scope(), &body)?;
    let key = credentials::generate(CredentialKind::ReaderKey);
    idempotency::run(&pool, keyed, async |tx| {
        let id = Uuid::now_v7();
        const ENROL: &str = "latch_enrol_reader";
        let args: [&(dyn ToSql + Sync); 6] = [
            &id,
            &body.door_id,
            &body.name,
            &key.hash,
            &body.offline_after_secs,
            &client_cert,
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
    admin.require(Scope::SitesWrite)?;
    let id = id.into_inner();
    let trace = TraceParent::for_request(&req);
    let keyed = Keyed::from_request(&req, admin.client_scope(), &id)?;
    idempotency::run(&pool, keyed, async |tx| {
        const DISABLE: &str = "latch_disable_reader";
        match change(tx, DISABLE, &admin, &trace, &[&id]).await? {
            Outcome::Done => {}
            Outcome::NotFound => return Err(reader_not_found()),
            Outcome::Already => return Err(reader_disabled()),
            other => return Err(unexpected(DISABLE, other)),
        }
        StoredResponse::new(StatusCode::OK, &reader_by_id(tx, id).await?)
    })
    .await
}

/// The longest grace period of a rotated key: 30 days.
pub const MAX_GRACE_SECS: i64 = 30 * 86_400;

/// The grace period when the request names none: a day.
pub const DEFAULT_GRACE_SECS: i64 = 86_400;

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRotation {
    /// How long the reader's current key keeps working beside the new one, in seconds:
    /// 0 (the old key stops at once, e.g. when it was stolen) to 2592000; default 86400.
    #[serde(default, deserialize_with = "crate::whole::optional")]
    #[schema(example = 3600)]
    pub grace_secs: Option<i64>,
}

/// Give a reader a new key (shown once); the old one works on for the grace period.
///
/// Recorded as a `reader_key_rotated` action naming both keys by the start of their
/// SHA-256. Rotating again inside the grace period ends the older key's grace at once.
#[utoipa::path(
    tag = "administration",
    params(("id" = Uuid, Path, description = "Reader id")),
    request_body(content = Option<KeyRotation>, description = "Empty, `{}` or `null`: the default grace period"),
    responses(
        (status = 200, description = "The reader and its new key (`Idempotent-Replayed: true`, and no key, when it answers an `Idempotency-Key` sent before)", body = EnrolledReader),
        (status = 404, description = "No such reader", body = ErrorBody),
        (status = 409, description = "The reader is disabled", body = ErrorBody),
        (status = 422, description = "grace_secs out of range", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[post("/v1/readers/{id}/keys:rotate")]
pub async fn rotate_reader_key(
    req: HttpRequest,
    pool: web::Data<Pool>,
    admin: Admin,
    id: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    admin.require(Scope::SitesWrite)?;
    let id = id.into_inner();
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("malformed_body", "the body is not UTF-8"))?
        .trim();
    let rotation = if text.is_empty() || text == "null" {
        KeyRotation::default()
    } else {
        crate::body::object::<KeyRotation>(text)?
    };
    let grace_secs = rotation.grace_secs.unwrap_or(DEFAULT_GRACE_SECS);
    if !(0..=MAX_GRACE_SECS).contains(&grace_secs) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("grace_secs must be 0 to {MAX_GRACE_SECS}"),
        ));
    }
    let trace = TraceParent::for_request(&req);
    let keyed = Keyed::from_request(&req, admin.client_scope(), &(id, grace_secs))?;
    let key = credentials::generate(CredentialKind::ReaderKey);
    idempotency::run(&pool, keyed, async |tx| {
        const ROTATE: &str = "latch_rotate_reader_key";
        match change(tx, ROTATE, &admin, &trace, &[&id, &key.hash, &grace_secs]).await? {
            Outcome::Done => {}
            Outcome::NotFound => return Err(reader_not_found()),
            Outcome::Already => return Err(reader_disabled()),
            other => return Err(unexpected(ROTATE, other)),
        }
        Ok(
            StoredResponse::new(StatusCode::OK, &reader_by_id(tx, id).await?)?
                .showing_once("key", key.plain.expose().clone()),
        )
    })
    .await
}

fn reader_not_found() -> ApiError {
    ApiError::not_found("reader_not_found", "no reader with this id")
}

fn reader_disabled() -> ApiError {
    ApiError::conflict("reader_disabled", "this reader is disabled")
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
    admin: Admin,
    filter: web::Query<ReaderFilter>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Scope::SitesRead)?;
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {READER_COLUMNS} FROM readers
                 WHERE ($1::uuid IS NULL OR door_id = $1)
                   AND ($2::text[] IS NULL
                        OR door_id IN (SELECT id FROM doors WHERE site = ANY ($2)))
                 ORDER BY created_at, id"
            ),
            &[&filter.door_id, admin.site_filter()],
        )
        .await?;
    let readers: Vec<Reader> = rows.iter().map(Reader::from).collect();
    Ok(HttpResponse::Ok().json(readers))
}

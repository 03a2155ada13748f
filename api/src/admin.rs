//! Administrator endpoints: doors, holders, readers and grants.
//!
//! Every change is one transaction that also records an action (who did what), so the
//! registry and the event stream see administration too. Reader keys are returned once,
//! at enrolment; only their hash is stored.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use deadpool_postgres::{GenericClient, Pool, Transaction};
use latch_core::credentials::{self, CredentialKind};
use latch_core::event::EventKind;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody, sql_state};
use crate::idempotency::{self, Keyed, StoredResponse};
use crate::trace::TraceParent;

const UNIQUE_VIOLATION: &str = "23505";
const FOREIGN_KEY_VIOLATION: &str = "23503";

/// What an administrative action touched, for its registry row.
#[derive(Default)]
struct Touched {
    site: Option<String>,
    door_id: Option<Uuid>,
    holder_id: Option<Uuid>,
    reader_id: Option<Uuid>,
    grant_id: Option<Uuid>,
}

async fn record(
    tx: &Transaction<'_>,
    kind: EventKind,
    admin: Admin,
    trace: &TraceParent,
    touched: Touched,
) -> Result<Uuid, ApiError> {
    let id = Uuid::now_v7();
    let statement = tx
        .prepare_cached(
            "INSERT INTO actions (id, kind, site, door_id, holder_id, reader_id, grant_id, actor_id,
                                  occurred_at, trace_parent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), $9)",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &id,
            &kind.as_str(),
            &touched.site,
            &touched.door_id,
            &touched.holder_id,
            &touched.reader_id,
            &touched.grant_id,
            &admin.id,
            &trace.to_string(),
        ],
    )
    .await?;
    Ok(id)
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() || value.chars().count() > max || value.chars().any(char::is_control)
    {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("{field} must be 1 to {max} printable characters"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- doors

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDoor {
    /// Lower-case letters, digits, `-` and `_`.
    #[schema(example = "hq")]
    pub site: String,
    #[schema(example = "Main entrance")]
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Door {
    pub id: Uuid,
    pub site: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<&Row> for Door {
    fn from(row: &Row) -> Self {
        Door {
            id: row.get("id"),
            site: row.get("site"),
            name: row.get("name"),
            created_at: row.get("created_at"),
        }
    }
}

fn valid_site(site: &str) -> bool {
    let bytes = site.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

/// Create a door on a site.
#[utoipa::path(
    tag = "administration",
    request_body = NewDoor,
    responses(
        (status = 201, body = Door),
        (status = 409, description = "A door with this name exists on the site", body = ErrorBody),
        (status = 422, description = "Invalid site or name", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[post("/v1/doors")]
pub async fn create_door(
    req: HttpRequest,
    pool: web::Data<Pool>,
    admin: Admin,
    body: web::Json<NewDoor>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if !valid_site(&body.site) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "site must be 1 to 63 lower-case letters, digits, '-' or '_', starting with a letter or digit",
        ));
    }
    check_text("name", &body.name, 200)?;
    let trace = TraceParent::for_request(&req);
    let keyed = Keyed::from_request(&req, admin.client_scope(), &body)?;
    idempotency::run(&pool, keyed, async |tx| {
        let row = tx
            .query_one(
                "INSERT INTO doors (id, site, name) VALUES ($1, $2, $3)
                 RETURNING id, site, name, created_at",
                &[&Uuid::now_v7(), &body.site, &body.name],
            )
            .await
            .map_err(|e| match sql_state(&e) {
                Some(UNIQUE_VIOLATION) => ApiError::conflict(
                    "door_exists",
                    "a door with this name already exists on this site",
                ),
                _ => e.into(),
            })?;
        let door = Door::from(&row);
        let touched = Touched {
            site: Some(door.site.clone()),
            door_id: Some(door.id),
            ..Touched::default()
        };
        record(tx, EventKind::DoorCreated, admin, &trace, touched).await?;
        StoredResponse::new(StatusCode::CREATED, &door)
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DoorFilter {
    pub site: Option<String>,
}

/// List doors, optionally of one site.
#[utoipa::path(
    tag = "administration",
    params(DoorFilter),
    responses((status = 200, body = Vec<Door>)),
    security(("admin_token" = []))
)]
#[get("/v1/doors")]
pub async fn list_doors(
    pool: web::Data<Pool>,
    _admin: Admin,
    filter: web::Query<DoorFilter>,
) -> Result<HttpResponse, ApiError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, site, name, created_at FROM doors
             WHERE $1::text IS NULL OR site = $1 ORDER BY site, name",
            &[&filter.site],
        )
        .await?;
    let doors: Vec<Door> = rows.iter().map(Door::from).collect();
    Ok(HttpResponse::Ok().json(doors))
}

// ---------------------------------------------------------------- holders

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHolder {
    #[schema(example = "04A2B9C1D2")]
    pub card_id: String,
    #[schema(example = "Ada Lovelace")]
    pub name: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HolderChange {
    /// `false` denies every unlock for this holder, whatever their grants.
    pub active: Option<bool>,
    pub name: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Holder {
    pub id: Uuid,
    pub card_id: String,
    pub name: String,
    pub active: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<&Row> for Holder {
    fn from(row: &Row) -> Self {
        Holder {
            id: row.get("id"),
            card_id: row.get("card_id"),
            name: row.get("name"),
            active: row.get("active"),
            created_at: row.get("created_at"),
        }
    }
}

/// Register a card holder.
#[utoipa::path(
    tag = "administration",
    request_body = NewHolder,
    responses(
        (status = 201, body = Holder),
        (status = 409, description = "The card belongs to another holder", body = ErrorBody),
        (status = 422, description = "Invalid card id or name", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[post("/v1/holders")]
pub async fn create_holder(
    req: HttpRequest,
    pool: web::Data<Pool>,
    admin: Admin,
    body: web::Json<NewHolder>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    check_text("card_id", &body.card_id, 128)?;
    check_text("name", &body.name, 200)?;
    let trace = TraceParent::for_request(&req);
    let keyed = Keyed::from_request(&req, admin.client_scope(), &body)?;
    idempotency::run(&pool, keyed, async |tx| {
        let row = tx
            .query_one(
                "INSERT INTO holders (id, card_id, name) VALUES ($1, $2, $3)
                 RETURNING id, card_id, name, active, created_at",
                &[&Uuid::now_v7(), &body.card_id, &body.name],
            )
            .await
            .map_err(|e| match sql_state(&e) {
                Some(UNIQUE_VIOLATION) => {
                    ApiError::conflict("card_taken", "this card already belongs to a holder")
                }
                _ => e.into(),
            })?;
        let holder = Holder::from(&row);
        let touched = Touched {
            holder_id: Some(holder.id),
            ..Touched::default()
        };
        record(tx, EventKind::HolderCreated, admin, &trace, touched).await?;
        StoredResponse::new(StatusCode::CREATED, &holder)
    })
    .await
}

/// Rename a holder or (de)activate them.
#[utoipa::path(
    tag = "administration",
    request_body = HolderChange,
    params(("id" = Uuid, Path, description = "Holder id")),
    responses(
        (status = 200, body = Holder),
        (status = 404, description = "No such holder", body = ErrorBody),
        (status = 422, description = "Nothing to change, or an invalid name", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[patch("/v1/holders/{id}")]
pub async fn update_holder(
    req: HttpRequest,
    pool: web::Data<Pool>,
    admin: Admin,
    id: web::Path<Uuid>,
    body: web::Json<HolderChange>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let body = body.into_inner();
    if body.active.is_none() && body.name.is_none() {
        return Err(ApiError::unprocessable(
            "nothing_to_change",
            "give `active`, `name` or both",
        ));
    }
    if let Some(name) = &body.name {
        check_text("name", name, 200)?;
    }
    let trace = TraceParent::for_request(&req);
    idempotency::run(&pool, None, async |tx| {
        let row = tx
            .query_opt(
                "UPDATE holders SET active = COALESCE($2, active), name = COALESCE($3, name)
                 WHERE id = $1 RETURNING id, card_id, name, active, created_at",
                &[&id, &body.active, &body.name],
            )
            .await?
            .ok_or_else(|| ApiError::not_found("holder_not_found", "no holder with this id"))?;
        let touched = Touched {
            holder_id: Some(id),
            ..Touched::default()
        };
        record(tx, EventKind::HolderUpdated, admin, &trace, touched).await?;
        StoredResponse::new(StatusCode::OK, &Holder::from(&row))
    })
    .await
}

/// List holders, by name.
#[utoipa::path(
    tag = "administration",
    responses((status = 200, body = Vec<Holder>)),
    security(("admin_token" = []))
)]
#[get("/v1/holders")]
pub async fn list_holders(pool: web::Data<Pool>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, card_id, name, active, created_at FROM holders ORDER BY name, id",
            &[],
        )
        .await?;
    let holders: Vec<Holder> = rows.iter().map(Holder::from).collect();
    Ok(HttpResponse::Ok().json(holders))
}

// ---------------------------------------------------------------- readers

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReader {
    pub door_id: Uuid,
    #[schema(example = "Main entrance, outside")]
    pub name: String,
    /// Silent longer than this many seconds, the reader is reported offline
    /// (`reader_offline`); 1 to 604800, default 300.
    #[serde(default)]
    #[schema(example = 300)]
    pub offline_after_secs: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Reader {
    pub id: Uuid,
    pub door_id: Uuid,
    pub name: String,
    pub enabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Silent longer than this many seconds, the reader is reported offline.
    pub offline_after_secs: i64,
    /// `false` from a `reader_offline` until the reader is heard from again.
    pub online: bool,
    /// When the reader was last heard from (written every few seconds, not per request);
    /// absent if never.
    #[serde(with = "time::serde::rfc3339::option")]
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
const MAX_OFFLINE_AFTER_SECS: i64 = 7 * 86_400;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnrolledReader {
    #[serde(flatten)]
    pub reader: Reader,
    /// The reader's key. Shown only in this response: store it in the reader now.
    pub key: String,
}

/// Enrol a card reader at a door; the answer carries its key, once.
#[utoipa::path(
    tag = "administration",
    request_body = NewReader,
    responses(
        (status = 201, body = EnrolledReader),
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
    body: web::Json<NewReader>,
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
        let row = tx
            .query_one(
                &format!(
                    // Without offline_after_secs, the column's default (five minutes).
                    "INSERT INTO readers (id, door_id, name, key_hash, offline_after)
                     VALUES ($1, $2, $3, $4,
                             COALESCE($5::bigint * interval '1 second', interval '5 minutes'))
                     RETURNING {READER_COLUMNS}, (SELECT site FROM doors WHERE id = $2) AS site"
                ),
                &[
                    &Uuid::now_v7(),
                    &body.door_id,
                    &body.name,
                    &key.hash,
                    &body.offline_after_secs,
                ],
            )
            .await
            .map_err(|e| match sql_state(&e) {
                Some(FOREIGN_KEY_VIOLATION) => {
                    ApiError::not_found("door_not_found", "no door with this id")
                }
                _ => e.into(),
            })?;
        let reader = Reader::from(&row);
        let touched = Touched {
            site: row.get("site"),
            door_id: Some(reader.door_id),
            reader_id: Some(reader.id),
            ..Touched::default()
        };
        record(tx, EventKind::ReaderEnrolled, admin, &trace, touched).await?;
        StoredResponse::new(
            StatusCode::CREATED,
            &EnrolledReader {
                reader,
                key: key.plain.expose().clone(),
            },
        )
    })
    .await
}

/// Disable a reader: its key stops working at once.
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
        let row = tx
            .query_opt(
                "SELECT r.id, r.door_id, r.name, r.enabled, r.created_at, d.site
                 FROM readers r JOIN doors d ON d.id = r.door_id WHERE r.id = $1 FOR UPDATE OF r",
                &[&id],
            )
            .await?
            .ok_or_else(|| ApiError::not_found("reader_not_found", "no reader with this id"))?;
        if !row.get::<_, bool>("enabled") {
            return Err(ApiError::conflict(
                "reader_disabled",
                "this reader is already disabled",
            ));
        }
        let row = tx
            .query_one(
                &format!(
                    "UPDATE readers SET enabled = false, disabled_at = now() WHERE id = $1
                     RETURNING {READER_COLUMNS}"
                ),
                &[&id],
            )
            .await?;
        let reader = Reader::from(&row);
        let touched = Touched {
            door_id: Some(reader.door_id),
            reader_id: Some(reader.id),
            ..Touched::default()
        };
        record(tx, EventKind::ReaderDisabled, admin, &trace, touched).await?;
        StoredResponse::new(StatusCode::OK, &reader)
    })
    .await
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

// ---------------------------------------------------------------- grants

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    pub holder_id: Uuid,
    pub door_id: Uuid,
    /// From when the grant opens the door; now when absent.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_from: Option<OffsetDateTime>,
    /// Until when; open-ended when absent.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_until: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Grant {
    pub id: Uuid,
    pub holder_id: Uuid,
    pub door_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub valid_from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_until: Option<OffsetDateTime>,
    pub granted_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_by: Option<Uuid>,
}

const GRANT_COLUMNS: &str = "id, holder_id, door_id, valid_from, valid_until, granted_by, created_at, revoked_at, revoked_by";

impl From<&Row> for Grant {
    fn from(row: &Row) -> Self {
        Grant {
            id: row.get("id"),
            holder_id: row.get("holder_id"),
            door_id: row.get("door_id"),
            valid_from: row.get("valid_from"),
            valid_until: row.get("valid_until"),
            granted_by: row.get("granted_by"),
            created_at: row.get("created_at"),
            revoked_at: row.get("revoked_at"),
            revoked_by: row.get("revoked_by"),
        }
    }
}

async fn site_of(tx: &impl GenericClient, door_id: Uuid) -> Result<Option<String>, ApiError> {
    Ok(tx
        .query_opt("SELECT site FROM doors WHERE id = $1", &[&door_id])
        .await?
        .map(|row| row.get(0)))
}

/// Grant a holder access to a door, for a period.
#[utoipa::path(
    tag = "administration",
    request_body = NewGrant,
    responses(
        (status = 201, body = Grant),
        (status = 404, description = "No such holder or door", body = ErrorBody),
        (status = 422, description = "valid_until is not after valid_from", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[post("/v1/grants")]
pub async fn create_grant(
    req: HttpRequest,
    pool: web::Data<Pool>,
    admin: Admin,
    body: web::Json<NewGrant>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let valid_from = body.valid_from.unwrap_or_else(OffsetDateTime::now_utc);
    if body.valid_until.is_some_and(|until| until <= valid_from) {
        return Err(ApiError::unprocessable(
            "invalid_period",
            "valid_until must be after valid_from",
        ));
    }
    let trace = TraceParent::for_request(&req);
    let keyed = Keyed::from_request(&req, admin.client_scope(), &body)?;
    idempotency::run(&pool, keyed, async |tx| {
        let site = site_of(tx, body.door_id)
            .await?
            .ok_or_else(|| ApiError::not_found("door_not_found", "no door with this id"))?;
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO grants (id, holder_id, door_id, valid_from, valid_until, granted_by)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {GRANT_COLUMNS}"
                ),
                &[
                    &Uuid::now_v7(),
                    &body.holder_id,
                    &body.door_id,
                    &valid_from,
                    &body.valid_until,
                    &admin.id,
                ],
            )
            .await
            .map_err(|e| match sql_state(&e) {
                Some(FOREIGN_KEY_VIOLATION) => {
                    ApiError::not_found("holder_not_found", "no holder with this id")
                }
                _ => e.into(),
            })?;
        let grant = Grant::from(&row);
        let touched = Touched {
            site: Some(site),
            door_id: Some(grant.door_id),
            holder_id: Some(grant.holder_id),
            grant_id: Some(grant.id),
            ..Touched::default()
        };
        record(tx, EventKind::GrantCreated, admin, &trace, touched).await?;
        StoredResponse::new(StatusCode::CREATED, &grant)
    })
    .await
}

/// Revoke a grant; unlocks it allowed are denied from now on.
#[utoipa::path(
    tag = "administration",
    params(("id" = Uuid, Path, description = "Grant id")),
    responses(
        (status = 200, description = "The revoked grant", body = Grant),
        (status = 404, description = "No such grant", body = ErrorBody),
        (status = 409, description = "Already revoked", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[delete("/v1/grants/{id}")]
pub async fn revoke_grant(
    req: HttpRequest,
    pool: web::Data<Pool>,
    admin: Admin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let trace = TraceParent::for_request(&req);
    idempotency::run(&pool, None, async |tx| {
        let current = tx
            .query_opt(
                "SELECT g.revoked_at, d.site FROM grants g JOIN doors d ON d.id = g.door_id
                 WHERE g.id = $1 FOR UPDATE OF g",
                &[&id],
            )
            .await?
            .ok_or_else(|| ApiError::not_found("grant_not_found", "no grant with this id"))?;
        if current.get::<_, Option<OffsetDateTime>>(0).is_some() {
            return Err(ApiError::conflict(
                "grant_revoked",
                "this grant is already revoked",
            ));
        }
        let row = tx
            .query_one(
                &format!(
                    "UPDATE grants SET revoked_at = now(), revoked_by = $2 WHERE id = $1
                     RETURNING {GRANT_COLUMNS}"
                ),
                &[&id, &admin.id],
            )
            .await?;
        let grant = Grant::from(&row);
        let touched = Touched {
            site: current.get(1),
            door_id: Some(grant.door_id),
            holder_id: Some(grant.holder_id),
            grant_id: Some(grant.id),
            ..Touched::default()
        };
        record(tx, EventKind::GrantRevoked, admin, &trace, touched).await?;
        StoredResponse::new(StatusCode::OK, &grant)
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GrantFilter {
    pub holder_id: Option<Uuid>,
    pub door_id: Option<Uuid>,
}

/// List grants, optionally of one holder and/or door, newest first.
#[utoipa::path(
    tag = "administration",
    params(GrantFilter),
    responses((status = 200, body = Vec<Grant>)),
    security(("admin_token" = []))
)]
#[get("/v1/grants")]
pub async fn list_grants(
    pool: web::Data<Pool>,
    _admin: Admin,
    filter: web::Query<GrantFilter>,
) -> Result<HttpResponse, ApiError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {GRANT_COLUMNS} FROM grants
                 WHERE ($1::uuid IS NULL OR holder_id = $1) AND ($2::uuid IS NULL OR door_id = $2)
                 ORDER BY created_at DESC, id DESC"
            ),
            &[&filter.holder_id, &filter.door_id],
        )
        .await?;
    let grants: Vec<Grant> = rows.iter().map(Grant::from).collect();
    Ok(HttpResponse::Ok().json(grants))
}

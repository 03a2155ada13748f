//! Grants: give a holder a door for a period, revoke, list.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use deadpool_postgres::{GenericClient, Pool};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Outcome, change, door_not_found, unexpected};
use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::{self, Keyed, StoredResponse};
use crate::timestamp::Timestamp;
use crate::trace::TraceParent;
use latch_core::credentials::Scope;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    pub holder_id: Uuid,
    pub door_id: Uuid,
    /// From when the grant opens the door; now when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_from: Option<Timestamp>,
    /// Until when; open-ended when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_until: Option<Timestamp>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Grant {
    pub id: Uuid,
    pub holder_id: Uuid,
    pub door_id: Uuid,
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub valid_from: OffsetDateTime,
    #[serde(with = "crate::timestamp::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_until: Option<OffsetDateTime>,
    pub granted_by: Uuid,
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "crate::timestamp::rfc3339::option")]
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

async fn grant_by_id(db: &impl GenericClient, id: Uuid) -> Result<Grant, ApiError> {
    let row = db
        .query_one(
            &format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(Grant::from(&row))
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
    body: crate::body::Json<NewGrant>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Scope::AccessWrite)?;
    let body = body.into_inner();
    let valid_from = Timestamp::checked_opt(body.valid_from, "valid_from")?
        .unwrap_or_else(OffsetDateTime::now_utc);
    let valid_until = Timestamp::checked_opt(body.valid_until, "valid_until")?;
    if valid_until.is_some_and(|until| until <= valid_from) {
        return Err(ApiError::unprocessable(
            "invalid_period",
            "valid_until must be after valid_from",
        ));
    }
    let trace = TraceParent::for_request(&req);
    let keyed = Keyed::from_request(&req, admin.client_scope(), &body)?;
    idempotency::run(&pool, keyed, async |tx| {
        let id = Uuid::now_v7();
        const CREATE: &str = "latch_create_grant";
        let args: [&(dyn ToSql + Sync); 5] = [
            &id,
            &body.holder_id,
            &body.door_id,
            &valid_from,
            &valid_until,
        ];
        match change(tx, CREATE, &admin, &trace, &args).await? {
            Outcome::Done => {}
            Outcome::DoorNotFound => return Err(door_not_found()),
            Outcome::HolderNotFound => {
                return Err(ApiError::not_found(
                    "holder_not_found",
                    "no holder with this id",
                ));
            }
            other => return Err(unexpected(CREATE, other)),
        }
        StoredResponse::new(StatusCode::CREATED, &grant_by_id(tx, id).await?)
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
    admin.require(Scope::AccessWrite)?;
    let id = id.into_inner();
    let trace = TraceParent::for_request(&req);
    idempotency::run(&pool, None, async |tx| {
        const REVOKE: &str = "latch_revoke_grant";
        match change(tx, REVOKE, &admin, &trace, &[&id]).await? {
            Outcome::Done => {}
            Outcome::NotFound => {
                return Err(ApiError::not_found(
                    "grant_not_found",
                    "no grant with this id",
                ));
            }
            Outcome::Already => {
                return Err(ApiError::conflict(
                    "grant_revoked",
                    "this grant is already revoked",
                ));
            }
            other => return Err(unexpected(REVOKE, other)),
        }
        StoredResponse::new(StatusCode::OK, &grant_by_id(tx, id).await?)
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
    admin: Admin,
    filter: web::Query<GrantFilter>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Scope::SitesRead)?;
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {GRANT_COLUMNS} FROM grants
                 WHERE ($1::uuid IS NULL OR holder_id = $1) AND ($2::uuid IS NULL OR door_id = $2)
                   AND ($3::text[] IS NULL
                        OR door_id IN (SELECT id FROM doors WHERE site = ANY ($3)))
                 ORDER BY created_at DESC, id DESC"
            ),
            &[&filter.holder_id, &filter.door_id, admin.site_filter()],
        )
        .await?;
    let grants: Vec<Grant> = rows.iter().map(Grant::from).collect();
    Ok(HttpResponse::Ok().json(grants))
}

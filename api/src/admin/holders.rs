//! Card holders: register, rename or (de)activate, list.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, patch, post, web};
use deadpool_postgres::{GenericClient, Pool};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Outcome, change, check_text, unexpected};
use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::{self, Keyed, StoredResponse};
use crate::trace::TraceParent;
use latch_core::credentials::Scope;

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
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub active: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub name: Option<String>,
}

/// A field that may be left out but not sent as `null` (which would mean nothing here).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Holder {
    pub id: Uuid,
    pub card_id: String,
    pub name: String,
    pub active: bool,
    #[serde(with = "crate::timestamp::rfc3339")]
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
    body: crate::body::Json<NewHolder>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Scope::AccessWrite)?;
    admin.require_every_site()?;
    let body = body.into_inner();
    check_text("card_id", &body.card_id, 128)?;
    check_text("name", &body.name, 200)?;
    let trace = TraceParent::for_request(&req);
    let keyed = Keyed::from_request(&req, admin.client_scope(), &body)?;
    idempotency::run(&pool, keyed, async |tx| {
        let id = Uuid::now_v7();
        const CREATE: &str = "latch_create_holder";
        match change(
            tx,
            CREATE,
            &admin,
            &trace,
            &[&id, &body.card_id, &body.name],
        )
        .await?
        {
            Outcome::Done => {}
            Outcome::Conflict => {
                return Err(ApiError::conflict(
                    "card_taken",
                    "this card already belongs to a holder",
                ));
            }
            other => return Err(unexpected(CREATE, other)),
        }
        StoredResponse::new(StatusCode::CREATED, &holder_by_id(tx, id).await?)
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
    body: crate::body::Json<HolderChange>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Scope::AccessWrite)?;
    admin.require_every_site()?;
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
        const UPDATE: &str = "latch_update_holder";
        match change(tx, UPDATE, &admin, &trace, &[&id, &body.active, &body.name]).await? {
            Outcome::Done => {}
            Outcome::NotFound => {
                return Err(ApiError::not_found(
                    "holder_not_found",
                    "no holder with this id",
                ));
            }
            other => return Err(unexpected(UPDATE, other)),
        }
        StoredResponse::new(StatusCode::OK, &holder_by_id(tx, id).await?)
    })
    .await
}

async fn holder_by_id(db: &impl GenericClient, id: Uuid) -> Result<Holder, ApiError> {
    let row = db
        .query_one(
            "SELECT id, card_id, name, active, created_at FROM holders WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(Holder::from(&row))
}

/// List holders, by name.
#[utoipa::path(
    tag = "administration",
    responses((status = 200, body = Vec<Holder>)),
    security(("admin_token" = []))
)]
#[get("/v1/holders")]
pub async fn list_holders(pool: web::Data<Pool>, admin: Admin) -> Result<HttpResponse, ApiError> {
    admin.require(Scope::SitesRead)?;
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

//! Doors: create and list.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use deadpool_postgres::{GenericClient, Pool};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Outcome, change, check_site, check_text, unexpected};
use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::{self, Keyed, StoredResponse};
use crate::trace::TraceParent;
use latch_core::credentials::Scope;

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
    #[serde(with = "crate::timestamp::rfc3339")]
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
    body: crate::body::Json<NewDoor>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Scope::SitesWrite)?;
    let body = body.into_inner();
    check_site(&body.site)?;
    admin.require_site(&body.site)?;
    check_text("name", &body.name, 200)?;
    let trace = TraceParent::for_request(&req);
    let keyed = Keyed::from_request(&req, admin.client_scope(), &body)?;
    idempotency::run(&pool, keyed, async |tx| {
        let id = Uuid::now_v7();
        const CREATE: &str = "latch_create_door";
        match change(tx, CREATE, &admin, &trace, &[&id, &body.site, &body.name]).await? {
            Outcome::Done => {}
            Outcome::Conflict => {
                return Err(ApiError::conflict(
                    "door_exists",
                    "a door with this name already exists on this site",
                ));
            }
            other => return Err(unexpected(CREATE, other)),
        }
        let row = tx
            .query_one(
                "SELECT id, site, name, created_at FROM doors WHERE id = $1",
                &[&id],
            )
            .await?;
        StoredResponse::new(StatusCode::CREATED, &Door::from(&row))
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
    admin: Admin,
    filter: web::Query<DoorFilter>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Scope::SitesRead)?;
    if let Some(site) = &filter.site {
        check_site(site)?;
    }
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, site, name, created_at FROM doors
             WHERE ($1::text IS NULL OR site = $1) AND ($2::text[] IS NULL OR site = ANY ($2))
             ORDER BY site, name",
            &[&filter.site, admin.site_filter()],
        )
        .await?;
    let doors: Vec<Door> = rows.iter().map(Door::from).collect();
    Ok(HttpResponse::Ok().json(doors))
}

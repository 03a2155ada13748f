//! Webhook endpoints: the integrators' subscriptions, each with its own URL, event filter,
//! rate, signing secret and failures.
//!
//! Managing them takes an `admin` token for every site (an endpoint may receive any site's
//! events). Every change is a database function that records its action (migration V8).
//! The signing secret is shown once, at creation and at each rotation; the API's login
//! cannot read it back. A URL is checked by the outbound policy ([`latch_core::outbound`]):
//! https, and an address that is not loopback, private, link-local or a metadata service,
//! unless the settings allow it — the worker checks again at every call.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use deadpool_postgres::{GenericClient, Pool};
use latch_core::credentials::Scope;
use latch_core::event::EventKind;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use utoipa::ToSchema;
use uuid::Uuid;

use super::readers::{DEFAULT_GRACE_SECS, MAX_GRACE_SECS};
use super::{Outcome, change, check_site, check_text, unexpected};
use crate::auth::Admin;
use crate::config::ApiConfig;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::{self, Keyed, StoredResponse};
use crate::trace::TraceParent;

/// Calls per second an endpoint gets when its creator names no rate.
pub const DEFAULT_RATE: i32 = 50;
/// The highest rate an endpoint may have.
pub const MAX_RATE: i32 = 1000;
/// The longest description.
pub const MAX_DESCRIPTION: usize = 500;
/// The longest URL.
pub const MAX_URL: usize = 2048;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// Where events are POSTed: https (http only where the settings allow it), an address
    /// on the public internet unless the settings allow named private ranges.
    #[schema(
        example = "https://hr.example.com/hooks/latch",
        min_length = 1,
        max_length = 2048
    )]
    pub url: String,
    /// 1 to 500 printable characters.
    #[serde(default)]
    pub description: Option<String>,
    /// Event kinds delivered; every kind when absent or null.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 64)]
    pub kinds: Option<Vec<String>>,
    /// Sites whose events are delivered (events without a site are not); every site's, and
    /// events without one, when absent or null.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 100)]
    pub sites: Option<Vec<String>>,
    /// Calls per second at most, 1 to 1000 (default 50).
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub rate_per_second: Option<i64>,
}

/// What a PATCH changes: fields left out stay as they are.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointChange {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, min_length = 1, max_length = 2048)]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub description: Option<String>,
    /// `null`: every kind from now on.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>, min_items = 1, max_items = 64)]
    pub kinds: Option<Option<Vec<String>>>,
    /// `null`: every site from now on.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>, min_items = 1, max_items = 100)]
    pub sites: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "crate::whole::optional")]
    #[schema(nullable = false)]
    pub rate_per_second: Option<i64>,
    /// `true` stops deliveries (events keep being routed to the endpoint and wait);
    /// `false` starts them again.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub disabled: Option<bool>,
    /// With `disabled: false`: `where_stopped` (the default) delivers what was routed to
    /// the endpoint while it was disabled; `now` skips it and starts with new events.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub resume: Option<Resume>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resume {
    WhereStopped,
    Now,
}

/// A field that may be left out but not sent as `null`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A field whose `null` means something (left out: `None`; null: `Some(None)`).
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRotation {
    /// How long the current secret keeps signing beside the new one, in seconds: 0 (at
    /// once, e.g. when it leaked) to 2592000; default 86400.
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub grace_secs: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub description: String,
    /// `null`: every kind.
    pub kinds: Option<Vec<String>>,
    /// `null`: every site.
    pub sites: Option<Vec<String>>,
    pub rate_per_second: i32,
    /// Until when the previous secret signs beside the current one, after a rotation.
    #[serde(with = "crate::timestamp::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_secret_until: Option<OffsetDateTime>,
    /// Set while deliveries are stopped.
    #[serde(with = "crate::timestamp::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<OffsetDateTime>,
    pub disabled_reason: Option<String>,
    pub created_by: Uuid,
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// The last call it answered with a 2xx.
    #[serde(with = "crate::timestamp::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success_at: Option<OffsetDateTime>,
    /// Failing without a success since then.
    #[serde(with = "crate::timestamp::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failing_since: Option<OffsetDateTime>,
}

/// An endpoint with its signing secret: the answer to its creation and to each rotation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// The signing secret (`whsec_` and the base64 of 32 random bytes), for the Standard
    /// Webhooks libraries. Shown only in this answer: latch never shows it again. A replay of
    /// the request (the same `Idempotency-Key`) answers without it; if the first answer was
    /// lost, rotate the secret again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

const ENDPOINT_COLUMNS: &str = "id, url, description, kinds, sites, rate_per_second, \
     previous_secret_until, disabled_at, disabled_reason, created_by, created_at, updated_at, \
     last_success_at, failing_since";

impl From<&Row> for Endpoint {
    fn from(row: &Row) -> Self {
        Endpoint {
            id: row.get("id"),
            url: row.get("url"),
            description: row.get("description"),
            kinds: row.get("kinds"),
            sites: row.get("sites"),
            rate_per_second: row.get("rate_per_second"),
            previous_secret_until: row.get("previous_secret_until"),
            disabled_at: row.get("disabled_at"),
            disabled_reason: row.get("disabled_reason"),
            created_by: row.get("created_by"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            last_success_at: row.get("last_success_at"),
            failing_since: row.get("failing_since"),
        }
    }
}

pub(super) async fn endpoint_by_id(
    db: &impl GenericClient,
    id: Uuid,
) -> Result<Endpoint, ApiError> {
    let row = db
        .query_opt(
            &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or_else(endpoint_not_found)?;
    Ok(Endpoint::from(&row))
}

pub(super) fn endpoint_not_found() -> ApiError {
    ApiError::not_found("endpoint_not_found", "no webhook endpoint with this id")
}

/// Endpoints deliver any site's events: only an `admin` token for every site manages them.
pub(super) fn require_endpoint_admin(admin: &Admin) -> Result<(), ApiError> {
    admin.require(Scope::Admin)?;
    if admin.sites.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "site_not_allowed",
            "webhook endpoints may receive every site's events: only a token for every site manages them",
        ));
    }
    Ok(())
}

/// Checks a URL's form and where it resolves now (422 `url_refused`).
async fn check_url(config: &ApiConfig, url: &str) -> Result<String, ApiError> {
    if url.len() > MAX_URL {
        return Err(ApiError::unprocessable(
            "invalid_url",
            format!("url must be at most {MAX_URL} bytes"),
        ));
    }
    match config.outbound.check(url).await {
        // As written once parsed (percent-encoded): what is stored must fit too.
        Ok(parsed) if parsed.as_str().len() > MAX_URL => Err(ApiError::unprocessable(
            "invalid_url",
            format!("url must be at most {MAX_URL} bytes"),
        )),
        Ok(parsed) => Ok(parsed.to_string()),
        Err(refused @ latch_core::outbound::Refused::Invalid(_)) => Err(ApiError::unprocessable(
            "invalid_url",
            format!("url: {refused}"),
        )),
        Err(refused) => Err(ApiError::unprocessable(
            "url_refused",
            format!("url: {refused}"),
        )),
    }
}

fn check_kinds(kinds: &[String]) -> Result<(), ApiError> {
    if kinds.is_empty() || kinds.len() > 64 {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "kinds must list 1 to 64 event kinds, or be null for every kind",
        ));
    }
    for kind in kinds {
        kind.parse::<EventKind>()
            .map_err(|message| ApiError::unprocessable("unknown_kind", message))?;
    }
    Ok(())
}

/// Sites must be well formed and known (some door is on them).
async fn check_sites(db: &impl GenericClient, sites: &[String]) -> Result<(), ApiError> {
    if sites.is_empty() || sites.len() > 100 {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "sites must list 1 to 100 sites, or be null for every site",
        ));
    }
    for site in sites {
        check_site(site)?;
    }
    let known: Vec<String> = db
        .query(
            "SELECT DISTINCT site FROM doors WHERE site = ANY ($1)",
            &[&sites],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if let Some(unknown) = sites.iter().find(|s| !known.contains(s)) {
        return Err(ApiError::unprocessable(
            "unknown_site",
            format!("no door is on site {unknown:?}"),
        ));
    }
    Ok(())
}

fn check_rate(rate: Option<i64>) -> Result<Option<i32>, ApiError> {
    match rate {
        None => Ok(None),
        Some(rate) if (1..=i64::from(MAX_RATE)).contains(&rate) => Ok(Some(rate as i32)),
        Some(_) => Err(ApiError::unprocessable(
            "invalid_field",
            format!("rate_per_second must be 1 to {MAX_RATE}"),
        )),
    }
}

/// Subscribe an endpoint to events; its signing secret is in the answer, once.
#[utoipa::path(
    tag = "webhooks",
    request_body = NewEndpoint,
    responses(
        (status = 201, description = "The endpoint and its `secret` (`whsec_…`), shown this once (`Idempotent-Replayed: true`, and no secret, when it answers an `Idempotency-Key` sent before)", body = EndpointWithSecret),
        (status = 403, description = "Not an `admin` token for every site", body = ErrorBody),
        (status = 422, description = "Invalid or refused URL, unknown kind or site, bad description or rate", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[post("/v1/webhooks/endpoints")]
pub async fn create_endpoint(
    req: HttpRequest,
    pool: web::Data<Pool>,
    config: web::Data<ApiConfig>,
    admin: Admin,
    body: crate::body::Json<NewEndpoint>,
) -> Result<HttpResponse, ApiError> {
    require_endpoint_admin(&admin)?;
    let body = body.into_inner();
    if let Some(description) = &body.description {
        check_text("description", description, MAX_DESCRIPTION)?;
    }
    let description = body.description.clone().unwrap_or_default();
    if let Some(kinds) = &body.kinds {
        check_kinds(kinds)?;
    }
    let rate = check_rate(body.rate_per_second)?.unwrap_or(DEFAULT_RATE);
    let url = check_url(&config, &body.url).await?;
    if let Some(sites) = &body.sites {
        check_sites(&pool.get().await?, sites).await?;
    }
    let trace = TraceParent::for_request(&req);
    let keyed = Keyed::from_request(&req, admin.client_scope(), &body)?;
    let secret = latch_core::signature::generate_secret();
    idempotency::run(&pool, keyed, async |tx| {
        let id = Uuid::now_v7();
        const CREATE: &str = "latch_create_webhook_endpoint";
        let args: [&(dyn ToSql + Sync); 7] = [
            &id,
            &url,
            &description,
            &body.kinds,
            &body.sites,
            &rate,
            secret.expose(),
        ];
        match change(tx, CREATE, &admin, &trace, &args).await? {
            Outcome::Done => {}
            other => return Err(unexpected(CREATE, other)),
        }
        Ok(
            StoredResponse::new(StatusCode::CREATED, &endpoint_by_id(tx, id).await?)?
                .showing_once("secret", secret.expose().clone()),
        )
    })
    .await
}

/// List the webhook endpoints, oldest first.
#[utoipa::path(
    tag = "webhooks",
    responses((status = 200, body = Vec<Endpoint>)),
    security(("admin_token" = []))
)]
#[get("/v1/webhooks/endpoints")]
pub async fn list_endpoints(pool: web::Data<Pool>, admin: Admin) -> Result<HttpResponse, ApiError> {
    require_endpoint_admin(&admin)?;
    let rows = pool
        .get()
        .await?
        .query(
            &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id"),
            &[],
        )
        .await?;
    let endpoints: Vec<Endpoint> = rows.iter().map(Endpoint::from).collect();
    Ok(HttpResponse::Ok().json(endpoints))
}

/// One webhook endpoint.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, body = Endpoint),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[get("/v1/webhooks/endpoints/{id}")]
pub async fn get_endpoint(
    pool: web::Data<Pool>,
    admin: Admin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    require_endpoint_admin(&admin)?;
    let endpoint = endpoint_by_id(&pool.get().await?, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(endpoint))
}

/// Change an endpoint's URL, description, filter or rate; disable or enable it.
///
/// Enabling resumes from where deliveries stopped (`resume: "where_stopped"`, the
/// default) or with new events only (`resume: "now"`).
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    request_body = EndpointChange,
    responses(
        (status = 200, description = "The endpoint as changed", body = Endpoint),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 422, description = "Invalid or refused URL, unknown kind or site, bad description or rate", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[patch("/v1/webhooks/endpoints/{id}")]
pub async fn update_endpoint(
    req: HttpRequest,
    pool: web::Data<Pool>,
    config: web::Data<ApiConfig>,
    admin: Admin,
    id: web::Path<Uuid>,
    body: crate::body::Json<EndpointChange>,
) -> Result<HttpResponse, ApiError> {
    require_endpoint_admin(&admin)?;
    let id = id.into_inner();
    let body = body.into_inner();
    if let Some(description) = &body.description {
        check_text("description", description, MAX_DESCRIPTION)?;
    }
    if let Some(Some(kinds)) = &body.kinds {
        check_kinds(kinds)?;
    }
    let rate = check_rate(body.rate_per_second)?;
    if body.resume.is_some() && body.disabled != Some(false) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "resume goes with disabled: false",
        ));
    }
    let url = match &body.url {
        Some(url) => Some(check_url(&config, url).await?),
        None => None,
    };
    if let Some(Some(sites)) = &body.sites {
        check_sites(&pool.get().await?, sites).await?;
    }
    let trace = TraceParent::for_request(&req);
    let keyed = Keyed::from_request(&req, admin.client_scope(), &(id, &body))?;
    idempotency::run(&pool, keyed, async |tx| {
        const UPDATE: &str = "latch_update_webhook_endpoint";
        let kinds = body.kinds.clone().flatten();
        let clear_kinds = matches!(body.kinds, Some(None));
        let sites = body.sites.clone().flatten();
        let clear_sites = matches!(body.sites, Some(None));
        let from_now = body.resume == Some(Resume::Now);
        let args: [&(dyn ToSql + Sync); 10] = [
            &id,
            &url,
            &body.description,
            &kinds,
            &clear_kinds,
            &sites,
            &clear_sites,
            &rate,
            &body.disabled,
            &from_now,
        ];
        match change(tx, UPDATE, &admin, &trace, &args).await? {
            Outcome::Done => {}
            Outcome::NotFound => return Err(endpoint_not_found()),
            other => return Err(unexpected(UPDATE, other)),
        }
        StoredResponse::new(StatusCode::OK, &endpoint_by_id(tx, id).await?)
    })
    .await
}

/// Delete an endpoint: nothing more is delivered to it, and its attempts are forgotten.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[delete("/v1/webhooks/endpoints/{id}")]
pub async fn delete_endpoint(
    req: HttpRequest,
    pool: web::Data<Pool>,
    admin: Admin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    require_endpoint_admin(&admin)?;
    let id = id.into_inner();
    let trace = TraceParent::for_request(&req);
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    const DELETE: &str = "latch_delete_webhook_endpoint";
    match change(&tx, DELETE, &admin, &trace, &[&id]).await? {
        Outcome::Done => {}
        Outcome::NotFound => return Err(endpoint_not_found()),
        other => return Err(unexpected(DELETE, other)),
    }
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Give an endpoint a new signing secret (shown once); the current one keeps signing beside
/// it for the grace period, so the receiver can switch without refusing a delivery.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    request_body(content = Option<SecretRotation>, description = "Empty, `{}` or `null`: the default grace period"),
    responses(
        (status = 200, description = "The endpoint and its new `secret`, shown this once (`Idempotent-Replayed: true`, and no secret, when it answers an `Idempotency-Key` sent before)", body = EndpointWithSecret),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 422, description = "grace_secs out of range", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[post("/v1/webhooks/endpoints/{id}/secret:rotate")]
pub async fn rotate_endpoint_secret(
    req: HttpRequest,
    pool: web::Data<Pool>,
    admin: Admin,
    id: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require_endpoint_admin(&admin)?;
    let id = id.into_inner();
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("malformed_body", "the body is not UTF-8"))?
        .trim();
    let grace_secs = if text.is_empty() || text == "null" {
        None
    } else {
        crate::body::object::<SecretRotation>(text)?.grace_secs
    }
    .unwrap_or(DEFAULT_GRACE_SECS);
    if !(0..=MAX_GRACE_SECS).contains(&grace_secs) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("grace_secs must be 0 to {MAX_GRACE_SECS}"),
        ));
    }
    let trace = TraceParent::for_request(&req);
    let keyed = Keyed::from_request(&req, admin.client_scope(), &(id, grace_secs))?;
    let secret = latch_core::signature::generate_secret();
    idempotency::run(&pool, keyed, async |tx| {
        const ROTATE: &str = "latch_rotate_webhook_secret";
        match change(
            tx,
            ROTATE,
            &admin,
            &trace,
            &[&id, secret.expose(), &grace_secs],
        )
        .await?
        {
            Outcome::Done => {}
            Outcome::NotFound => return Err(endpoint_not_found()),
            other => return Err(unexpected(ROTATE, other)),
        }
        Ok(
            StoredResponse::new(StatusCode::OK, &endpoint_by_id(tx, id).await?)?
                .showing_once("secret", secret.expose().clone()),
        )
    })
    .await
}

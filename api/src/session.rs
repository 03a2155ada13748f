//! Sessions: a token exchanged for a cookie, for browsers.
//!
//! A browser's `EventSource` cannot send an `Authorization` header, and a page should not
//! keep a token where its scripts can read it. `POST /v1/sessions` (with the token) sets an
//! `HttpOnly`, `SameSite=Strict` cookie (`Secure` over HTTPS) that stands for the token
//! until it expires (`LATCH_SESSION_TTL`, never past the token's own expiry), the session
//! is ended, or the token is revoked, and answers a CSRF token. The cookie alone reads
//! (GET and HEAD); a change made with it also needs the CSRF token in `X-CSRF-Token` (see
//! [`crate::auth`]). Only the SHA-256 of each is stored, in PostgreSQL, so every API
//! process knows every session.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, post, web};
use deadpool_postgres::Pool;
use latch_core::credentials::{self, CredentialKind};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::ApiConfig;
use crate::auth::{Admin, SESSION_COOKIE, session_cookie};
use crate::error::{ApiError, ErrorBody};

/// The path that ends the caller's session.
pub const CURRENT: &str = "/v1/sessions/current";

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionCreated {
    /// Send it back in `X-CSRF-Token` with every change made with the cookie (anything but
    /// GET and HEAD). Shown only in this answer; keep it in the page, never in a cookie or a
    /// URL.
    pub csrf_token: String,
    /// When the cookie stops working.
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// Start a browser session.
///
/// Exchanges the token in `Authorization` for the cookie `latch_session` (`HttpOnly`,
/// `SameSite=Strict`, `Secure` over HTTPS), which authenticates requests with the token's
/// scopes and sites: reading ones (GET) as it is — `EventSource` on `/v1/events/stream`,
/// for instance — and changes only with the answer's `csrf_token` in `X-CSRF-Token`.
#[utoipa::path(
    tag = "sessions",
    responses(
        (status = 201, description = "The cookie is set; the CSRF token is in the answer", body = SessionCreated),
        (status = 401, description = "No, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "A reader key", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[post("/v1/sessions")]
pub async fn create(
    req: HttpRequest,
    pool: web::Data<Pool>,
    config: web::Data<ApiConfig>,
    admin: Admin,
) -> Result<HttpResponse, ApiError> {
    if !req.headers().contains_key(header::AUTHORIZATION) {
        return Err(ApiError::unauthorized(
            "start a session with Authorization: Bearer <token>",
        ));
    }
    let session = credentials::generate(CredentialKind::Session);
    let csrf = credentials::generate(CredentialKind::Session);
    let ttl_secs = i64::try_from(config.session_ttl.as_secs()).unwrap_or(i64::MAX);
    let row = pool
        .get()
        .await?
        .query_one(
            "INSERT INTO sessions (id_hash, admin_id, expires_at, csrf_hash)
             SELECT $1, a.id, LEAST(now() + make_interval(secs => $3), a.expires_at), $4
             FROM admins a WHERE a.id = $2
             RETURNING expires_at",
            &[&session.hash, &admin.id, &(ttl_secs as f64), &csrf.hash],
        )
        .await?;
    let expires_at: OffsetDateTime = row.get("expires_at");
    let max_age = (expires_at - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
    let cookie = Cookie::build(SESSION_COOKIE, session.plain.expose().clone())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(req.connection_info().scheme() == "https")
        .max_age(max_age)
        .finish();
    tracing::info!(admin = %admin.id, %expires_at, "session started");
    Ok(HttpResponse::Created().cookie(cookie).json(SessionCreated {
        csrf_token: csrf.plain.expose().clone(),
        expires_at,
    }))
}

/// End this browser's session.
///
/// The cookie stops working at once, on every API process, and is cleared.
#[utoipa::path(
    tag = "sessions",
    responses(
        (status = 204, description = "Ended; the cookie is cleared"),
        (status = 401, description = "No session cookie, or not a live session", body = ErrorBody),
    ),
    security(("session" = []))
)]
#[delete("/v1/sessions/current")]
pub async fn end(req: HttpRequest, pool: web::Data<Pool>) -> Result<HttpResponse, ApiError> {
    let session =
        session_cookie(&req).ok_or_else(|| ApiError::unauthorized("no session cookie to end"))?;
    let ended = pool
        .get()
        .await?
        .execute(
            "DELETE FROM sessions WHERE id_hash = $1 AND expires_at > now()",
            &[&credentials::hash(&session)],
        )
        .await?;
    if ended == 0 {
        return Err(ApiError::unauthorized("unknown or expired session"));
    }
    let mut cookie = Cookie::build(SESSION_COOKIE, "")
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    cookie.make_removal();
    Ok(HttpResponse::NoContent().cookie(cookie).finish())
}

/// Forgets expired sessions (the API's hourly upkeep).
pub async fn prune(client: &deadpool_postgres::Object) -> Result<u64, tokio_postgres::Error> {
    client
        .execute("DELETE FROM sessions WHERE expires_at <= now()", &[])
        .await
}

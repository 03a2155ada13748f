//! Who is calling.
//!
//! Readers and admins present `Authorization: Bearer <credential>`; only the SHA-256 of a
//! credential is ever compared (see `latch_core::credentials`). Reader endpoints fold the
//! key check into their one SQL statement (the unlock path makes a single round trip), so
//! [`ReaderKey`] only parses the header; when that statement finds no reader,
//! [`reader_rejection`] works out whether to answer 401 or 403. Admin endpoints take an
//! [`Admin`], looked up before the handler runs.

use actix_web::dev::Payload;
use actix_web::http::{Method, StatusCode, header};
use actix_web::{FromRequest, HttpRequest, web};
use deadpool_postgres::Pool;
use futures::future::{Either, LocalBoxFuture, Ready, ready};
use latch_core::credentials::{self, Scope};
use uuid::Uuid;

use crate::error::ApiError;
use crate::limits;
use crate::tls::ClientCert;

fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let mut values = req.headers().get_all(header::AUTHORIZATION);
    let value = values
        .next()
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <credential>"))?;
    if values.next().is_some() {
        return Err(ApiError::unauthorized(
            "more than one Authorization header; send exactly one",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer <credential>`",
        )),
    }
}

/// The condition that reader `r` answers to what a request presents, `$1`
/// ([`ReaderKey::presented`]: the key's SHA-256, then the client certificate's if the
/// connection presented one): the key is the reader's, or the one it had before its last
/// rotation while the grace period lasts; and a reader bound to a certificate is found only
/// with that certificate. Every reader statement uses it (a macro, so that statements can be
/// `concat!`-ed constants).
macro_rules! key_matches {
    () => {
        "((r.key_hash = substring($1::bytea FROM 1 FOR 32)
           OR (r.previous_key_hash = substring($1::bytea FROM 1 FOR 32)
               AND r.previous_key_until > now()))
          AND (r.client_cert_sha256 IS NULL OR r.client_cert_sha256 = substring($1::bytea FROM 33)))"
    };
}
pub(crate) use key_matches;
pub const KEY_MATCHES: &str = key_matches!();

/// The hash of the reader key a request presents; checked by the handler's statement.
pub struct ReaderKey {
    /// The key's SHA-256.
    pub hash: Vec<u8>,
    /// What the reader statements take as `$1` ([`KEY_MATCHES`]): the key's SHA-256,
    /// followed by the client certificate's when the connection presented one.
    pub presented: Vec<u8>,
}

impl ReaderKey {
    /// Scopes idempotency keys to this credential.
    pub fn client_scope(&self) -> String {
        format!("reader:{}", hex::encode(&self.hash[..16]))
    }
}

impl FromRequest for ReaderKey {
    type Error = ApiError;
    type Future =
        Either<Ready<Result<Self, ApiError>>, LocalBoxFuture<'static, Result<Self, ApiError>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let hash = match bearer(req) {
            Ok(token) => credentials::hash(token),
            Err(error) => return Either::Left(ready(Err(error))),
        };
        if let Some(refused) = limits::of(req).and_then(|l| l.reader(&hash).err()) {
            return Either::Right(Box::pin(async move { Err(refused.answer().await) }));
        }
        let mut presented = hash.clone();
        if let Some(ClientCert(fingerprint)) = req.conn_data::<ClientCert>() {
            presented.extend_from_slice(fingerprint);
        }
        Either::Left(ready(Ok(ReaderKey { hash, presented })))
    }
}

/// The answer when a reader statement found no enabled reader with this key.
pub async fn reader_rejection(pool: &Pool, key: &ReaderKey) -> ApiError {
    let client = match pool.get().await {
        Ok(client) => client,
        Err(error) => return error.into(),
    };
    match client
        .query_opt(
            "SELECT 1 FROM admins WHERE token_hash = $1 AND revoked_at IS NULL
             AND (expires_at IS NULL OR expires_at > now())",
            &[&key.hash],
        )
        .await
    {
        Ok(Some(_)) => ApiError::forbidden("admin tokens cannot act as a card reader"),
        Ok(None) => ApiError::unauthorized("unknown or disabled reader key"),
        Err(error) => error.into(),
    }
}

/// The token of a live session: the session and its token unexpired, the token not
/// revoked — checked at every request, like a token.
async fn session_admin(
    client: &deadpool_postgres::Object,
    session: &[u8],
    csrf: Option<&[u8]>,
) -> Result<Admin, ApiError> {
    let row = client
        .query_opt(
            "SELECT a.id, a.token_hash, a.scopes, a.sites, s.csrf_hash FROM sessions s
             JOIN admins a ON a.id = s.admin_id
             WHERE s.id_hash = $1 AND s.expires_at > now() AND a.revoked_at IS NULL
               AND (a.expires_at IS NULL OR a.expires_at > now())",
            &[&session],
        )
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(
                "unknown or expired session, or its token was revoked; log in again",
            )
        })?;
    if let Some(csrf) = csrf {
        let expected: Option<Vec<u8>> = row.get("csrf_hash");
        if expected.as_deref() != Some(csrf) {
            return Err(csrf_refused("the X-CSRF-Token is not this session's"));
        }
    }
    Ok(Admin::from_row(&row, row.get("token_hash")))
}

/// The header a change made with a session cookie must carry: the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

fn csrf_refused(message: &'static str) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::FORBIDDEN,
        "csrf_refused",
        message,
    )
}

/// An authenticated token (`lat_…`): an administrator or an integrator, with what it may do.
#[derive(Debug, Clone)]
pub struct Admin {
    pub id: Uuid,
    /// The SHA-256 of the token presented; administrative database functions check it
    /// again themselves (its scope and site included).
    pub token_hash: Vec<u8>,
    pub scopes: Vec<Scope>,
    /// The sites it may read and act on; `None`: every site.
    pub sites: Option<Vec<String>>,
}

impl Admin {
    /// The token of an `admins` row (its `id`, `scopes` and `sites`), presented as `token_hash`.
    fn from_row(row: &tokio_postgres::Row, token_hash: Vec<u8>) -> Admin {
        let scopes: Vec<String> = row.get("scopes");
        Admin {
            id: row.get("id"),
            token_hash,
            scopes: scopes.iter().filter_map(|s| s.parse().ok()).collect(),
            sites: row.get("sites"),
        }
    }

    pub fn client_scope(&self) -> String {
        format!("admin:{}", self.id)
    }

    /// 403 `insufficient_scope` unless the token holds `needed` (or a scope that includes it).
    pub fn require(&self, needed: Scope) -> Result<(), ApiError> {
        if self.scopes.iter().any(|held| held.grants(needed)) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this token lacks the scope {needed}"),
        ))
    }

    /// 403 `site_not_allowed` unless the token covers `site`.
    pub fn require_site(&self, site: &str) -> Result<(), ApiError> {
        match &self.sites {
            Some(sites) if !sites.iter().any(|s| s == site) => Err(site_not_allowed()),
            _ => Ok(()),
        }
    }

    /// 403 `site_not_allowed` unless the token covers every site (holders belong to no one
    /// site, so only such a token may change them).
    pub fn require_every_site(&self) -> Result<(), ApiError> {
        match self.sites {
            Some(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "site_not_allowed",
                "holders belong to no one site: only a token for every site may change them",
            )),
            None => Ok(()),
        }
    }

    /// The sites a listing is limited to, as a query parameter (`NULL`: every site).
    pub fn site_filter(&self) -> &Option<Vec<String>> {
        &self.sites
    }
}

/// The answer when a token acts on a site outside its list.
pub fn site_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "site_not_allowed",
        "this token is not for this site",
    )
}

/// The session cookie's name (see [`crate::session`]).
pub const SESSION_COOKIE: &str = "latch_session";

/// The value of the request's session cookie, if it sent one.
pub fn session_cookie(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// What a request authenticates with: a token, or a session cookie — which makes a change
/// (anything but GET and HEAD) only with the session's CSRF token in `X-CSRF-Token`: a
/// browser sends the cookie with requests other sites make it send, but another site cannot
/// read the token the console's page keeps.
enum Presented {
    Token(Vec<u8>),
    /// The session's hash, and for a change the hash of the CSRF token it sent.
    Session(Vec<u8>, Option<Vec<u8>>),
}

fn presented(req: &HttpRequest) -> Result<Presented, ApiError> {
    let token = bearer(req);
    if req.headers().contains_key(header::AUTHORIZATION) {
        return token.map(|t| Presented::Token(credentials::hash(t)));
    }
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    match session_cookie(req) {
        Some(session) if reads => Ok(Presented::Session(credentials::hash(&session), None)),
        Some(session) => {
            let csrf = req
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    csrf_refused(
                        "a change made with a session cookie needs the session's X-CSRF-Token \
                         (from POST /v1/sessions)",
                    )
                })?;
            Ok(Presented::Session(
                credentials::hash(&session),
                Some(credentials::hash(csrf)),
            ))
        }
        None => token.map(|t| Presented::Token(credentials::hash(t))),
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let presented = presented(req);
        let refused = match &presented {
            Ok(Presented::Token(hash)) => limits::of(req).and_then(|l| l.token(hash).err()),
            _ => None,
        };
        let limiters = req.app_data::<web::Data<limits::Limiters>>().cloned();
        let pool = req.app_data::<web::Data<Pool>>().cloned();
        Box::pin(async move {
            if let Some(refused) = refused {
                return Err(refused.answer().await);
            }
            let presented = presented?;
            let pool = pool.ok_or_else(|| ApiError::internal(anyhow::anyhow!("no pool")))?;
            let client = pool.get().await?;
            let hash = match presented {
                Presented::Token(hash) => hash,
                Presented::Session(session, csrf) => {
                    let admin = session_admin(&client, &session, csrf.as_deref()).await?;
                    // The session spends its token's rate.
                    if let Some(refused) = limiters.and_then(|l| l.token(&admin.token_hash).err()) {
                        return Err(refused.answer().await);
                    }
                    return Ok(admin);
                }
            };
            // Looked up at every request, never cached: a revoked or expired token is
            // refused at its next request.
            let row = client
                .query_opt(
                    "SELECT id, scopes, sites, expires_at <= now() AS expired FROM admins
                     WHERE token_hash = $1 AND revoked_at IS NULL",
                    &[&hash],
                )
                .await?;
            if let Some(row) = row {
                if row.get::<_, Option<bool>>("expired") == Some(true) {
                    return Err(ApiError::unauthorized("this token has expired"));
                }
                return Ok(Admin::from_row(&row, hash));
            }
            // Only an enabled reader's key is told apart: a disabled one's is as unknown
            // as any other string, so the answer does not say that it ever existed.
            let is_reader = client
                .query_opt(
                    &format!("SELECT 1 FROM readers r WHERE {KEY_MATCHES} AND r.enabled"),
                    &[&hash],
                )
                .await?
                .is_some();
            if is_reader {
                Err(ApiError::forbidden(
                    "reader keys cannot call admin endpoints",
                ))
            } else {
                Err(ApiError::unauthorized("unknown or revoked admin token"))
            }
        })
    }
}

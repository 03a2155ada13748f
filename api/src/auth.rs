//! Who is calling.
//!
//! Readers and admins present `Authorization: Bearer <credential>`; only the SHA-256 of a
//! credential is ever compared (see `latch_core::credentials`). Reader endpoints fold the
//! key check into their one SQL statement (the unlock path makes a single round trip), so
//! [`ReaderKey`] only parses the header; when that statement finds no reader,
//! [`reader_rejection`] works out whether to answer 401 or 403. Admin endpoints take an
//! [`Admin`], looked up before the handler runs.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use deadpool_postgres::Pool;
use futures::future::LocalBoxFuture;
use latch_core::credentials;
use uuid::Uuid;

use crate::error::ApiError;

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

/// The hash of the reader key a request presents; checked by the handler's statement.
pub struct ReaderKey {
    pub hash: Vec<u8>,
}

impl ReaderKey {
    /// Scopes idempotency keys to this credential.
    pub fn client_scope(&self) -> String {
        format!("reader:{}", hex::encode(&self.hash[..16]))
    }
}

impl FromRequest for ReaderKey {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(bearer(req).map(|token| ReaderKey {
            hash: credentials::hash(token),
        }))
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
            "SELECT 1 FROM admins WHERE token_hash = $1 AND revoked_at IS NULL",
            &[&key.hash],
        )
        .await
    {
        Ok(Some(_)) => ApiError::forbidden("admin tokens cannot act as a card reader"),
        Ok(None) => ApiError::unauthorized("unknown or disabled reader key"),
        Err(error) => error.into(),
    }
}

/// An authenticated administrator.
#[derive(Debug, Clone)]
pub struct Admin {
    pub id: Uuid,
    /// The SHA-256 of the token presented; administrative database functions check it
    /// again themselves.
    pub token_hash: Vec<u8>,
}

impl Admin {
    pub fn client_scope(&self) -> String {
        format!("admin:{}", self.id)
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let hash = bearer(req).map(credentials::hash);
        let pool = req.app_data::<web::Data<Pool>>().cloned();
        Box::pin(async move {
            let hash = hash?;
            let pool = pool.ok_or_else(|| ApiError::internal(anyhow::anyhow!("no pool")))?;
            let client = pool.get().await?;
            let row = client
                .query_opt(
                    "SELECT id FROM admins WHERE token_hash = $1 AND revoked_at IS NULL",
                    &[&hash],
                )
                .await?;
            if let Some(row) = row {
                return Ok(Admin {
                    id: row.get(0),
                    token_hash: hash,
                });
            }
            // Only an enabled reader's key is told apart: a disabled one's is as unknown
            // as any other string, so the answer does not say that it ever existed.
            let is_reader = client
                .query_opt(
                    "SELECT 1 FROM readers WHERE key_hash = $1 AND enabled",
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

//! The API's error policy.
//!
//! Every handler returns `Result<_, ApiError>`. An `ApiError` carries the HTTP status, a
//! stable machine-readable `code` and a message meant for the caller; the client always
//! gets `{"error": {"code", "message"}}`. Failures the caller cannot fix (database down,
//! a bug) become `500 internal` or `503 unavailable` with a generic message: their cause
//! chain is logged here, once, and never sent to the client.
//!
//! Two failures are answered in the same form by [`crate::contain`]: a request that runs
//! past its deadline (`503 unavailable`), and a handler that panics (`500 internal`; the
//! panic itself is logged once, as JSON, by the process's panic hook).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// What a failure means to the code that handles it. Control flow matches on this, never
/// on `code` or the message, which are for the client and may be reworded freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A statement found no enabled reader with the key the request presents: answered
    /// 401 or 403 once [`crate::auth::reader_rejection`] has found out which.
    UnknownReader,
    /// Anything else: answered as it stands.
    Answer,
}

#[derive(Debug)]
pub struct ApiError {
    kind: Kind,
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
    /// What some answers add.
    extra: Option<Extra>,
    cause: Option<anyhow::Error>,
}

/// What an answer adds to its code and message.
#[derive(Debug)]
enum Extra {
    /// 405: the methods the path takes (`Allow`).
    Allow(String),
    /// 410 `cursor_expired`: the oldest cursor still readable.
    OldestCursor(u64),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `unauthorized`, `unknown_card`, `malformed_body`, ...
    pub code: String,
    /// For people; may change between versions.
    pub message: String,
    /// With `cursor_expired`: the oldest cursor that can still be read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_cursor: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            kind: Kind::Answer,
            status,
            code,
            message: redact_credentials(message.into()),
            retry_after_secs: None,
            extra: None,
            cause: None,
        }
    }

    /// 405: the path exists, with other methods.
    pub fn method_not_allowed(method: &str, allowed: &[&str]) -> Self {
        ApiError {
            extra: Some(Extra::Allow(allowed.join(", "))),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed here; use {}", allowed.join(" or ")),
            )
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// No enabled reader has the presented key (see [`Kind::UnknownReader`]).
    pub fn unknown_reader() -> Self {
        ApiError {
            kind: Kind::UnknownReader,
            ..Self::unauthorized("unknown or disabled reader key")
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        ApiError {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this client; retry later",
            )
        }
    }

    /// 410 `cursor_expired`: the events after a cursor are no longer kept.
    pub fn cursor_expired(message: impl Into<String>, oldest: u64) -> Self {
        ApiError {
            extra: Some(Extra::OldestCursor(oldest)),
            ..Self::new(StatusCode::GONE, "cursor_expired", message)
        }
    }

    /// A failure the caller cannot fix. The cause is logged, not sent.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        ApiError {
            cause: Some(cause.into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; it has been logged",
            )
        }
    }

    /// A dependency is unreachable; the caller should retry.
    pub fn unavailable(cause: impl Into<anyhow::Error>) -> Self {
        ApiError {
            cause: Some(cause.into()),
            retry_after_secs: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service is temporarily unavailable; retry shortly",
            )
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message meant for the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// `message` with every credential-looking word (`lrk_…`, `lat_…`, `lss_…`, `whsec_…`) cut to its
/// prefix. Messages may quote what a client sent (a path, a value serde could not read);
/// a key that was sent in the wrong place must not come back in an answer or a log.
pub fn redact_credentials(message: String) -> String {
    const PREFIXES: [&str; 4] = ["lrk_", "lat_", "lss_", "whsec_"];
    if !PREFIXES.iter().any(|p| message.contains(p)) {
        return message;
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = String::with_capacity(message.len());
    let mut rest = message.as_str();
    while let Some((at, prefix)) = PREFIXES
        .iter()
        .filter_map(|p| rest.find(p).map(|at| (at, *p)))
        .min_by_key(|(at, _)| *at)
    {
        let starts_word = !rest[..at].ends_with(word);
        let end = at + prefix.len();
        let tail = rest[end..]
            .find(|c: char| !word(c))
            .map_or(rest.len(), |n| end + n);
        out.push_str(&rest[..end]);
        if starts_word && tail > end {
            out.push_str("[redacted]");
        } else {
            out.push_str(&rest[end..tail]);
        }
        rest = &rest[tail..];
    }
    out.push_str(rest);
    out
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(cause) = &self.cause {
            tracing::error!(
                code = self.code,
                error = format!("{cause:#}"),
                "request failed"
            );
        }
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        if let Some(Extra::Allow(allow)) = &self.extra {
            response.insert_header((header::ALLOW, allow.clone()));
        }
        if let Some(secs) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                oldest_cursor: match self.extra {
                    Some(Extra::OldestCursor(oldest)) => Some(oldest.to_string()),
                    _ => None,
                },
            },
        })
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        ApiError::unavailable(anyhow::Error::new(error).context("no database connection"))
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> Self {
        if error.is_closed() || error.as_db_error().is_none() && error.code().is_none() {
            // The connection broke: the database is down or restarting.
            return ApiError::unavailable(anyhow::Error::new(error).context("database error"));
        }
        match sql_state(&error) {
            // Serialization failure or deadlock: nothing was committed; a retry will do.
            Some("40001" | "40P01") => {
                return ApiError::unavailable(
                    anyhow::Error::new(error).context("transaction conflict"),
                );
            }
            // Cancelled by statement_timeout (or an operator), or a lock not granted in
            // time: the database is overloaded or something holds what this needs.
            Some("57014" | "55P03") => {
                return ApiError::unavailable(
                    anyhow::Error::new(error).context("statement cancelled"),
                );
            }
            _ => {}
        }
        ApiError::internal(anyhow::Error::new(error).context("database error"))
    }
}

/// The SQLSTATE of a database error, if it is one.
pub fn sql_state(error: &tokio_postgres::Error) -> Option<&str> {
    error.code().map(|c| c.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_messages_are_cut_to_their_prefix() {
        assert_eq!(
            redact_credentials("no route for GET /v1/lrk_AbC-d_9/x".into()),
            "no route for GET /v1/lrk_[redacted]/x"
        );
        assert_eq!(
            redact_credentials("invalid type: string \"lat_Zz09\", expected i64".into()),
            "invalid type: string \"lat_[redacted]\", expected i64"
        );
        assert_eq!(
            redact_credentials("a whsec_x and lrk_y and lss_z".into()),
            "a whsec_[redacted] and lrk_[redacted] and lss_[redacted]"
        );
        // Not a credential: inside a word, or the bare prefix.
        assert_eq!(
            redact_credentials("flat_rate lrk_".into()),
            "flat_rate lrk_"
        );
        assert_eq!(redact_credentials("nothing here".into()), "nothing here");
        let unchanged = ApiError::not_found("x", "no reader with this id");
        assert_eq!(unchanged.message(), "no reader with this id");
    }
}

//! Security headers on every answer.
//!
//! - `X-Content-Type-Options: nosniff`: a browser never reads a JSON answer as a script or
//!   a page.
//! - `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`: no page may frame the API.
//! - `Content-Security-Policy: default-src 'none'` on everything but the bundled API
//!   viewer (`/docs/`), whose page needs its own scripts and styles.
//! - `Referrer-Policy: no-referrer`.
//! - `Cache-Control: no-store` on `/v1/` answers: some carry a key, shown once, which no
//!   cache on the way may keep.
//! - `Strict-Transport-Security` when the API itself serves TLS.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;

/// Middleware adding the headers above (an answer's own value wins where it set one).
pub async fn security(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let secure = req.app_config().secure();
    let path = req.path();
    let viewer = path.starts_with("/docs/") || path == "/docs";
    let api = path.starts_with("/v1/");
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    };
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "no-referrer");
    set(
        header::CONTENT_SECURITY_POLICY,
        if viewer {
            "frame-ancestors 'none'"
        } else {
            "default-src 'none'; frame-ancestors 'none'"
        },
    );
    if api {
        set(header::CACHE_CONTROL, "no-store");
    }
    if secure {
        set(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
    Ok(response)
}

//! The operator console at `/console/`: one page and its script and styles, bundled into
//! the binary (no CDN, no build step, works offline). It reads and acts only through the
//! API itself, with a session cookie and, for changes, the session's CSRF token.
//!
//! Its Content-Security-Policy admits only its own script and styles (`'self'`, no
//! `unsafe-inline`), requests to the API's own origin, and no framing.

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLES: &str = include_str!("../console/console.css");

/// The console's policy: its own files, the API's origin, nothing inline, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

fn file(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        // Served from the binary: a new version is a restart away, so check each time.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

#[get("/console")]
pub async fn redirect() -> HttpResponse {
    HttpResponse::MovedPermanently()
        .insert_header((header::LOCATION, "/console/"))
        .finish()
}

#[get("/console/{file:.*}")]
pub async fn serve(path: web::Path<String>) -> HttpResponse {
    match path.as_str() {
        "" | "index.html" => file("text/html; charset=utf-8", INDEX),
        "console.js" => file("text/javascript; charset=utf-8", SCRIPT),
        "console.css" => file("text/css; charset=utf-8", STYLES),
        _ => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such file in the console"),
    }
}

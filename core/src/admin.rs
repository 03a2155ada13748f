//! The operations endpoints of every role — `/healthz`, `/readyz`, `/metrics` — answered
//! the same way by the API (on its own listener, beside the API) and by the relay and the
//! worker (on the admin listener [`serve`] runs), with one HTTP stack, actix-web.
//!
//! - `/healthz`: `200 {"status": "ok"}` while the process serves HTTP.
//! - `/readyz`: `200 {"status": "ready", ...}` while the role can do its work, otherwise
//!   `503 {"status": "not ready", ...}`, so an orchestrator can route around it or restart
//!   it. The other fields name what was checked: the API pings PostgreSQL
//!   (`"postgres": "ok" | "unreachable" | "timeout"`); the relay and the worker report
//!   whether their last attempt reached their dependencies ([`Readiness`]).
//! - `/metrics`: the role's registry in the Prometheus text format (0.0.4).
//!
//! Any other path is 404 and any other method 405, in the API's JSON error form.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use prometheus::Registry;
use serde_json::{Map, Value, json};

use crate::config::{ConfigError, Setting, Source};
use crate::shutdown::CancellationToken;

/// Whether the role can do its work; flipped by the role's loop.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// `/healthz`: the process is alive.
pub fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `/readyz`: 200 when `ready`, 503 otherwise; `checks` says what was checked.
pub fn readyz(ready: bool, checks: Map<String, Value>) -> HttpResponse {
    let mut body = Map::new();
    let status = if ready {
        body.insert("status".into(), "ready".into());
        StatusCode::OK
    } else {
        body.insert("status".into(), "not ready".into());
        StatusCode::SERVICE_UNAVAILABLE
    };
    body.extend(checks);
    HttpResponse::build(status).json(Value::Object(body))
}

/// `/metrics`: `registry` in the Prometheus text format.
pub fn metrics(registry: &Registry) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::encode(registry))
}

/// A path or method the operations listener does not serve, in the API's error form.
fn refused(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": {"code": code, "message": message}}))
}

pub const ADMIN_ADDR: Setting = Setting {
    key: "admin.addr",
    default: None,
    meaning: "the relay's or worker's /healthz, /readyz and /metrics (default: relay 127.0.0.1:9101, worker 127.0.0.1:9102)",
};

/// The admin listener's address: `LATCH_ADMIN_ADDR`, or the role's `default`.
pub fn addr_from_source(source: &Source, default: SocketAddr) -> Result<SocketAddr, ConfigError> {
    Ok(source.optional(&ADMIN_ADDR)?.unwrap_or(default))
}

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    readiness: Readiness,
}

/// The relay's or worker's admin listener: binds now (so a bad address fails at start)
/// and serves until `shutdown`. Answers the bound address and the task serving it.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} (LATCH_ADMIN_ADDR)"))?;
    let bound = listener.local_addr()?;
    let state = web::Data::new(AdminState {
        registry,
        readiness,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .service(
                web::resource("/healthz")
                    .get(|| async { healthz() })
                    .default_service(web::to(not_allowed)),
            )
            .service(
                web::resource("/readyz")
                    .get(|state: web::Data<AdminState>| async move {
                        readyz(state.readiness.get(), Map::new())
                    })
                    .default_service(web::to(not_allowed)),
            )
            .service(
                web::resource("/metrics")
                    .get(|state: web::Data<AdminState>| async move { metrics(&state.registry) })
                    .default_service(web::to(not_allowed)),
            )
            .default_service(web::to(|| async {
                refused(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "this listener serves /healthz, /readyz and /metrics",
                )
            }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .with_context(|| format!("cannot serve on {bound} (LATCH_ADMIN_ADDR)"))?
    .run();
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.stop(true).await;
    });
    let task = tokio::spawn(async move {
        if let Err(error) = server.await {
            tracing::warn!(%error, "admin server stopped with an error");
        }
    });
    tracing::info!(addr = %bound, "admin endpoints: /healthz /readyz /metrics");
    Ok((bound, task))
}

async fn not_allowed() -> HttpResponse {
    let mut response = refused(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path answers GET only",
    );
    response.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static("GET"),
    );
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// One HTTP/1.1 exchange over a fresh connection: the status line and the body.
    async fn exchange(addr: SocketAddr, method: &str, path: &str) -> (String, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.to_owned(), body.to_owned())
    }

    #[tokio::test]
    async fn the_admin_listener_answers_like_the_api() {
        let registry = crate::metrics::registry("test");
        let readiness = Readiness::default();
        let stop = CancellationToken::new();
        let (addr, task) = serve(
            "127.0.0.1:0".parse().unwrap(),
            registry,
            readiness.clone(),
            stop.clone(),
        )
        .await
        .unwrap();

        let (head, body) = exchange(addr, "GET", "/healthz").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, r#"{"status":"ok"}"#);

        let (head, body) = exchange(addr, "GET", "/readyz").await;
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert_eq!(body, r#"{"status":"not ready"}"#);
        readiness.set(true);
        let (head, body) = exchange(addr, "GET", "/readyz").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, r#"{"status":"ready"}"#);

        let (head, _) = exchange(addr, "GET", "/metrics").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );

        let (head, body) = exchange(addr, "POST", "/readyz").await;
        assert!(head.starts_with("HTTP/1.1 405"), "{head}");
        assert!(head.to_ascii_lowercase().contains("allow: get"), "{head}");
        assert!(body.contains(r#""code":"method_not_allowed""#), "{body}");
        let (head, body) = exchange(addr, "GET", "/v1/doors").await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        assert!(body.contains(r#""code":"not_found""#), "{body}");

        // A second listener on the same address fails at start, naming the setting.
        let taken = serve(addr, Registry::new(), Readiness::default(), stop.clone()).await;
        let error = format!("{:#}", taken.err().unwrap());
        assert!(error.contains("LATCH_ADMIN_ADDR"), "{error}");

        stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("the listener stops when asked")
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}

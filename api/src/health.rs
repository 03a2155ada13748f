//! Liveness and readiness, answered as every role answers them
//! ([`latch_core::admin`]).
//!
//! `/healthz` answers while the process serves HTTP; `/readyz` also checks that
//! PostgreSQL answers within a second, so a load balancer stops sending traffic to an API
//! replica that cannot record anything.

use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use deadpool_postgres::Pool;
use latch_core::admin;
use serde_json::{Map, Value};

/// The process is alive.
#[utoipa::path(tag = "operations", responses((status = 200, description = "Alive")))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    admin::healthz()
}

/// The API can serve requests: PostgreSQL answers.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Ready"),
        (status = 503, description = "PostgreSQL is unreachable"),
    )
)]
#[get("/readyz")]
pub async fn readyz(pool: web::Data<Pool>) -> HttpResponse {
    let check = async {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    let postgres = match tokio::time::timeout(Duration::from_secs(1), check).await {
        Ok(Ok(())) => "ok",
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed");
            "unreachable"
        }
        Err(_) => "timeout",
    };
    let checks = Map::from_iter([("postgres".to_owned(), Value::from(postgres))]);
    admin::readyz(postgres == "ok", checks)
}

//! The two routers: the main listener's (both sinks and the named subscribers, plus stats
//! and reset for convenience) and the admin listener's (faults, stats, reset, the named
//! subscribers), and the small admin handlers. What each sink does lives in its own
//! module; the subscribers' handlers are in [`crate::subscribers`].

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;

use crate::faults::Faults;
use crate::legacy::{self, punch::PUNCH_PATH};
use crate::state::{SetFaultsError, SimState};
use crate::stats::Stats;
use crate::subscribers::{self, ENDPOINTS_PATH, SUBSCRIBER_WEBHOOK_PATH};
use crate::webhooks::{self, WEBHOOK_PATH};

pub const STATS_PATH: &str = "/stats";
pub const RESET_PATH: &str = "/admin/reset";
pub const FAULTS_PATH: &str = "/faults";
pub const HEALTH_PATH: &str = "/healthz";

/// The main listener: the sinks, and the read-only-ish helpers.
pub(crate) fn main_router(state: Arc<SimState>) -> Router {
    Router::new()
        .route(PUNCH_PATH, post(legacy::receive_punch))
        .route(WEBHOOK_PATH, post(webhooks::receive_event))
        .route(SUBSCRIBER_WEBHOOK_PATH, post(subscribers::receive_event))
        .route(STATS_PATH, get(stats))
        .route(RESET_PATH, post(reset))
        .route(HEALTH_PATH, get(health))
        .with_state(state)
}

/// The admin listener, which stays up while the main one is down.
pub(crate) fn admin_router(state: Arc<SimState>) -> Router {
    Router::new()
        .route(FAULTS_PATH, get(faults).put(set_faults))
        .route(STATS_PATH, get(stats))
        .route(RESET_PATH, post(reset))
        .route(HEALTH_PATH, get(health))
        .route(ENDPOINTS_PATH, get(subscribers::list_subscribers))
        .route(
            "/endpoints/{name}",
            put(subscribers::put_subscriber).delete(subscribers::delete_subscriber),
        )
        .route(
            "/endpoints/{name}/faults",
            get(subscribers::get_subscriber_faults).put(subscribers::set_subscriber_faults),
        )
        .route(
            "/endpoints/{name}/stats",
            get(subscribers::subscriber_stats),
        )
        .with_state(state)
}

async fn stats(State(state): State<Arc<SimState>>) -> Json<Stats> {
    Json(state.ledger().stats())
}

async fn reset(State(state): State<Arc<SimState>>) -> StatusCode {
    state.reset();
    tracing::info!(
        "state reset: every key, effect and counter forgotten (the named subscribers' too)"
    );
    StatusCode::NO_CONTENT
}

async fn health() -> &'static str {
    "ok"
}

async fn faults(State(state): State<Arc<SimState>>) -> Json<Faults> {
    Json(state.faults())
}

/// `PUT /faults`: replaces every knob; answers once the main listener follows.
async fn set_faults(
    State(state): State<Arc<SimState>>,
    body: Result<Json<Faults>, JsonRejection>,
) -> Response {
    let faults = match body {
        Ok(Json(faults)) => faults,
        Err(rejection) => {
            return admin_error(
                StatusCode::BAD_REQUEST,
                "invalid_faults",
                &rejection.body_text(),
            );
        }
    };
    match state.set_faults(faults.clone()).await {
        Ok(()) => {
            tracing::info!(?faults, "faults set");
            Json(faults).into_response()
        }
        Err(error @ SetFaultsError::Invalid(_)) => admin_error(
            StatusCode::BAD_REQUEST,
            "invalid_faults",
            &error.to_string(),
        ),
        Err(error) => {
            tracing::warn!(%error, "faults set, but not followed");
            admin_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "listener_not_following",
                &error.to_string(),
            )
        }
    }
}

/// An admin listener's JSON error, `{"error": {"code", "message"}}`.
pub(crate) fn admin_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

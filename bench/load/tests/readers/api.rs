//! `FakeApi`: a stand-in for latch's three reader endpoints, started per test on an
//! OS-picked port. It checks the bearer key (401 otherwise), answers unlocks 200 with a
//! decision (granted for [`GRANTED`], denied for any other card) and check-ins and
//! check-outs 201, and counts what arrived. It is only there to test the generator, so
//! it can be told to be slow, or slow one request at a time (a queue).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use latch_load::readers::{CHECK_IN_PATH, CHECK_OUT_PATH, UNLOCK_PATH};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The reader key the fake API accepts.
pub const KEY: &str = "lrk_test";
/// The card the fake API grants.
pub const GRANTED: &str = "CARD-GRANTED";
/// A card the fake API denies.
pub const DENIED: &str = "CARD-DENIED";

/// How the fake API misbehaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// Wait this long before answering.
    pub delay: Duration,
    /// Answer one request at a time, so requests queue behind each other.
    pub one_at_a_time: bool,
    /// Cancel `FakeApi::stop_token` when this many requests have arrived.
    pub stop_after: Option<u64>,
}

/// One request as the fake API saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: &'static str,
    pub card: String,
    pub idempotency_key: Option<String>,
}

struct ApiState {
    behaviour: Behaviour,
    arrived: AtomicU64,
    seen: Mutex<Vec<Seen>>,
    queue: tokio::sync::Mutex<()>,
    stop_token: CancellationToken,
}

pub struct FakeApi {
    pub url: String,
    state: Arc<ApiState>,
    shutdown: CancellationToken,
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        FakeApi::start_with(Behaviour::default()).await
    }

    pub async fn start_with(behaviour: Behaviour) -> FakeApi {
        let state = Arc::new(ApiState {
            behaviour,
            arrived: AtomicU64::new(0),
            seen: Mutex::new(Vec::new()),
            queue: tokio::sync::Mutex::new(()),
            stop_token: CancellationToken::new(),
        });
        let router = Router::new()
            .route(UNLOCK_PATH, post(unlock))
            .route(CHECK_IN_PATH, post(check_in))
            .route(CHECK_OUT_PATH, post(check_out))
            .with_state(Arc::clone(&state));
        // Bound before `start` returns: connections queue until the first accept.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds a free port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        FakeApi {
            url,
            state,
            shutdown,
        }
    }

    /// Requests that arrived at the three endpoints, authorised or not.
    pub fn arrived(&self) -> u64 {
        self.state.arrived.load(Ordering::SeqCst)
    }

    /// The authorised requests, in the order they arrived.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("not poisoned").clone()
    }

    /// Cancelled when `Behaviour::stop_after` requests have arrived.
    pub fn stop_token(&self) -> CancellationToken {
        self.state.stop_token.clone()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn unlock(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    answer(&state, &headers, &body, UNLOCK_PATH, |card| {
        let granted = card == GRANTED;
        (
            StatusCode::OK,
            json!({
                "decision": if granted { "granted" } else { "denied" },
                "reason": if granted { "valid_grant" } else { "no_grant" },
                "action_id": "0190c0de-0000-7000-8000-000000000001",
            }),
        )
    })
    .await
}

async fn check_in(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    answer(&state, &headers, &body, CHECK_IN_PATH, presence).await
}

async fn check_out(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    answer(&state, &headers, &body, CHECK_OUT_PATH, presence).await
}

fn presence(_card: &str) -> (StatusCode, Value) {
    (StatusCode::CREATED, json!({ "action_id": "0190c0de" }))
}

async fn answer(
    state: &ApiState,
    headers: &HeaderMap,
    body: &str,
    path: &'static str,
    decide: impl FnOnce(&str) -> (StatusCode, Value),
) -> (StatusCode, axum::Json<Value>) {
    let arrived = state.arrived.fetch_add(1, Ordering::SeqCst) + 1;
    if state.behaviour.stop_after == Some(arrived) {
        state.stop_token.cancel();
    }
    let _turn = if state.behaviour.one_at_a_time {
        Some(state.queue.lock().await)
    } else {
        None
    };
    if !state.behaviour.delay.is_zero() {
        tokio::time::sleep(state.behaviour.delay).await;
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(KEY) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"code": "unauthorized"}})),
        );
    }
    let card = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["card_id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    state.seen.lock().expect("not poisoned").push(Seen {
        path,
        card: card.clone(),
        idempotency_key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    let (status, body) = decide(&card);
    (status, axum::Json(body))
}

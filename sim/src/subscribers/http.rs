//! The subscribers over HTTP: `POST /webhooks/endpoints/{name}` on the main listener, and
//! the admin listener's `/endpoints` routes. Errors are JSON `{"error": {"code",
//! "message"}}` like everywhere else in the simulator.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Subscriber, SubscriberError, check_name};
use crate::faults::SubscriberFaults;
use crate::gate;
use crate::reply::Reply;
use crate::request;
use crate::routes::admin_error;
use crate::state::SimState;
use crate::webhooks;

/// `POST /webhooks/endpoints/{name}`: one subscriber's deliveries.
pub(crate) async fn receive_event(
    State(state): State<Arc<SimState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let Some(subscriber) = state.subscribers().get(&name) else {
        return unknown_endpoint(&name);
    };
    request::counted_by(subscriber.as_ref(), &headers, |key, traceparent| {
        answer(
            &state,
            &subscriber,
            &name,
            &headers,
            &body,
            key,
            traceparent,
        )
    })
    .await
}

async fn answer(
    state: &SimState,
    subscriber: &Subscriber,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
    key: Option<&str>,
    traceparent: Option<&str>,
) -> Reply {
    // Deleted while waiting out latency or a hang: it no longer exists.
    let passed = tokio::select! {
        passed = gate::pass_subscriber(state, subscriber) => passed,
        () = subscriber.removed() => return unknown_endpoint(name),
    };
    let faults = match passed {
        Ok(faults) => faults,
        Err(blocked) => return webhooks::refusal(blocked),
    };
    if faults.gone {
        return webhooks::error(
            StatusCode::GONE,
            "gone",
            "this subscriber is gone and takes no more deliveries",
        );
    }
    webhooks::receive(
        subscriber,
        &faults.sink.reject,
        headers,
        body,
        key,
        traceparent,
    )
}

fn unknown_endpoint(name: &str) -> Reply {
    let message = match check_name(name) {
        Ok(()) => format!("no subscriber named {name}"),
        Err(_) => "no such subscriber".to_owned(),
    };
    webhooks::error(StatusCode::NOT_FOUND, "unknown_endpoint", &message)
}

/// `PUT /endpoints/{name}`, body `{"secrets": ["whsec_...", ...]}`: creates the
/// subscriber or replaces its secrets. 204, or 400 `invalid_name` / `invalid_secrets`.
pub(crate) async fn put_subscriber(
    State(state): State<Arc<SimState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(error) = check_name(&name) {
        return admin_error(StatusCode::BAD_REQUEST, "invalid_name", &error.to_string());
    }
    let secrets = match read_secrets(&body) {
        Ok(secrets) => secrets,
        Err(message) => return admin_error(StatusCode::BAD_REQUEST, "invalid_secrets", &message),
    };
    let count = secrets.len();
    match state.subscribers().put(&name, secrets) {
        Ok(created) => {
            tracing::info!(%name, secrets = count, created, "subscriber set");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => subscriber_error(&error),
    }
}

/// The `secrets` list of a `PUT /endpoints/{name}` body. Read by hand rather than by
/// serde, whose messages quote the values they refuse: no message here repeats the body.
fn read_secrets(body: &[u8]) -> Result<Vec<String>, String> {
    const SHAPE: &str = r#"the body is {"secrets": ["whsec_...", ...]}"#;
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        format!(
            "{SHAPE}; this is not JSON (line {}, column {})",
            error.line(),
            error.column()
        )
    })?;
    let object = value.as_object().ok_or(SHAPE)?;
    if object.len() != 1 {
        return Err(format!("{SHAPE}, with no other field"));
    }
    let list = object
        .get("secrets")
        .and_then(Value::as_array)
        .ok_or(SHAPE)?;
    list.iter()
        .enumerate()
        .map(|(index, secret)| {
            secret
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("secrets[{index}] must be a string"))
        })
        .collect()
}

/// `PUT /endpoints/{name}/faults`: replaces the subscriber's knobs (`{}` clears them) and
/// answers them. 404 `unknown_endpoint`, 400 `invalid_faults`.
pub(crate) async fn set_subscriber_faults(
    State(state): State<Arc<SimState>>,
    Path(name): Path<String>,
    body: Result<Json<SubscriberFaults>, JsonRejection>,
) -> Response {
    if state.subscribers().get(&name).is_none() {
        return subscriber_error(&SubscriberError::Unknown(name));
    }
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
    match state.subscribers().set_faults(&name, faults.clone()) {
        Ok(()) => {
            tracing::info!(%name, ?faults, "subscriber faults set");
            Json(faults).into_response()
        }
        Err(error) => subscriber_error(&error),
    }
}

/// `GET /endpoints/{name}/faults`: the subscriber's knobs in force.
pub(crate) async fn get_subscriber_faults(
    State(state): State<Arc<SimState>>,
    Path(name): Path<String>,
) -> Response {
    match state.subscribers().faults(&name) {
        Ok(faults) => Json(faults).into_response(),
        Err(error) => subscriber_error(&error),
    }
}

/// `GET /endpoints/{name}/stats`: its counters and applied events.
pub(crate) async fn subscriber_stats(
    State(state): State<Arc<SimState>>,
    Path(name): Path<String>,
) -> Response {
    match state.subscribers().stats(&name) {
        Ok(stats) => Json(stats).into_response(),
        Err(error) => subscriber_error(&error),
    }
}

/// `DELETE /endpoints/{name}`: forgets it with its ledger. 204, or 404.
pub(crate) async fn delete_subscriber(
    State(state): State<Arc<SimState>>,
    Path(name): Path<String>,
) -> Response {
    if state.subscribers().remove(&name) {
        tracing::info!(%name, "subscriber deleted");
        StatusCode::NO_CONTENT.into_response()
    } else {
        subscriber_error(&SubscriberError::Unknown(name))
    }
}

/// `GET /endpoints`: `{"endpoints": [...]}`, each with its name, number of secrets,
/// knobs and counters, by name.
pub(crate) async fn list_subscribers(State(state): State<Arc<SimState>>) -> Json<Value> {
    Json(json!({ "endpoints": state.subscribers().summaries() }))
}

fn subscriber_error(error: &SubscriberError) -> Response {
    let (status, code) = match error {
        SubscriberError::InvalidName => (StatusCode::BAD_REQUEST, "invalid_name"),
        SubscriberError::InvalidSecrets(_) => (StatusCode::BAD_REQUEST, "invalid_secrets"),
        SubscriberError::InvalidFaults(_) => (StatusCode::BAD_REQUEST, "invalid_faults"),
        SubscriberError::Unknown(name) => {
            return unknown_endpoint(name).into_response();
        }
    };
    admin_error(status, code, &error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secrets_body_is_read_without_repeating_it() {
        let secret = crate::DEFAULT_WEBHOOK_SECRET;
        let body = json!({ "secrets": [secret] }).to_string();
        assert_eq!(read_secrets(body.as_bytes()), Ok(vec![secret.to_owned()]));
        for bad in [
            json!({ "secrets": secret }),
            json!([secret]),
            json!({ "secrets": [secret], secret: 1 }),
            json!({ "secrets": [1, secret] }),
            json!({ "secret": [secret] }),
        ] {
            let error = read_secrets(bad.to_string().as_bytes()).expect_err("refused");
            assert!(!error.contains("whsec_bG"), "{error}");
        }
        let broken = format!(r#"{{"secrets": ["{secret}"#);
        let error = read_secrets(broken.as_bytes()).expect_err("not JSON");
        assert!(!error.contains("whsec_bG"), "{error}");
    }
}

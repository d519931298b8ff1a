//! The callback routes.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::Engine;
use metrics::counter;
use sendfleet_telemetry::metrics::CALLBACKS_TOTAL;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::{IngestProvider, IngestState};

/// The callback router: `POST /callbacks/{provider}/{token}` and
/// `POST /callbacks/{provider}/{token}/{kind}`.
pub fn router(state: Arc<IngestState>) -> Router {
    Router::new()
        .route("/callbacks/{provider}/{token}", post(callback))
        .route("/callbacks/{provider}/{token}/{kind}", post(callback_with_kind))
        .with_state(state)
}

async fn callback_with_kind(
    state: State<Arc<IngestState>>,
    Path((provider, token, _kind)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    callback(state, Path((provider, token)), headers, body).await
}

async fn callback(
    State(state): State<Arc<IngestState>>,
    Path((provider_id, token)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Unknown provider ids are not counted by label: the label set must stay bounded.
    let Some(provider) = state.providers.get(&provider_id) else {
        counter!(CALLBACKS_TOTAL, "provider" => "unknown", "kind" => "unknown", "outcome" => "unknown_provider")
            .increment(1);
        return refuse(StatusCode::NOT_FOUND, "unknown provider");
    };
    let reject = |status: StatusCode, outcome: &'static str, reason: String| {
        counter!(CALLBACKS_TOTAL, "provider" => provider_id.clone(), "kind" => "unknown", "outcome" => outcome)
            .increment(1);
        tracing::info!(provider = %provider_id, outcome, reason = %reason, "callback refused");
        refuse(status, &reason)
    };
    if !authorised(provider, &token, &headers) {
        return reject(StatusCode::UNAUTHORIZED, "unauthorized", "bad callback token or credentials".into());
    }
    let bytes = match axum::body::to_bytes(body, state.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body larger than {} bytes", state.max_body_bytes),
            );
        }
    };
    let events = match provider.adapter.parse_callback(&bytes) {
        Ok(events) => events,
        Err(err) => return reject(StatusCode::BAD_REQUEST, "malformed", err.to_string()),
    };
    if let Err(err) = state.broker.publish_events(&events).await {
        tracing::warn!(provider = %provider_id, error = %err, "events not confirmed; asking the provider to retry");
        return reject(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable", "try again later".into());
    }
    // RCS failure reports fire the armed SMS fallback (exactly once fleet-wide), success
    // reports disarm it; not done means 503, so the provider sends the report again.
    if let Some(fallbacks) = &state.fallbacks
        && let Err(err) = fallbacks.on_reports(state.broker.publisher().as_ref(), &events).await
    {
        tracing::warn!(provider = %provider_id, error = %err, "SMS fallback not settled; asking the provider to retry");
        return reject(StatusCode::SERVICE_UNAVAILABLE, "fallback_unavailable", "try again later".into());
    }
    for event in &events {
        counter!(CALLBACKS_TOTAL, "provider" => provider_id.clone(), "kind" => event.kind.as_str(), "outcome" => "ok")
            .increment(1);
    }
    (StatusCode::OK, Json(json!({ "accepted": events.len() }))).into_response()
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    (status, Json(json!({ "error": reason }))).into_response()
}

/// The token is compared in constant time; a provider without a token accepts no
/// callbacks at all. Basic auth, when configured, is required on top.
fn authorised(provider: &IngestProvider, token: &str, headers: &HeaderMap) -> bool {
    let expected = provider.token.expose().as_bytes();
    if expected.is_empty() || !bool::from(expected.ct_eq(token.as_bytes())) {
        return false;
    }
    let Some((user, password)) = &provider.basic_auth else { return true };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v.trim()).ok())
    else {
        return false;
    };
    let wanted = format!("{user}:{}", password.expose());
    bool::from(given.as_slice().ct_eq(wanted.as_bytes()))
}

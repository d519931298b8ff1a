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
use futures_util::StreamExt;
use metrics::counter;
use sendfleet_protocol::Event;
use sendfleet_providers::CallbackError;
use sendfleet_telemetry::metrics::{CALLBACKS_TOTAL, EVENTS_PUBLISHED_TOTAL};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::{IngestProvider, IngestState};

/// The optional last path segment: which webhook the vendor's portal posts to it. It is
/// only a label (metrics, logs); the body's shape decides what a result is, so any
/// kind may arrive on any of these URLs.
pub const ROUTE_KINDS: &[&str] = &["delivery", "seen", "inbound", "events"];

/// The metrics label of a callback on the URL without a kind segment.
const ANY_KIND: &str = "any";

/// The callback router: `POST /callbacks/{provider}/{token}` and
/// `POST /callbacks/{provider}/{token}/{kind}` with `kind` one of [`ROUTE_KINDS`].
pub fn router(state: Arc<IngestState>) -> Router {
    Router::new()
        .route("/callbacks/{provider}/{token}", post(callback))
        .route("/callbacks/{provider}/{token}/{kind}", post(callback_with_kind))
        .with_state(state)
}

async fn callback(
    state: State<Arc<IngestState>>,
    Path((provider, token)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, provider, token, ANY_KIND, headers, body).await
}

async fn callback_with_kind(
    state: State<Arc<IngestState>>,
    Path((provider, token, kind)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, provider, token, &kind, headers, body).await
}

/// Why a callback was refused: the `outcome` label and the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    UnknownProvider,
    UnknownRoute,
    Unauthorized,
    TooLarge,
    Unreadable,
    Malformed,
    Unrecognised,
    BrokerUnavailable,
    FallbackUnavailable,
}

impl Refusal {
    fn outcome(self) -> &'static str {
        match self {
            Refusal::UnknownProvider => "unknown_provider",
            Refusal::UnknownRoute => "unknown_route",
            Refusal::Unauthorized => "unauthorized",
            Refusal::TooLarge => "too_large",
            Refusal::Unreadable => "unreadable",
            Refusal::Malformed => "malformed",
            Refusal::Unrecognised => "unrecognised",
            Refusal::BrokerUnavailable => "broker_unavailable",
            Refusal::FallbackUnavailable => "fallback_unavailable",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Refusal::UnknownProvider | Refusal::UnknownRoute => StatusCode::NOT_FOUND,
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Unreadable | Refusal::Malformed | Refusal::Unrecognised => StatusCode::BAD_REQUEST,
            Refusal::BrokerUnavailable | Refusal::FallbackUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

async fn handle(
    State(state): State<Arc<IngestState>>,
    provider_id: String,
    token: String,
    route_kind: &str,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Labels only take bounded values: unknown provider ids and route kinds are not
    // echoed into metrics (nor the token into anything).
    let Some(provider) = state.providers.get(&provider_id) else {
        return refuse("unknown", ANY_KIND, Refusal::UnknownProvider, "unknown provider".into());
    };
    let provider_id = provider.adapter.config().id.as_str();
    if !authorised(provider, &token, &headers) {
        return refuse(provider_id, ANY_KIND, Refusal::Unauthorized, "bad callback token or credentials".into());
    }
    let Some(route_kind) = ROUTE_KINDS.iter().copied().find(|k| *k == route_kind).or(
        // The URL without a kind segment.
        (route_kind == ANY_KIND).then_some(ANY_KIND),
    ) else {
        return refuse(
            provider_id,
            ANY_KIND,
            Refusal::UnknownRoute,
            format!("unknown callback kind; use one of {}", ROUTE_KINDS.join(", ")),
        );
    };
    let bytes = match read_limited(&headers, body, state.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(refusal) => {
            let reason = match refusal {
                Refusal::TooLarge => format!("body larger than {} bytes", state.max_body_bytes),
                _ => "the body could not be read".into(),
            };
            return refuse(provider_id, route_kind, refusal, reason);
        }
    };
    let events = match provider.adapter.parse_callback(&bytes) {
        Ok(events) => events,
        Err(err) => {
            let refusal = match err {
                CallbackError::Malformed(_) => Refusal::Malformed,
                CallbackError::Unrecognised(_) => Refusal::Unrecognised,
            };
            return refuse(provider_id, route_kind, refusal, err.to_string());
        }
    };
    // Published with confirms before answering: a 2xx means every event of the body is
    // in the broker; anything else and the provider posts the whole body again.
    if let Err(err) = state.broker.publish_events(&events).await {
        tracing::warn!(provider = %provider_id, error = %err, "events not confirmed; asking the provider to retry");
        return refuse(
            provider_id,
            route_kind,
            Refusal::BrokerUnavailable,
            "broker unavailable; try again later".into(),
        );
    }
    // Counted once per kind per body (a batch of reports is usually one kind), for both
    // counters, rather than a label lookup per event.
    let counts = count_by_kind(&events);
    for (kind, count) in &counts {
        counter!(EVENTS_PUBLISHED_TOTAL, "kind" => *kind).increment(*count);
    }
    if events.is_empty() {
        counter!(CALLBACKS_TOTAL, "provider" => provider_id.to_owned(), "kind" => route_kind, "outcome" => "no_event")
            .increment(1);
    }
    // RCS failure reports fire the armed SMS fallback (exactly once fleet-wide), success
    // reports disarm it; not done means 503, so the provider sends the report again.
    if let Some(fallbacks) = &state.fallbacks
        && let Err(err) = fallbacks.on_reports(state.broker.publisher().as_ref(), &events).await
    {
        tracing::warn!(provider = %provider_id, error = %err, "SMS fallback not settled; asking the provider to retry");
        return refuse(
            provider_id,
            route_kind,
            Refusal::FallbackUnavailable,
            "SMS fallback store unavailable; try again later".into(),
        );
    }
    for (kind, count) in counts {
        counter!(CALLBACKS_TOTAL, "provider" => provider_id.to_owned(), "kind" => kind, "outcome" => "ok")
            .increment(count);
    }
    (StatusCode::OK, Json(json!({ "accepted": events.len() }))).into_response()
}

/// Events counted by kind, in order of first appearance: a batch of reports is
/// usually one kind, so its counters are looked up once per body, not once per event.
fn count_by_kind(events: &[Event]) -> Vec<(&'static str, u64)> {
    let mut counts: Vec<(&'static str, u64)> = Vec::with_capacity(2);
    for event in events {
        let kind = event.kind.as_str();
        match counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, count)) => *count += 1,
            None => counts.push((kind, 1)),
        }
    }
    counts
}

/// Counts and logs a refusal and answers it with `{"error": reason}`.
fn refuse(provider: &str, kind: &'static str, refusal: Refusal, reason: String) -> Response {
    counter!(CALLBACKS_TOTAL, "provider" => provider.to_owned(), "kind" => kind, "outcome" => refusal.outcome())
        .increment(1);
    tracing::info!(provider, kind, outcome = refusal.outcome(), reason = %reason, "callback refused");
    (refusal.status(), Json(json!({ "error": reason }))).into_response()
}

/// Reads the body, refusing it as soon as it is known to exceed `limit`: from
/// `Content-Length` before reading anything, else while streaming.
async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, Refusal> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Refusal::TooLarge);
    }
    let mut bytes = Vec::with_capacity(declared.map_or(0, |len| len as usize).min(limit));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Refusal::Unreadable)?;
        if bytes.len() + chunk.len() > limit {
            return Err(Refusal::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The token is compared in constant time; a provider without a token accepts no
/// callbacks at all. Basic auth, when configured, is required on top (also compared in
/// constant time; lengths may leak, contents do not).
fn authorised(provider: &IngestProvider, token: &str, headers: &HeaderMap) -> bool {
    let expected = provider.token.expose().as_bytes();
    if expected.is_empty() || !bool::from(expected.ct_eq(token.as_bytes())) {
        return false;
    }
    let Some((user, password)) = &provider.basic_auth else { return true };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..6).filter(|scheme| scheme.eq_ignore_ascii_case("basic ")).map(|_| &v[6..]))
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v.trim()).ok())
    else {
        return false;
    };
    let wanted = format!("{user}:{}", password.expose());
    bool::from(given.as_slice().ct_eq(wanted.as_bytes()))
}

#[cfg(test)]
mod tests {
    use sendfleet_protocol::{Channel, Event, EventKind};

    #[test]
    fn events_are_counted_once_per_kind_in_first_seen_order() {
        let kinds = [EventKind::Delivered, EventKind::Seen, EventKind::Delivered, EventKind::Delivered];
        let events: Vec<Event> = kinds.iter().map(|k| Event::new(*k, "p", Channel::Rcs)).collect();
        let counts = super::count_by_kind(&events);
        assert_eq!(counts, vec![(EventKind::Delivered.as_str(), 3), (EventKind::Seen.as_str(), 1)]);
        assert!(super::count_by_kind(&[]).is_empty());
    }
}

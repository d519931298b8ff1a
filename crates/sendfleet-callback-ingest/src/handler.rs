//! The callback routes.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::Engine;
use futures_util::StreamExt;
use metrics::counter;
use sendfleet_failpoints::Point;
use sendfleet_protocol::Event;
use sendfleet_providers::{CallbackError, CallbackRequest, ParsedCallback, RejectedReport};
use sendfleet_telemetry::metrics::{CALLBACK_REPORTS_REJECTED_TOTAL, CALLBACKS_TOTAL, EVENTS_PUBLISHED_TOTAL};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::OwnedSemaphorePermit;

use crate::{IngestProvider, IngestState};

/// Rejected reports listed in an answer and logged one by one, per body; the rest are
/// counted (metric) and summed up in one log line, so a body of thousands of bad
/// reports cannot flood the logs.
const REJECTED_LISTED: usize = 100;

/// Why a callback was not settled: the provider is asked to retry (503).
#[derive(Debug, thiserror::Error)]
enum Unsettled {
    /// The events were not all confirmed by the broker.
    #[error(transparent)]
    Broker(#[from] sendfleet_broker::BrokerError),
    /// An SMS fallback could not be fired or disarmed (store, broker, another trigger's
    /// claim in progress).
    #[error(transparent)]
    Fallback(#[from] sendfleet_fallback::FallbackError),
    /// A failpoint failed a step (fault tests only): handled as that step's real failure.
    #[error(transparent)]
    Injected(#[from] sendfleet_failpoints::Injected),
    /// The task publishing the events ended without an answer (it panicked).
    #[error("callback task failed: {0}")]
    Task(String),
}

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
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, provider, token, ANY_KIND, uri, headers, body).await
}

async fn callback_with_kind(
    state: State<Arc<IngestState>>,
    Path((provider, token, kind)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, provider, token, &kind, uri, headers, body).await
}

/// Why a callback was refused: the `outcome` label and the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    UnknownProvider,
    UnknownRoute,
    Unauthorized,
    BadSignature,
    TooLarge,
    Unreadable,
    Malformed,
    Unrecognised,
    BrokerUnavailable,
    BrokerBlocked,
    Overloaded,
    FallbackUnavailable,
    FallbackInProgress,
}

impl Refusal {
    fn outcome(self) -> &'static str {
        match self {
            Refusal::UnknownProvider => "unknown_provider",
            Refusal::UnknownRoute => "unknown_route",
            Refusal::Unauthorized => "unauthorized",
            Refusal::BadSignature => "bad_signature",
            Refusal::TooLarge => "too_large",
            Refusal::Unreadable => "unreadable",
            Refusal::Malformed => "malformed",
            Refusal::Unrecognised => "unrecognised",
            Refusal::BrokerUnavailable => "broker_unavailable",
            Refusal::BrokerBlocked => "broker_blocked",
            Refusal::Overloaded => "overloaded",
            Refusal::FallbackUnavailable => "fallback_unavailable",
            Refusal::FallbackInProgress => "fallback_in_progress",
        }
    }

    /// The `Retry-After` of a 503: how soon trying again is likely to work.
    fn retry_after(self) -> Option<Duration> {
        match self {
            Refusal::Overloaded => Some(Duration::from_secs(1)),
            Refusal::BrokerUnavailable
            | Refusal::BrokerBlocked
            | Refusal::FallbackUnavailable
            | Refusal::FallbackInProgress => Some(Duration::from_secs(5)),
            _ => None,
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Refusal::UnknownProvider | Refusal::UnknownRoute => StatusCode::NOT_FOUND,
            Refusal::Unauthorized | Refusal::BadSignature => StatusCode::UNAUTHORIZED,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Unreadable | Refusal::Malformed | Refusal::Unrecognised => StatusCode::BAD_REQUEST,
            Refusal::BrokerUnavailable
            | Refusal::BrokerBlocked
            | Refusal::Overloaded
            | Refusal::FallbackUnavailable
            | Refusal::FallbackInProgress => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

async fn handle(
    State(state): State<Arc<IngestState>>,
    provider_id: String,
    token: String,
    route_kind: &str,
    uri: Uri,
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
    // Refused at once, before any work: while the broker blocks the connection a publish
    // would only queue in memory; beyond the in-flight bound a callback would only wait.
    if state.broker.blocked() {
        let reason = "broker is blocking publishes (resource alarm); try again later".into();
        return refuse(provider_id, route_kind, Refusal::BrokerBlocked, reason);
    }
    // Held until the callback's work ends, also when this handler is dropped (the task
    // below owns it then), so the bound covers every body held and publish pending.
    let Ok(permit) = state.in_flight.clone().try_acquire_owned() else {
        let reason = format!("more than {} callbacks in flight; try again later", state.max_in_flight);
        return refuse(provider_id, route_kind, Refusal::Overloaded, reason);
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
    let ParsedCallback { mut events, rejected, reports } = match provider.adapter.parse_callback(&CallbackRequest {
        path_and_query: uri.path_and_query().map_or(uri.path(), |p| p.as_str()),
        headers: &headers,
        body: &bytes,
    }) {
        Ok(parsed) => parsed,
        Err(err) => {
            let refusal = refusal_of(&err);
            return refuse(provider_id, route_kind, refusal, err.to_string());
        }
    };
    drop(bytes);
    // A report the provider posts again (after a 503, a timeout, a crash here) must be
    // the same event: its id comes from what it says, not from when it arrived.
    for event in &mut events {
        if let Some(id) = event.report_id() {
            event.event_id = id;
        }
    }
    // One bad report must not refuse the batch (providers do not retry a 4xx, so its
    // good reports would be lost): bad ones are counted and logged, the rest published.
    note_rejected(provider_id, route_kind, &rejected);
    if !rejected.is_empty() && rejected.len() == reports {
        return refuse_rejected(provider_id, route_kind, &rejected);
    }
    // An injected error here is a publish that failed.
    if let Err(err) = sendfleet_failpoints::hit(Point::IngestParsed).await {
        return unsettled(provider_id, route_kind, &Unsettled::from(err));
    }
    let accepted = events.len();
    // Counted once per kind per body (a batch of reports is usually one kind), for both
    // counters, rather than a label lookup per event.
    let counts = count_by_kind(&events);
    // Published and fired in a task of its own, awaited here: a provider's HTTP client
    // that gives up and disconnects drops this handler, and must not cancel a fallback
    // fire halfway. The permit goes with the task, so the bound still holds.
    let work = state.tasks.spawn(settle(state.clone(), events, counts.clone(), permit));
    let settled = work.await.unwrap_or_else(|join| Err(Unsettled::Task(join.to_string())));
    if let Err(err) = settled {
        return unsettled(provider_id, route_kind, &err);
    }
    // An injected error here is an answer that never reached the provider.
    if let Err(err) = sendfleet_failpoints::hit(Point::IngestBeforeResponse).await {
        return unsettled(provider_id, route_kind, &Unsettled::from(err));
    }
    if accepted == 0 {
        counter!(CALLBACKS_TOTAL, "provider" => provider_id.to_owned(), "kind" => route_kind, "outcome" => "no_event")
            .increment(1);
    }
    for (kind, count) in counts {
        counter!(CALLBACKS_TOTAL, "provider" => provider_id.to_owned(), "kind" => kind, "outcome" => "ok")
            .increment(count);
    }
    if rejected.is_empty() {
        (StatusCode::OK, Json(json!({ "accepted": accepted }))).into_response()
    } else {
        (StatusCode::OK, Json(json!({ "accepted": accepted, "rejected": rejected_json(&rejected) }))).into_response()
    }
}

/// A callback's events published with confirms, then its RCS reports acted on (fire or
/// disarm SMS fallbacks). Runs in its own task; `counts` are the events by kind,
/// `permit` is the callback's in-flight slot.
async fn settle(
    state: Arc<IngestState>,
    events: Vec<Event>,
    counts: Vec<(&'static str, u64)>,
    permit: OwnedSemaphorePermit,
) -> Result<(), Unsettled> {
    let _permit = permit;
    // Published with confirms before answering: a 2xx means every event of the body is
    // in the broker; anything else and the provider posts the whole body again.
    state.broker.publish_events(&events).await?;
    for event in &events {
        state.status.record_event(event);
    }
    for (kind, count) in counts {
        counter!(EVENTS_PUBLISHED_TOTAL, "kind" => kind).increment(count);
    }
    // An injected error here is a confirm that did not come (the events may be in the broker).
    sendfleet_failpoints::hit(Point::IngestConfirmed).await?;
    // RCS failure reports fire the armed SMS fallback (exactly once fleet-wide), success
    // reports disarm it; not done means 503, so the provider sends the report again.
    if let Some(fallbacks) = &state.fallbacks {
        fallbacks.on_reports(state.broker.publisher().as_ref(), &events).await?;
    }
    Ok(())
}

/// Answers a callback that was not settled with 503, so the provider retries.
fn unsettled(provider_id: &str, route_kind: &'static str, err: &Unsettled) -> Response {
    let (refusal, reason) = match err {
        Unsettled::Fallback(sendfleet_fallback::FallbackError::InProgress { retry_after, .. }) => {
            let reason = "SMS fallback being sent by another request; try again later".to_owned();
            tracing::info!(provider = %provider_id, error = %err, "SMS fallback in progress elsewhere; asking the provider to retry");
            let response = refuse(provider_id, route_kind, Refusal::FallbackInProgress, reason);
            return with_retry_after(response, *retry_after);
        }
        Unsettled::Fallback(_) => (Refusal::FallbackUnavailable, "SMS fallback store unavailable; try again later"),
        Unsettled::Broker(_) | Unsettled::Injected(_) | Unsettled::Task(_) => {
            (Refusal::BrokerUnavailable, "broker unavailable; try again later")
        }
    };
    tracing::warn!(provider = %provider_id, error = %err, "callback not settled; asking the provider to retry");
    refuse(provider_id, route_kind, refusal, reason.to_owned())
}

fn refusal_of(err: &CallbackError) -> Refusal {
    match err {
        CallbackError::Malformed(_) => Refusal::Malformed,
        CallbackError::Unrecognised(_) => Refusal::Unrecognised,
        CallbackError::Unauthenticated(_) => Refusal::BadSignature,
    }
}

/// Counts every rejected report and logs the first [`REJECTED_LISTED`] with their
/// reasons (the URL, and so the token, is never logged).
fn note_rejected(provider: &str, kind: &'static str, rejected: &[RejectedReport]) {
    if rejected.is_empty() {
        return;
    }
    let mut by_reason: Vec<(&'static str, u64)> = Vec::with_capacity(2);
    for report in rejected {
        let label = report.error.label();
        match by_reason.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => by_reason.push((label, 1)),
        }
    }
    for (reason, n) in by_reason {
        counter!(CALLBACK_REPORTS_REJECTED_TOTAL, "provider" => provider.to_owned(), "reason" => reason).increment(n);
    }
    for report in rejected.iter().take(REJECTED_LISTED) {
        tracing::info!(provider, kind, index = report.index, reason = %report, "callback report rejected");
    }
    if rejected.len() > REJECTED_LISTED {
        tracing::info!(provider, kind, more = rejected.len() - REJECTED_LISTED, "more callback reports rejected");
    }
}

/// `[{"index": i, "reason": "…"}, …]`, the first [`REJECTED_LISTED`].
fn rejected_json(rejected: &[RejectedReport]) -> Vec<serde_json::Value> {
    rejected.iter().take(REJECTED_LISTED).map(|r| json!({ "index": r.index, "reason": r.to_string() })).collect()
}

/// A body whose every report is bad: 400 with the reasons (counted and logged already).
fn refuse_rejected(provider: &str, kind: &'static str, rejected: &[RejectedReport]) -> Response {
    let refusal = rejected.first().map_or(Refusal::Malformed, |r| refusal_of(&r.error));
    let listed: Vec<String> = rejected.iter().take(REJECTED_LISTED).map(ToString::to_string).collect();
    let reason = format!("every report was rejected: {}", listed.join("; "));
    counter!(CALLBACKS_TOTAL, "provider" => provider.to_owned(), "kind" => kind, "outcome" => refusal.outcome())
        .increment(1);
    tracing::info!(provider, kind, outcome = refusal.outcome(), reports = rejected.len(), "callback refused");
    (refusal.status(), Json(json!({ "error": reason, "rejected": rejected_json(rejected) }))).into_response()
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

/// Counts and logs a refusal and answers it with `{"error": reason}` (and `Retry-After`
/// on a 503).
fn refuse(provider: &str, kind: &'static str, refusal: Refusal, reason: String) -> Response {
    counter!(CALLBACKS_TOTAL, "provider" => provider.to_owned(), "kind" => kind, "outcome" => refusal.outcome())
        .increment(1);
    tracing::info!(provider, kind, outcome = refusal.outcome(), reason = %reason, "callback refused");
    let response = (refusal.status(), Json(json!({ "error": reason }))).into_response();
    match refusal.retry_after() {
        Some(after) => with_retry_after(response, after),
        None => response,
    }
}

/// Sets `Retry-After` to `after`, in whole seconds (at least 1).
fn with_retry_after(mut response: Response, after: Duration) -> Response {
    let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(seconds.max(1)));
    response
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

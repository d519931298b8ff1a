//! The mock's HTTP routes.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State as AxumState,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use rand::Rng;
use serde_json::{Value, json};

use crate::{Behaviour, Received, State, dlr::PendingReport, validate::Endpoint};

pub(crate) type SharedState = Shared;

type Shared = Arc<State>;

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/sms/3/messages", post(sms_send))
        .route("/rcs/2/messages", post(rcs_send))
        .route("/rcs/2/capability-check/query", post(capability_query))
        .route("/mock/capability", get(capability_stats))
        .route("/rcs/1/events", post(rcs_events))
        .route("/generic/rcs", post(crate::generic::rcs_send).put(crate::generic::rcs_send))
        .route("/generic/sms", post(crate::generic::sms_send).put(crate::generic::sms_send))
        .route("/oauth/token", post(crate::generic::token))
        .route("/2010-04-01/Accounts/{account}/Messages.json", post(crate::twilio::create_message))
        .route("/mock/oauth/revoke", post(crate::generic::revoke))
        .route("/mock/stats", get(stats))
        .route("/mock/count", get(count))
        .route("/mock/received", get(received))
        .route("/mock/behaviour", get(get_behaviour).put(put_behaviour))
        .route("/mock/reset", post(reset))
        .route("/health", get(|| async { "ok" }))
        .with_state(state)
}

async fn sms_send(AxumState(state): AxumState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    send(state, Endpoint::SmsSend, headers, body).await
}

async fn rcs_send(AxumState(state): AxumState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    send(state, Endpoint::RcsSend, headers, body).await
}

/// `POST /rcs/2/capability-check/query`: `ENABLED` or `UNREACHABLE` per number, from the
/// same knobs the RCS delivery reports use.
async fn capability_query(AxumState(state): AxumState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let behaviour = state.behaviour.read().clone();
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let (status, answer) =
        match decide(&state, Endpoint::CapabilityQuery, &Behaviour::default(), authorization, parsed.as_ref()) {
            (status, answer) if !status.is_success() => (status, answer),
            _ if rand::rng().random::<f64>() < behaviour.capability_error_ratio => {
                (StatusCode::TOO_MANY_REQUESTS, error_for(StatusCode::TOO_MANY_REQUESTS))
            }
            _ => {
                let request = parsed.as_ref().unwrap_or(&Value::Null);
                let numbers: Vec<String> = request["phoneNumbers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect();
                let results: Vec<Value> = numbers
                    .iter()
                    .map(|number| {
                        let code = if behaviour.is_rcs_capable(number) { "ENABLED" } else { "UNREACHABLE" };
                        json!({"messageId": uuid::Uuid::new_v4().to_string(), "phoneNumber": number, "code": code})
                    })
                    .collect();
                state.record.record_capability(Some(&numbers));
                let mut answer = json!({ "capabilityCheckResults": results });
                if let Some(options) = request.get("options") {
                    answer["options"] = options.clone();
                }
                (StatusCode::OK, answer)
            }
        };
    if !status.is_success() {
        state.record.record_capability(None);
    }
    latency(&behaviour).await;
    (status, Json(answer)).into_response()
}

async fn capability_stats(AxumState(state): AxumState<Shared>) -> Json<crate::CapabilityStats> {
    Json(state.record.capability())
}

async fn rcs_events(AxumState(state): AxumState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    send(state, Endpoint::RcsEvents, headers, body).await
}

async fn send(state: Shared, endpoint: Endpoint, headers: HeaderMap, body: Bytes) -> Response {
    let at_us = chrono::Utc::now().timestamp_micros();
    let behaviour = state.behaviour.read().clone();
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let message_ids = parsed.as_ref().map(message_ids).unwrap_or_default();

    let (status, response) = decide(&state, endpoint, &behaviour, authorization.as_deref(), parsed.as_ref());
    latency(&behaviour).await;

    let keep = behaviour.record_bodies;
    state.record.record(
        Received {
            at_us,
            answered_us: chrono::Utc::now().timestamp_micros(),
            path: endpoint.path().to_owned(),
            method: "POST".to_owned(),
            headers: header_map(&headers),
            authorization,
            status: status.as_u16(),
            message_ids,
            body: if keep { parsed.clone() } else { None },
        },
        keep,
    );
    if status.is_success()
        && endpoint != Endpoint::RcsEvents
        && let Some(request) = &parsed
    {
        schedule_reports(&state, endpoint, &behaviour, request);
    }
    let mut response = (status, Json(response)).into_response();
    if matches!(status.as_u16(), 429 | 503)
        && let Some(seconds) = behaviour.retry_after_seconds
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn decide(
    state: &State,
    endpoint: Endpoint,
    behaviour: &Behaviour,
    authorization: Option<&str>,
    parsed: Option<&Value>,
) -> (StatusCode, Value) {
    let authorised =
        authorization.and_then(|a| a.strip_prefix("App ")).is_some_and(|key| state.api_keys.iter().any(|k| k == key));
    if !authorised {
        return (
            StatusCode::UNAUTHORIZED,
            api_error("E401", "The request lacks valid authentication credentials for the requested resource.", vec![]),
        );
    }
    let Some(request) = parsed else {
        return (StatusCode::BAD_REQUEST, api_error("E400", "Request body is not valid JSON.", vec![]));
    };
    let violations = state.validators.violations(endpoint, request);
    if !violations.is_empty() {
        return (StatusCode::BAD_REQUEST, api_error("E400", "Request cannot be processed.", violations));
    }
    if let Some(forced) = behaviour.force_status.and_then(|s| StatusCode::from_u16(s).ok())
        && !forced.is_success()
    {
        return (forced, error_for(forced));
    }
    if endpoint == Endpoint::RcsSend
        && let Some(forced) = destinations(request)
            .filter_map(|(_, d)| d["to"].as_str())
            .find_map(|to| behaviour.rcs_status_for(to))
            .and_then(|s| StatusCode::from_u16(s).ok())
    {
        return (forced, error_for(forced));
    }
    let roll: f64 = rand::rng().random();
    if roll < behaviour.error_503_ratio {
        return (StatusCode::SERVICE_UNAVAILABLE, error_for(StatusCode::SERVICE_UNAVAILABLE));
    }
    if roll < behaviour.error_503_ratio + behaviour.error_429_ratio {
        return (StatusCode::TOO_MANY_REQUESTS, error_for(StatusCode::TOO_MANY_REQUESTS));
    }
    (StatusCode::OK, accepted_response(endpoint, request))
}

/// Headers as recorded: lower-case names, values as text.
pub(crate) fn header_map(headers: &HeaderMap) -> std::collections::BTreeMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect()
}

pub(crate) async fn latency(behaviour: &Behaviour) {
    let jitter =
        if behaviour.latency_jitter_ms > 0 { rand::rng().random_range(0..=behaviour.latency_jitter_ms) } else { 0 };
    let total = behaviour.latency_ms + jitter;
    if total > 0 {
        tokio::time::sleep(Duration::from_millis(total)).await;
    }
}

/// Infobip's `ApiError` body.
fn api_error(code: &str, description: &str, violations: Vec<(String, String)>) -> Value {
    json!({
        "errorCode": code,
        "description": description,
        "action": "Check the request and adjust it.",
        "violations": violations.into_iter().map(|(property, violation)| json!({"property": property, "violation": violation})).collect::<Vec<_>>(),
        "resources": [],
    })
}

fn error_for(status: StatusCode) -> Value {
    let code = format!("E{}", status.as_u16());
    let description = match status.as_u16() {
        401 => "The request lacks valid authentication credentials for the requested resource.",
        403 => "Forbidden: the API key lacks the scope for this resource.",
        429 => "Too many requests sent.",
        503 | 500 | 502 => "Something went wrong on our side. Try again later.",
        _ => "Request cannot be processed.",
    };
    api_error(&code, description, vec![])
}

fn message_ids(request: &Value) -> Vec<String> {
    destinations(request).filter_map(|(_, d)| d["messageId"].as_str().map(str::to_owned)).collect()
}

fn destinations(request: &Value) -> impl Iterator<Item = (&Value, &Value)> {
    // Sends list `messages`, outbound events list `events`; both carry destinations.
    request["messages"]
        .as_array()
        .or_else(|| request["events"].as_array())
        .into_iter()
        .flatten()
        .flat_map(|m| m["destinations"].as_array().into_iter().flatten().map(move |d| (m, d)))
}

fn accepted_response(endpoint: Endpoint, request: &Value) -> Value {
    let bulk_id = request["options"]["schedule"]["bulkId"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let messages: Vec<Value> = destinations(request)
        .map(|(_, d)| {
            let mut message = json!({
                "messageId": d["messageId"].as_str().map(str::to_owned).unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                "status": {"groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED", "description": "Message sent to next instance"},
                "destination": d["to"],
            });
            if endpoint == Endpoint::SmsSend {
                message["details"] = json!({"messageCount": 1});
            }
            message
        })
        .collect();
    json!({"bulkId": bulk_id, "messages": messages})
}

fn schedule_reports(state: &State, endpoint: Endpoint, behaviour: &Behaviour, request: &Value) {
    if !behaviour.delivery_reports {
        return;
    }
    let delay = Duration::from_millis(behaviour.delivery_report_delay_ms);
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string();
    for (message, destination) in destinations(request) {
        let url = message["webhooks"]["delivery"]["url"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| state.default_dlr_url.clone());
        let Some(url) = url else { continue };
        let to = destination["to"].as_str().unwrap_or_default();
        let rcs = endpoint == Endpoint::RcsSend;
        let not_capable = rcs && !behaviour.is_rcs_capable(to);
        let rcs_fails = rcs && !not_capable && behaviour.rcs_dlr_fails(to);
        // With `smsFailover` in the request Infobip sends the SMS itself when RCS fails,
        // and every report names the channel it is about.
        let failover = rcs && message["options"]["smsFailover"].is_object();
        let failed_over = failover && (not_capable || rcs_fails);
        let undelivered =
            !failed_over && (not_capable || rcs_fails || rand::rng().random::<f64>() < behaviour.undelivered_ratio);
        let (status, error) = if failed_over || !undelivered {
            (
                json!({"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET", "description": "Message delivered to handset"}),
                json!({"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "description": "No Error", "permanent": false}),
            )
        } else if not_capable || rcs_fails {
            let id = if not_capable { 7002 } else { behaviour.rcs_dlr_error_id };
            (
                json!({"groupId": 2, "groupName": "UNDELIVERABLE", "id": 4, "name": "UNDELIVERABLE_REJECTED_OPERATOR", "description": "Message rejected by operator"}),
                json!({"groupId": 1, "groupName": "HANDSET_ERRORS", "id": id, "name": chat_error_name(id), "description": "RCS delivery failed", "permanent": true}),
            )
        } else {
            (
                json!({"groupId": 2, "groupName": "UNDELIVERABLE", "id": 9, "name": "UNDELIVERABLE_NOT_DELIVERED", "description": "Message sent not delivered"}),
                json!({"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 1, "name": "EC_UNKNOWN_SUBSCRIBER", "description": "Unknown Subscriber", "permanent": true}),
            )
        };
        let mut result = json!({
            "bulkId": request["options"]["schedule"]["bulkId"],
            "messageId": destination["messageId"],
            "to": to,
            "sender": message["sender"],
            "sentAt": now,
            "doneAt": now,
            "messageCount": 1,
            "mccMnc": "405861",
            "price": {"pricePerMessage": 0.0015, "currency": "EUR"},
            "status": status,
            "error": error,
        });
        if let Some(data) = message["webhooks"]["callbackData"].as_str() {
            result["callbackData"] = json!(data);
        }
        if failover {
            result["channel"] = json!(if failed_over { "SMS" } else { "RCS" });
        }
        if endpoint == Endpoint::RcsSend {
            result["interactionType"] = json!("SINGLE_MESSAGE");
            result["conversation"] = json!({"canInitiate": !undelivered, "id": null});
        }
        let duplicates = duplicate_urls(&url, &behaviour.dlr_duplicate_bases);
        state.dlr.submit(PendingReport { url, duplicates, result }, delay);
    }
}

/// `url`'s path on each duplicate base URL.
pub(crate) fn duplicate_urls(url: &str, bases: &[String]) -> Vec<String> {
    if bases.is_empty() {
        return Vec::new();
    }
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let path = url[after_scheme..].find('/').map_or("", |i| &url[after_scheme + i..]);
    bases.iter().map(|base| format!("{}{path}", base.trim_end_matches('/'))).collect()
}

/// Infobip's names of the chat error ids the mock reports.
fn chat_error_name(id: i32) -> &'static str {
    match id {
        7002 => "EC_UNKNOWN_USER",
        7003 => "EC_BLOCKED_USER",
        7005 => "EC_FORBIDDEN_ACCESS",
        7006 => "EC_BAD_REQUEST",
        7201 => "EC_UNSUPPORTED_DEVICE",
        _ => "EC_ERROR",
    }
}

async fn stats(AxumState(state): AxumState<Shared>) -> Json<crate::Stats> {
    Json(state.record.stats())
}

/// Cheap counters for polling: `{"requests": n, "accepted": n}`.
async fn count(AxumState(state): AxumState<Shared>) -> Json<Value> {
    let (requests, accepted) = state.record.counts();
    Json(json!({"requests": requests, "accepted": accepted}))
}

async fn received(AxumState(state): AxumState<Shared>) -> Json<Vec<Received>> {
    Json(state.record.received())
}

async fn get_behaviour(AxumState(state): AxumState<Shared>) -> Json<Behaviour> {
    Json(state.behaviour.read().clone())
}

async fn put_behaviour(AxumState(state): AxumState<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<Behaviour>(&body) {
        Ok(behaviour) => {
            *state.behaviour.write() = behaviour;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(err) => (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    }
}

async fn reset(AxumState(state): AxumState<Shared>) -> StatusCode {
    state.record.reset();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_keep_the_path_on_other_hosts() {
        let urls = duplicate_urls("http://127.0.0.1:1/callbacks/ib/tok", &["http://127.0.0.1:2/".into()]);
        assert_eq!(urls, vec!["http://127.0.0.1:2/callbacks/ib/tok".to_owned()]);
        assert!(duplicate_urls("http://a/x", &[]).is_empty());
    }
}

//! Our Generic RCS/SMS API (`docs/generic-api.md`), as a vendor implementing it would:
//! `POST`/`PUT /generic/rcs` and `/generic/sms` validate the body strictly, check
//! authentication as [`GenericAuth`](crate::behaviour::GenericAuth) says, record the
//! request with its headers, and post Generic delivery reports to its `callback_url`.
//! `POST /oauth/token` issues client-credentials tokens that expire after
//! `oauth_token_ttl_seconds`; `POST /mock/oauth/revoke` (or
//! [`MockHandle::revoke_tokens`](crate::MockHandle::revoke_tokens)) invalidates every
//! issued token so the next send gets a 401.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use axum::{
    Json,
    body::Bytes,
    extract::State as AxumState,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use parking_lot::Mutex;
use rand::Rng;
use serde_json::{Value, json};

use crate::{
    Behaviour, Received, State,
    behaviour::GenericAuth,
    dlr::PendingReport,
    handler::{SharedState, header_map, latency},
    validate::{Endpoint, generic_channel_violations},
};

/// Tokens issued by `POST /oauth/token`, and counters tests read.
#[derive(Default)]
pub(crate) struct OAuthServer {
    tokens: Mutex<HashMap<String, Instant>>,
    requests: AtomicU64,
    issued: AtomicU64,
    refused_tokens: AtomicU64,
}

impl OAuthServer {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    pub fn refused_tokens(&self) -> u64 {
        self.refused_tokens.load(Ordering::Relaxed)
    }

    pub fn revoke_all(&self) {
        self.tokens.lock().clear();
    }

    fn live(&self, token: &str) -> bool {
        self.tokens.lock().get(token).is_some_and(|expiry| Instant::now() < *expiry)
    }
}

pub(crate) async fn rcs_send(
    AxumState(state): AxumState<SharedState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    send(state, Endpoint::GenericRcs, method, headers, body).await
}

pub(crate) async fn sms_send(
    AxumState(state): AxumState<SharedState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    send(state, Endpoint::GenericSms, method, headers, body).await
}

async fn send(state: SharedState, endpoint: Endpoint, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let at_us = chrono::Utc::now().timestamp_micros();
    let behaviour = state.behaviour.read().clone();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let message_ids: Vec<String> =
        parsed.as_ref().and_then(|b| b["message_id"].as_str()).map(|id| vec![id.to_owned()]).unwrap_or_default();

    let (status, response) = decide(&state, endpoint, &behaviour, &headers, parsed.as_ref());
    latency(&behaviour).await;

    let keep = behaviour.record_bodies;
    state.record.record(
        Received {
            at_us,
            answered_us: chrono::Utc::now().timestamp_micros(),
            path: endpoint.path().to_owned(),
            method: method.as_str().to_owned(),
            headers: header_map(&headers),
            authorization: headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned),
            status: status.as_u16(),
            message_ids,
            body: if keep { parsed.clone() } else { None },
        },
        keep,
    );
    if status.is_success()
        && let Some(request) = &parsed
    {
        schedule_report(&state, endpoint, &behaviour, request);
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

/// Our recommended error body.
fn error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

fn decide(
    state: &State,
    endpoint: Endpoint,
    behaviour: &Behaviour,
    headers: &HeaderMap,
    parsed: Option<&Value>,
) -> (StatusCode, Value) {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Err(message) = check_auth(state, &behaviour.generic_auth, authorization) {
        return (StatusCode::UNAUTHORIZED, error("UNAUTHORIZED", message));
    }
    let Some(request) = parsed else {
        return (StatusCode::BAD_REQUEST, error("INVALID_JSON", "Request body is not valid JSON."));
    };
    let mut violations = state.validators.violations(endpoint, request);
    violations.extend(generic_channel_violations(endpoint, request));
    if !violations.is_empty() {
        let mut body = error("INVALID_REQUEST", "Request does not follow the Generic API.");
        body["error"]["violations"] = violations
            .into_iter()
            .map(|(property, violation)| json!({"property": property, "violation": violation}))
            .collect();
        return (StatusCode::BAD_REQUEST, body);
    }
    if let Some(forced) = behaviour.force_status.and_then(|s| StatusCode::from_u16(s).ok())
        && !forced.is_success()
    {
        return (forced, error(&format!("HTTP_{}", forced.as_u16()), forced.canonical_reason().unwrap_or("forced")));
    }
    let roll: f64 = rand::rng().random();
    if roll < behaviour.error_503_ratio {
        return (StatusCode::SERVICE_UNAVAILABLE, error("UNAVAILABLE", "Try again later."));
    }
    if roll < behaviour.error_503_ratio + behaviour.error_429_ratio {
        return (StatusCode::TOO_MANY_REQUESTS, error("THROTTLED", "Too many requests."));
    }
    (StatusCode::OK, json!({"message_id": request["message_id"], "status": "ACCEPTED"}))
}

fn check_auth(state: &State, auth: &GenericAuth, authorization: Option<&str>) -> Result<(), &'static str> {
    match auth {
        GenericAuth::None => Ok(()),
        GenericAuth::Basic { username, password } => {
            let given = authorization
                .and_then(|a| a.strip_prefix("Basic "))
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
                .ok_or("Basic credentials required.")?;
            if given == format!("{username}:{password}").as_bytes() {
                Ok(())
            } else {
                Err("Wrong user id or password.")
            }
        }
        GenericAuth::Oauth2 { .. } => {
            let token = authorization.and_then(|a| a.strip_prefix("Bearer ")).ok_or("Bearer token required.")?;
            if state.oauth.live(token.trim()) {
                Ok(())
            } else {
                state.oauth.refused_tokens.fetch_add(1, Ordering::Relaxed);
                Err("The access token is invalid or expired.")
            }
        }
    }
}

fn schedule_report(state: &State, endpoint: Endpoint, behaviour: &Behaviour, request: &Value) {
    if !behaviour.delivery_reports {
        return;
    }
    let url = request["callback_url"].as_str().map(str::to_owned).or_else(|| state.default_dlr_url.clone());
    let Some(url) = url else { return };
    let to = request["to"].as_str().unwrap_or_default();
    let digits = to.trim_start_matches('+');
    let not_capable = endpoint == Endpoint::GenericRcs
        && behaviour.not_rcs_capable_prefixes.iter().any(|p| digits.starts_with(p.as_str()));
    let undelivered = not_capable || rand::rng().random::<f64>() < behaviour.undelivered_ratio;
    let mut result = json!({
        "message_id": request["message_id"],
        "status": if undelivered { "UNDELIVERED" } else { "DELIVERED" },
        "to": to,
        "sender": request["sender"],
        "channel": request["channel"],
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "vendor_message_id": uuid::Uuid::new_v4().to_string(),
        "details": {"price": "0.0015", "currency": "EUR"},
    });
    if not_capable {
        result["error"] =
            json!({"code": "NOT_RCS_CAPABLE", "message": "The handset does not support RCS.", "permanent": true});
    } else if undelivered {
        result["error"] = json!({"code": "UNKNOWN_SUBSCRIBER", "message": "Unknown subscriber.", "permanent": true});
    }
    if let Some(data) = request["callback_data"].as_str() {
        result["callback_data"] = json!(data);
    }
    let duplicates = crate::handler::duplicate_urls(&url, &behaviour.dlr_duplicate_bases);
    state
        .dlr
        .submit(PendingReport { url, duplicates, result }, Duration::from_millis(behaviour.delivery_report_delay_ms));
}

/// `POST /oauth/token`: RFC 6749 client credentials, client authenticated by form
/// fields or Basic; errors in RFC 6749 §5.2 form.
pub(crate) async fn token(AxumState(state): AxumState<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    state.oauth.requests.fetch_add(1, Ordering::Relaxed);
    let behaviour = state.behaviour.read().clone();
    latency(&behaviour).await;
    let refuse = |status: StatusCode, code: &str| (status, Json(json!({"error": code}))).into_response();
    let form_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let form = parse_form(&body);
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            Some((decode_form_value(id), decode_form_value(secret)))
        });
    let given = basic.or_else(|| Some((form.get("client_id")?.clone(), form.get("client_secret")?.clone())));
    let GenericAuth::Oauth2 { client_id, client_secret } = &behaviour.generic_auth else {
        return refuse(StatusCode::BAD_REQUEST, "unauthorized_client");
    };
    if given.as_ref() != Some(&(client_id.clone(), client_secret.clone())) {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let ttl = behaviour.oauth_token_ttl_seconds;
    state.oauth.tokens.lock().insert(token.clone(), Instant::now() + Duration::from_secs(ttl));
    state.oauth.issued.fetch_add(1, Ordering::Relaxed);
    let mut response = Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl})).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /mock/oauth/revoke`: every issued token stops working.
pub(crate) async fn revoke(AxumState(state): AxumState<SharedState>) -> StatusCode {
    state.oauth.revoke_all();
    StatusCode::NO_CONTENT
}

fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    match reqwest::Url::parse(&format!("http://form.invalid/?{text}")) {
        Ok(url) => url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
        Err(_) => HashMap::new(),
    }
}

fn decode_form_value(value: &str) -> String {
    parse_form(format!("v={value}").as_bytes()).remove("v").unwrap_or_default()
}

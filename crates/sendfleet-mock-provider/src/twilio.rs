//! Twilio's Messages API: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`.
//!
//! Checks Basic auth (the path's Account SID or an `SK…` API key, with one of the
//! mock's API keys as password), validates the form body against `CreateMessageRequest`
//! from Twilio's OpenAPI spec (strict: undeclared parameters refused; one of `From` /
//! `MessagingServiceSid` and one of `Body` / `MediaUrl` / `ContentSid` required), answers
//! `201` with a message resource, and posts form-encoded status callbacks (`sent`, then
//! `delivered`, `undelivered` or `read`) to the message's `StatusCallback`, signed with
//! `X-Twilio-Signature` using the Twilio Auth Token (by default the first API key).
//!
//! RCS: a destination `rcs:+E164` is RCS only (not capable → `undelivered`, 63106). A
//! plain destination through a Messaging Service listed in `twilio_rcs_services` is tried
//! on RCS first and falls back to SMS when the number is not RCS capable, as Twilio does;
//! the callback's `From` says which channel delivered (`rcs:<agent>` or a phone number).

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State as AxumState},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Map, Value, json};

use crate::{Behaviour, Received, State, handler::header_map, handler::latency};

/// The RCS sender the mock's Messaging Services hold.
pub const MOCK_RCS_AGENT: &str = "rcs:sendfleet_mock_agent";
/// The SMS sender of the mock's Messaging Services (when a send names no `FallbackFrom`).
pub const MOCK_SMS_SENDER: &str = "+15005550006";

/// Form parameters whose schema type is an array (repeated keys).
const ARRAY_PARAMETERS: &[&str] = &["MediaUrl", "PersistentAction"];
const INTEGER_PARAMETERS: &[&str] = &["Attempt", "ValidityPeriod"];
const NUMBER_PARAMETERS: &[&str] = &["MaxPrice"];
const BOOLEAN_PARAMETERS: &[&str] = &["ProvideFeedback", "ForceDelivery", "SmartEncoded", "ShortenUrls", "SendAsMms"];

pub(crate) async fn create_message(
    AxumState(state): AxumState<Arc<State>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at_us = chrono::Utc::now().timestamp_micros();
    let behaviour = state.behaviour.read().clone();
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let form = as_json(&pairs);
    let message_id = form["StatusCallback"].as_str().and_then(|url| query_value(url, "message_id"));
    let account_sid = account_sid.trim_end_matches(".json").to_owned();
    let (status, answer) = decide(&state, &behaviour, &account_sid, authorization.as_deref(), &headers, &form);
    latency(&behaviour).await;
    let keep = behaviour.record_bodies;
    state.record.record(
        Received {
            at_us,
            answered_us: chrono::Utc::now().timestamp_micros(),
            path: format!("/2010-04-01/Accounts/{account_sid}/Messages.json"),
            method: "POST".into(),
            headers: header_map(&headers),
            authorization,
            status: status.as_u16(),
            message_ids: message_id.into_iter().collect(),
            body: if keep { Some(form.clone()) } else { None },
        },
        keep,
    );
    if status.is_success() && behaviour.delivery_reports {
        schedule_callbacks(&state, &behaviour, &account_sid, &form, &answer);
    }
    let mut response = (status, Json(answer)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS
        && let Some(seconds) = behaviour.retry_after_seconds
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn decide(
    state: &State,
    behaviour: &Behaviour,
    account_sid: &str,
    authorization: Option<&str>,
    headers: &HeaderMap,
    form: &Value,
) -> (StatusCode, Value) {
    if !is_sid(account_sid, "AC") {
        return error(StatusCode::NOT_FOUND, 20404, "The requested resource was not found");
    }
    let credentials = authorization
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let authorised = credentials.as_deref().and_then(|c| c.split_once(':')).is_some_and(|(user, password)| {
        (user == account_sid || is_sid(user, "SK")) && state.api_keys.iter().any(|k| k == password)
    });
    if !authorised {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let form_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return error(StatusCode::BAD_REQUEST, 20001, "Content-Type must be application/x-www-form-urlencoded");
    }
    let violations = state.validators.twilio_violations(form);
    if !violations.is_empty() {
        let listed: Vec<String> = violations.iter().map(|(at, what)| format!("{at}: {what}")).collect();
        return error(StatusCode::BAD_REQUEST, 20001, &format!("Invalid parameters: {}", listed.join("; ")));
    }
    if let Some(forced) = behaviour.force_status.and_then(|s| StatusCode::from_u16(s).ok())
        && !forced.is_success()
    {
        return error(forced, code_for(forced), "forced by the mock's behaviour");
    }
    let roll: f64 = rand::rng().random();
    if roll < behaviour.error_503_ratio {
        return error(StatusCode::SERVICE_UNAVAILABLE, 20503, "Service unavailable");
    }
    if roll < behaviour.error_503_ratio + behaviour.error_429_ratio {
        return error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
    }
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let service = form["MessagingServiceSid"].as_str();
    let now = chrono::Utc::now().to_rfc2822();
    let answer = json!({
        "sid": sid,
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": form["Body"].as_str().unwrap_or(""),
        "date_created": now,
        "date_updated": now,
        "date_sent": null,
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": form["From"].as_str(),
        "messaging_service_sid": service,
        "num_media": form["MediaUrl"].as_array().map_or(0, Vec::len).to_string(),
        "num_segments": "0",
        "price": null,
        "price_unit": null,
        "status": if service.is_some() { "accepted" } else { "queued" },
        "subresource_uris": { "media": format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json") },
        "to": form["To"].as_str(),
        "uri": format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json"),
    });
    (StatusCode::CREATED, answer)
}

fn error(status: StatusCode, code: u32, message: &str) -> (StatusCode, Value) {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, body)
}

fn code_for(status: StatusCode) -> u32 {
    match status.as_u16() {
        401 => 20003,
        404 => 20404,
        429 => 20429,
        500..=599 => 20500,
        _ => 20001,
    }
}

/// The form as the JSON object the schema describes: arrays for repeated parameters,
/// numbers and booleans parsed where the schema wants them (a value that does not parse
/// stays a string, which the schema then refuses).
fn as_json(pairs: &[(String, String)]) -> Value {
    let mut object = Map::new();
    for (name, value) in pairs {
        if ARRAY_PARAMETERS.contains(&name.as_str()) {
            let entry = object.entry(name.clone()).or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = entry {
                items.push(Value::String(value.clone()));
            }
            continue;
        }
        let typed = if INTEGER_PARAMETERS.contains(&name.as_str()) {
            value.parse::<i64>().map(Value::from).ok()
        } else if NUMBER_PARAMETERS.contains(&name.as_str()) {
            value.parse::<f64>().ok().map(Value::from)
        } else if BOOLEAN_PARAMETERS.contains(&name.as_str()) {
            value.parse::<bool>().map(Value::from).ok()
        } else {
            None
        };
        object.insert(name.clone(), typed.unwrap_or_else(|| Value::String(value.clone())));
    }
    Value::Object(object)
}

fn query_value(url: &str, key: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

fn is_sid(sid: &str, prefix: &str) -> bool {
    sid.len() == 34 && sid.starts_with(prefix) && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The callbacks a send gets: `sent`, then the final status (and `read` for RCS when
/// delivered), from the channel that delivered.
fn schedule_callbacks(state: &Arc<State>, behaviour: &Behaviour, account_sid: &str, form: &Value, answer: &Value) {
    let Some(url) = form["StatusCallback"].as_str().map(str::to_owned) else { return };
    let to = form["To"].as_str().unwrap_or_default();
    let number = to.trim_start_matches("rcs:").to_owned();
    let service = form["MessagingServiceSid"].as_str();
    let rcs_service = service.is_some_and(|s| behaviour.twilio_rcs_services.iter().any(|r| r == s));
    let rcs_only = to.starts_with("rcs:");
    let capable = behaviour.is_rcs_capable(&number);
    let sms_sender = form["FallbackFrom"].as_str().or(form["From"].as_str()).unwrap_or(MOCK_SMS_SENDER).to_owned();
    let rcs_sender = form["From"].as_str().filter(|f| f.starts_with("rcs:")).unwrap_or(MOCK_RCS_AGENT).to_owned();
    // (From, final status, error code)
    let (from, status, error) = if rcs_only {
        if !capable {
            (rcs_sender, "undelivered", Some(63106))
        } else if behaviour.rcs_dlr_fails(&number) {
            (rcs_sender, "undelivered", Some(behaviour.twilio_rcs_error_code))
        } else {
            (rcs_sender, "delivered", None)
        }
    } else if rcs_service && capable {
        (rcs_sender, "delivered", None)
    } else {
        let undelivered: f64 = rand::rng().random();
        if undelivered < behaviour.undelivered_ratio {
            (sms_sender, "undelivered", Some(30003))
        } else {
            (sms_sender, "delivered", None)
        }
    };
    let base = |status: &str| {
        let mut params = vec![
            ("AccountSid".to_owned(), account_sid.to_owned()),
            ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
            ("From".to_owned(), from.clone()),
            ("MessageSid".to_owned(), answer["sid"].as_str().unwrap_or_default().to_owned()),
            ("MessageStatus".to_owned(), status.to_owned()),
            ("SmsSid".to_owned(), answer["sid"].as_str().unwrap_or_default().to_owned()),
            ("SmsStatus".to_owned(), status.to_owned()),
            ("To".to_owned(), to.to_owned()),
        ];
        if let Some(service) = service {
            params.push(("MessagingServiceSid".to_owned(), service.to_owned()));
        }
        params
    };
    let mut callbacks = vec![base("sent")];
    let mut last = base(status);
    if let Some(code) = error {
        last.push(("ErrorCode".to_owned(), code.to_string()));
    }
    callbacks.push(last);
    let token = state.twilio_auth_token().to_owned();
    let delay = Duration::from_millis(behaviour.delivery_report_delay_ms);
    let state = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        for params in callbacks {
            if post_signed(&state, &url, &params, &token).await {
                state.twilio_callbacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
}

/// Posts one callback, retried while the receiver is unavailable (at most 30 tries).
async fn post_signed(state: &State, url: &str, params: &[(String, String)], token: &str) -> bool {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let signature = sign(url, params, token);
    for attempt in 0..30_u32 {
        let sent = state
            .callback_client
            .post(url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", &signature)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => return true,
            // A refusal (bad signature, malformed) will not change: give up.
            Ok(response) if response.status().is_client_error() => return false,
            _ => tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1).min(10))).await,
        }
    }
    false
}

/// `X-Twilio-Signature`, computed as Twilio documents it.
pub fn sign(url: &str, params: &[(String, String)], auth_token: &str) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

//! The exact requests each existing adapter sends, captured on loopback and compared
//! byte for byte with `tests/fixtures/wire-captures.json`, recorded before the provider
//! boundary was reworked: a refactor of the adapters must not change what a vendor
//! receives. `SENDFLEET_REGENERATE=1` rewrites the file (only for a deliberate change of
//! the wire, reviewed in the diff).

use std::{collections::BTreeMap, sync::Arc};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, response::IntoResponse};
use parking_lot::Mutex;
use sendfleet_config::Config;
use sendfleet_protocol::SendJob;
use sendfleet_providers::{AdapterSettings, unlimited};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// One request as the provider received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Capture {
    provider: String,
    job: String,
    method: String,
    path: String,
    /// Every header but `host` (its port changes from run to run).
    headers: BTreeMap<String, String>,
    body: String,
}

type Captured = Arc<Mutex<Vec<(String, String, HeaderMap, Bytes)>>>;

async fn record(
    State(captured): State<Captured>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    captured.lock().push((method.to_string(), uri.to_string(), headers, body));
    // Infobip-shaped, which the Generic adapter also takes as a 2xx.
    axum::Json(
        json!({"messages": [{"messageId": "m", "status": {"groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED"}}]}),
    )
}

const CONFIG: &str = r#"
[[providers]]
id = "ib-rcs"
kind = "infobip_rcs"
base_url = "{base}"
api_key_env = "IB_KEY"
sender_ids = ["AcmeRetailAgent"]
callback_token_env = "CB_TOKEN"
click_tracking = { enabled = true, tracking_url = "https://track.example.com" }

[[providers]]
id = "ib-rcs-failover"
kind = "infobip_rcs"
base_url = "{base}"
api_key_env = "IB_KEY"
sender_ids = ["AcmeRetailAgent"]
callback_token_env = "CB_TOKEN"
fallback_mode = "provider"
sms_fallback = { sender_id = "ACMEIN", india = true, principal_entity_id = "1101" }

[[providers]]
id = "ib-sms"
kind = "infobip_sms"
base_url = "{base}"
api_key_env = "IB_KEY"
sender_ids = ["ACMEIN"]
callback_token_env = "CB_TOKEN"
regional = { india_principal_entity_id = "1101", turkey_brand_code = 123456, turkey_recipient_type = "TACIR" }

[[providers]]
id = "jio"
kind = "jiocx_rcs"
base_url = "{base}"
api_key_env = "IB_KEY"
sender_ids = ["AcmeJioAgent"]
callback_token_env = "CB_TOKEN"

[[providers]]
id = "gen-rcs"
kind = "generic_rcs"
sender_ids = ["AcmeAgent"]
callback_token_env = "CB_TOKEN"
[providers.generic]
endpoint = "{base}/v1/send"
headers = { "X-Account" = "acme" }
secret_headers = { "X-Api-Key" = "GEN_KEY" }
body_parameters = { account = "acme", campaign = "{{metadata.campaign}}" }

[[providers]]
id = "gen-sms"
kind = "generic_sms"
sender_ids = ["ACMEIN"]
callback_token_env = "CB_TOKEN"
[providers.generic]
endpoint = "{base}/api/messages"
method = "PUT"
auth = { type = "basic", username = "acme", password_env = "GEN_PASSWORD" }
body_parameters = { msisdn = "{{to_digits}}", tag = "sf-{{message_id}}" }
"#;

fn lookup(name: &str) -> Option<String> {
    match name {
        "IB_KEY" => Some("infobip-api-key-0001".into()),
        "CB_TOKEN" => Some("callback-token-0123456789".into()),
        "GEN_KEY" => Some("vendor-api-key-42".into()),
        "GEN_PASSWORD" => Some("basic-pa55word".into()),
        _ => None,
    }
}

const SUGGESTIONS: &str = r#"[
    {"type": "reply", "text": "Yes", "postback_data": "yes"},
    {"type": "open_url", "text": "Site", "postback_data": "site", "url": "https://acme.example.com/x", "application": "webview", "webview_view_mode": "half"},
    {"type": "dial_phone", "text": "Call", "postback_data": "call", "phone_number": "+14155550100"}
]"#;

/// The jobs every adapter of a channel is given, named.
fn jobs(channel: &str) -> Vec<(&'static str, serde_json::Value)> {
    let suggestions: serde_json::Value = serde_json::from_str(SUGGESTIONS).unwrap();
    let card = json!({"title": "Sale", "description": "50% off", "media": {"url": "https://cdn.example.com/a.jpg", "thumbnail_url": "https://cdn.example.com/t.jpg", "height": "medium"}, "suggestions": [suggestions[0]]});
    let options = json!({
        "validity_period_seconds": 7200,
        "send_at": "2026-12-24T09:30:00+05:30",
        "campaign_reference_id": "xmas",
        "delivery_time_window": {"days": ["MONDAY", "FRIDAY"], "from": {"hour": 9, "minute": 0}, "to": {"hour": 17, "minute": 30}}
    });
    let mut contents = vec![
        ("text", json!({"type": "text", "text": "Your code is 123456 ✓ “quoted” & <tag>"}), json!({})),
        ("text-options", json!({"type": "text", "text": "Hello"}), options),
        (
            "text-india",
            json!({"type": "text", "text": "OTP 1"}),
            json!({"regional": {"india_dlt": {"principal_entity_id": "1101", "content_template_id": "1107", "telemarketer_id": "tm-1"}}}),
        ),
    ];
    if channel == "rcs" {
        contents.extend([
            ("text-suggestions", json!({"type": "text", "text": "Pick one", "suggestions": suggestions}), json!({})),
            ("file", json!({"type": "file", "url": "https://cdn.example.com/a.pdf", "thumbnail_url": "https://cdn.example.com/t.jpg"}), json!({})),
            ("card", json!({"type": "card", "orientation": "vertical", "alignment": "left", "card": card, "suggestions": [suggestions[1]]}), json!({})),
            ("carousel", json!({"type": "carousel", "card_width": "medium", "cards": [card, card]}), json!({})),
            ("template", json!({"type": "template", "template_id": "welcome_v2", "parameters": {"name": "Ana", "code": "42"}}), json!({})),
        ]);
    }
    contents
        .into_iter()
        .map(|(name, content, options)| {
            let to = if name == "text-india" { "+919876543210" } else { "+447700900123" };
            let job = json!({
                "schema_version": 1,
                "message_id": format!("5b3e9a1e-6c7d-4f80-9a1b-{:012}", name.len()),
                "provider": "p",
                "channel": channel,
                "to": to,
                "sender": if channel == "rcs" { "AcmeRetailAgent" } else { "ACMEIN" },
                "content": content,
                "options": options,
                "fallback": if channel == "rcs" { json!({"text": "By SMS: hello", "sender": "ACMEIN", "validity_period_seconds": 3600}) } else { json!(null) },
                "metadata": {"campaign": "c1", "customer": "42"},
                "trace_id": "0af7651916cd43dd8448eb211c80319c",
                "attempts": 1,
                "first_attempt_at_ms": 1_765_000_000_000_i64,
                "created_at_ms": 1_765_000_000_000_i64,
            });
            (name, job)
        })
        .collect()
}

async fn capture_all() -> Vec<Capture> {
    let captured: Captured = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let router = Router::new().fallback(record).with_state(captured.clone());
    let server = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await.unwrap();
        })
    };
    let config = Config::from_toml(&CONFIG.replace("{base}", &base), &lookup, &sendfleet_providers::VENDORS).unwrap();
    let settings = AdapterSettings { callback_base_url: "https://callbacks.example.com/".into() };
    let mut captures = Vec::new();
    for provider in &config.providers {
        let adapter = sendfleet_providers::build(provider, &settings, unlimited()).unwrap();
        let channel = provider.channel().to_string();
        for (name, job) in jobs(&channel) {
            let mut job: SendJob = serde_json::from_value(job).unwrap();
            job.provider.clone_from(&provider.id);
            let before = captured.lock().len();
            let outcome = adapter.send(&job).await;
            let mut taken = captured.lock();
            // A job the adapter refuses to build sends nothing; that is part of the wire too.
            let request = taken.drain(before..).collect::<Vec<_>>();
            assert!(request.len() <= 1, "{}/{name}: one request per send", provider.id);
            let Some((method, path, headers, body)) = request.into_iter().next() else {
                captures.push(Capture {
                    provider: provider.id.clone(),
                    job: name.into(),
                    method: String::new(),
                    path: String::new(),
                    headers: BTreeMap::new(),
                    body: format!("not sent: {}", outcome.label()),
                });
                continue;
            };
            let headers = headers
                .iter()
                .filter(|(name, _)| *name != "host")
                .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
                .collect();
            captures.push(Capture {
                provider: provider.id.clone(),
                job: name.into(),
                method,
                path,
                headers,
                body: String::from_utf8(body.to_vec()).unwrap(),
            });
        }
    }
    shutdown.cancel();
    server.await.unwrap();
    captures
}

#[tokio::test]
async fn existing_adapters_send_byte_identical_requests() {
    let captures = capture_all().await;
    let path = format!("{}/tests/fixtures/wire-captures.json", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("SENDFLEET_REGENERATE").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&captures).unwrap() + "\n").unwrap();
    }
    let recorded: Vec<Capture> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap();
    assert_eq!(captures.len(), recorded.len(), "number of captures");
    for (now, before) in captures.iter().zip(&recorded) {
        assert_eq!(now, before, "{}/{} changed on the wire", before.provider, before.job);
    }
}

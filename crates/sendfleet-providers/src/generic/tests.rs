use std::collections::BTreeMap;

use sendfleet_config::ProviderConfig;
use sendfleet_protocol::{Channel, Content, EventKind, IndiaDlt, Regional, SendJob, SendOptions, Suggestion};
use serde_json::{Value, json};

use super::*;
use crate::TransientCode;

/// The events of a body with no rejected report, else the first rejection as an error:
/// the old whole-body answer, which these tests' reasons are written against.
fn parse_callback(config: &ProviderConfig, body: &[u8]) -> Result<Vec<sendfleet_protocol::Event>, CallbackError> {
    super::parse_callback(config, body).and_then(crate::ParsedCallback::strict)
}

/// A generic provider loaded and checked as a config file would be.
fn provider(kind: &str, generic: &str) -> ProviderConfig {
    let text = format!(
        "[[providers]]\nid = \"gen\"\nkind = \"{kind}\"\nsender_ids = [\"ACME\"]\ncallback_token_env = \"CB\"\n\
         [providers.generic]\nendpoint = \"https://vendor.example/send\"\n{generic}"
    );
    let lookup = |name: &str| {
        let value = match name {
            "CB" => "tok-0123456789abcdef",
            "P" => "pa55word-very-secret",
            "K" => "key-very-secret",
            _ => "secret-value",
        };
        Some(value.to_owned())
    };
    sendfleet_config::Config::from_toml(&text, &lookup, &crate::VENDORS).unwrap().providers.remove(0)
}

/// A provider whose section was not checked at load time: the adapter must still refuse
/// what the check would have.
fn unchecked(kind: &str, generic: &str) -> ProviderConfig {
    let entry = format!("id = \"gen\"\nkind = \"{kind}\"\nsender_ids = [\"ACME\"]\n");
    let mut config: ProviderConfig = toml::from_str(&entry).unwrap();
    let section: GenericConfig =
        toml::from_str(&format!("endpoint = \"https://vendor.example/send\"\n{generic}")).unwrap();
    config.vendor = sendfleet_config::VendorSettings::new(section);
    config
}

fn adapter(kind: &str, generic: &str) -> GenericAdapter {
    GenericAdapter::new(
        provider(kind, generic),
        &AdapterSettings { callback_base_url: "https://hooks.example.com".into() },
        crate::unlimited(),
    )
    .unwrap()
}

fn job(content: Content) -> SendJob {
    SendJob {
        priority: Default::default(),
        schema_version: 1,
        message_id: "m-0001".into(),
        provider: "gen".into(),
        channel: Channel::Rcs,
        to: "+919876543210".into(),
        sender: "AcmeAgent".into(),
        content,
        options: SendOptions::default(),
        fallback: None,
        metadata: BTreeMap::from([("campaign".into(), "spring".into())]),
        trace_id: "trace-1".into(),
        attempts: 2,
        first_attempt_at_ms: None,
        created_at_ms: 0,
        fallback_for: None,
    }
}

fn text(text: &str) -> Content {
    Content::Text { text: text.into(), suggestions: vec![] }
}

fn body(adapter: &GenericAdapter, job: &SendJob) -> Value {
    serde_json::from_slice(&adapter.body(job).unwrap()).unwrap()
}

#[test]
fn rcs_body_carries_our_fields_and_rich_content() {
    let adapter = adapter("generic_rcs", "");
    let mut job = job(Content::Text {
        text: "Your order shipped".into(),
        suggestions: vec![Suggestion::OpenUrl {
            text: "Track".into(),
            postback_data: "track".into(),
            url: "https://acme.example/t/1".into(),
            application: None,
            webview_view_mode: None,
        }],
    });
    job.options = SendOptions {
        validity_period_seconds: Some(3600),
        regional: Some(Regional {
            india_dlt: Some(IndiaDlt {
                principal_entity_id: "1101".into(),
                content_template_id: None,
                telemarketer_id: None,
            }),
            turkey_iys: None,
        }),
        ..SendOptions::default()
    };
    let body = body(&adapter, &job);
    assert_eq!(body["message_id"], "m-0001");
    assert_eq!(body["channel"], "rcs");
    assert_eq!(body["to"], "+919876543210");
    assert_eq!(body["sender"], "AcmeAgent");
    assert_eq!(body["attempt"], 3, "two attempts made before: this is the third");
    assert_eq!(body["callback_url"], "https://hooks.example.com/callbacks/gen/tok-0123456789abcdef");
    assert_eq!(body["validity_period_seconds"], 3600);
    assert_eq!(body["regional"]["india_dlt"]["principal_entity_id"], "1101");
    assert_eq!(
        body["content"],
        json!({"type": "text", "text": "Your order shipped", "suggestions": [
            {"type": "open_url", "text": "Track", "postback_data": "track", "url": "https://acme.example/t/1"}
        ]})
    );
    assert!(body["callback_data"].as_str().unwrap().contains("trace-1"));
    assert!(body.get("send_at").is_none(), "absent options are left out, not null");
    for key in body.as_object().unwrap().keys() {
        assert!(GENERIC_RESERVED_BODY_KEYS.contains(&key.as_str()), "{key} is not reserved");
    }
}

#[test]
fn sms_body_refuses_rich_content() {
    let adapter = adapter("generic_sms", "");
    let mut sms = job(text("Hi"));
    sms.channel = Channel::Sms;
    assert_eq!(body(&adapter, &sms)["channel"], "sms");
    let card = job(Content::File { url: "https://x/y.png".into(), thumbnail_url: None, suggestions: vec![] });
    assert_eq!(adapter.body(&card).unwrap_err(), "SMS cannot carry file content");
    let suggested = job(Content::Text {
        text: "x".into(),
        suggestions: vec![Suggestion::Reply { text: "a".into(), postback_data: "b".into() }],
    });
    assert!(adapter.body(&suggested).unwrap_err().contains("suggestions"));
}

#[test]
fn body_parameters_are_merged_with_field_references_resolved() {
    let adapter = adapter(
        "generic_rcs",
        r#"body_parameters = { account = "acme", ref = "sf-{{message_id}}/{{ to_digits }}", msg = "{{text}}", who = "{{sender}}@{{channel}}", camp = "{{metadata.campaign}}", none = "{{metadata.missing}}", dest = "{{to}}" }
fallback_body_parameters = { route = "fallback" }"#,
    );
    let merged = body(&adapter, &job(text("Hello")));
    assert_eq!(merged["account"], "acme");
    assert_eq!(merged["ref"], "sf-m-0001/919876543210");
    assert_eq!(merged["msg"], "Hello");
    assert_eq!(merged["who"], "AcmeAgent@rcs");
    assert_eq!(merged["camp"], "spring");
    assert_eq!(merged["none"], "");
    assert_eq!(merged["dest"], "+919876543210");
    assert!(merged.get("route").is_none(), "fallback parameters only on fallback SMS jobs");

    let mut fallback = job(text("Hello"));
    fallback.fallback_for = Some("rcs-1".into());
    let replacement = body(&adapter, &fallback);
    assert_eq!(replacement["route"], "fallback");
    assert_eq!(replacement["fallback_for"], "rcs-1");
}

#[test]
fn reserved_keys_cannot_be_replaced_even_without_validation() {
    let config = unchecked("generic_rcs", r#"body_parameters = { message_id = "evil", to = "+1" }"#);
    let adapter = GenericAdapter::new(config, &AdapterSettings::default(), crate::unlimited()).unwrap();
    let body = body(&adapter, &job(text("x")));
    assert_eq!(body["message_id"], "m-0001");
    assert_eq!(body["to"], "+919876543210");
}

#[test]
fn bad_templates_and_methods_fail_at_build_time() {
    let config = unchecked("generic_rcs", r#"body_parameters = { x = "{{nope}}" }"#);
    let err = GenericAdapter::new(config, &AdapterSettings::default(), crate::unlimited()).err().unwrap().to_string();
    assert!(err.contains("body parameter x") && err.contains("{{nope}}"), "{err}");
    let config = unchecked("generic_rcs", r#"method = "PATCH""#);
    assert!(GenericAdapter::new(config, &AdapterSettings::default(), crate::unlimited()).is_err());
}

#[test]
fn answers_are_classified() {
    assert_eq!(classify(200, None, b""), SendOutcome::Accepted { status: None });
    assert_eq!(classify(202, None, b"not json"), SendOutcome::Accepted { status: None });
    let rejected = classify(400, None, br#"{"error":{"code":"INVALID_NUMBER","message":"to is not a mobile number"}}"#);
    assert_eq!(
        rejected,
        SendOutcome::Rejected {
            code: RejectCode::BadRequest,
            reason: "HTTP 400: INVALID_NUMBER: to is not a mobile number".into(),
            status: None,
            error: None
        }
    );
    let SendOutcome::Rejected { code, reason, .. } = classify(422, None, b"unprocessable") else { panic!() };
    assert_eq!((code, reason.as_str()), (RejectCode::Http4xx, "HTTP 422: unprocessable"));
    let retry = Some(std::time::Duration::from_secs(2));
    assert_eq!(
        classify(429, retry, b""),
        SendOutcome::Transient { code: TransientCode::Throttled, reason: "HTTP 429".into(), retry_after: retry }
    );
    assert_eq!(classify(503, None, b"").label(), "transient");
    assert_eq!(classify(500, None, b"").label(), "transient");
    assert_eq!(classify(408, None, b"").label(), "transient");
    assert_eq!(classify(401, None, b"").label(), "auth_failure");
    assert_eq!(classify(403, None, b"").label(), "auth_failure");
    assert_eq!(classify(404, None, b"").label(), "auth_failure", "a wrong endpoint pauses, it is not the message");
}

#[test]
fn delivery_reports_become_events() {
    let config = provider("generic_rcs", "");
    let body = json!({"results": [
        {"message_id": "m-1", "status": "DELIVERED", "to": "+919876543210", "timestamp": "2026-01-15T10:40:03.512Z",
         "callback_data": "{\"sf\":1,\"trace\":\"t-9\",\"meta\":{\"campaign\":\"spring\"}}",
         "vendor_message_id": "v-1", "details": {"price": 0.01, "operator": "jio"}, "unknown_field": [1, 2]},
        {"message_id": "m-2", "status": "undelivered", "channel": "sms",
         "error": {"code": 7002, "message": "not RCS capable", "permanent": true}},
        {"message_id": "m-3", "status": "SENT"},
        {"message_id": "m-4", "status": "EXPIRED"},
        {"message_id": "m-5", "status": "SEEN"}
    ]});
    let events = parse_callback(&config, body.to_string().as_bytes()).unwrap();
    assert_eq!(events.len(), 4, "SENT is intermediate and produces no event");
    let delivered = &events[0];
    assert_eq!(delivered.kind, EventKind::Delivered);
    assert_eq!(delivered.message_id.as_deref(), Some("m-1"));
    assert_eq!(delivered.channel, Channel::Rcs);
    assert_eq!(delivered.at_ms, 1_768_473_603_512);
    assert_eq!(delivered.trace_id.as_deref(), Some("t-9"));
    assert_eq!(delivered.metadata.get("campaign").map(String::as_str), Some("spring"));
    assert_eq!(delivered.status.as_ref().unwrap().group_id, 3);
    assert_eq!(delivered.details.get("vendor_message_id").map(String::as_str), Some("v-1"));
    assert_eq!(delivered.details.get("price").map(String::as_str), Some("0.01"));
    let failed = &events[1];
    assert_eq!(failed.kind, EventKind::Undelivered);
    assert_eq!(failed.channel, Channel::Sms);
    let error = failed.error.as_ref().unwrap();
    assert_eq!((error.id, error.name.as_deref(), error.permanent), (7002, Some("7002"), true));
    assert_eq!(events[2].kind, EventKind::Undelivered);
    assert_eq!(events[2].status.as_ref().unwrap().name.as_deref(), Some("EXPIRED"));
    assert_eq!(events[3].kind, EventKind::Seen);
}

#[test]
fn single_reports_and_bare_arrays_are_accepted() {
    let config = provider("generic_sms", "");
    let one = parse_callback(&config, br#"{"message_id":"m-1","status":"DELIVERED"}"#).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].channel, Channel::Sms);
    let many =
        parse_callback(&config, br#"[{"message_id":"a","status":"DELIVERED"},{"message_id":"b","status":"REJECTED"}]"#)
            .unwrap();
    assert_eq!(many.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::Delivered, EventKind::Undelivered]);
}

#[test]
fn a_bad_report_is_rejected_and_its_siblings_accepted() {
    let config = provider("generic_rcs", "");
    let body = br#"{"results":[{"message_id":"a","status":"DELIVERED"},{"status":"DELIVERED"},
        {"message_id":"c","status":"LOST"},{"message_id":"d","status":"REJECTED"}]}"#;
    let parsed = super::parse_callback(&config, body).unwrap();
    assert_eq!(parsed.reports, 4);
    assert_eq!(parsed.events.iter().filter_map(|e| e.message_id.as_deref()).collect::<Vec<_>>(), ["a", "d"]);
    let rejected: Vec<(usize, &str)> = parsed.rejected.iter().map(|r| (r.index, r.error.label())).collect();
    assert_eq!(rejected, [(1, "malformed"), (2, "unrecognised")]);
    assert!(!parsed.all_rejected());
    // One report object that is bad: every report of the body is bad.
    let single = super::parse_callback(&config, br#"{"message_id":"a","status":"LOST"}"#).unwrap();
    assert!(single.all_rejected());
    assert!(super::parse_callback(&config, br#"{"results": {}}"#).is_err(), "not a list: the body's error");
}

#[test]
fn malformed_callbacks_say_what_is_wrong() {
    let config = provider("generic_rcs", "");
    let err = |body: &str| parse_callback(&config, body.as_bytes()).unwrap_err().to_string();
    assert!(err("not json").starts_with("malformed callback body: not JSON"));
    assert!(err(r#"{"results": {}}"#).contains("\"results\" must be an array"));
    assert!(err("42").contains("expected {\"results\""));
    let missing = err(r#"{"results":[{"message_id":"a","status":"DELIVERED"},{"status":"DELIVERED"}]}"#);
    assert!(missing.contains("results[1]") && missing.contains("message_id"), "{missing}");
    let unknown = err(r#"{"results":[{"message_id":"a","status":"LOST"}]}"#);
    assert!(unknown.starts_with("unrecognised callback: results[0]: status \"LOST\""), "{unknown}");
    assert!(err(r#"{"message_id":"a","status":"DELIVERED","timestamp":"yesterday"}"#).contains("RFC 3339"));
    assert!(err(r#"{"message_id":"a","status":"DELIVERED","channel":"fax"}"#).contains("channel"));
    assert!(err(r#"{"message_id":" ","status":"DELIVERED"}"#).contains("message_id is empty"));
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let config = provider(
        "generic_rcs",
        r#"auth = { type = "basic", username = "u", password_env = "P" }
secret_headers = { "X-Api-Key" = "K" }"#,
    );
    let adapter = GenericAdapter::new(config, &AdapterSettings::default(), crate::unlimited()).unwrap();
    let Credentials::Basic(value) = adapter.auth.as_ref() else { panic!("basic") };
    assert!(value.is_sensitive());
    assert!(adapter.headers.get("x-api-key").unwrap().is_sensitive());
    let debug = format!("{:?} {:?}", adapter.headers, adapter.config);
    assert!(!debug.contains("very-secret"), "{debug}");
}

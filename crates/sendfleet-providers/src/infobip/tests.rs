use std::collections::BTreeMap;

use sendfleet_config::{ProviderConfig, Secret};
use sendfleet_protocol::{
    Card, CardAlignment, CardOrientation, Content, EventKind, IndiaDlt, Media, MediaHeight, Regional, SendJob,
    SendOptions, Suggestion,
};
use serde_json::{Value, json};

use super::*;
use crate::TransientCode;

/// The events of a body with no rejected report, else the first rejection as an error:
/// the old whole-body answer, which these tests' reasons are written against.
fn parse_callback(config: &ProviderConfig, body: &[u8]) -> Result<Vec<sendfleet_protocol::Event>, CallbackError> {
    super::parse_callback(config, body).and_then(crate::ParsedCallback::strict)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../fixtures/infobip/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn provider(kind: &str) -> ProviderConfig {
    let text = format!(
        "id = \"ib\"\nkind = \"{}\"\nbase_url = \"https://x.api.infobip.com\"\nsender_ids = [\"ACME\"]\n",
        kind
    );
    let mut config: ProviderConfig = toml::from_str(&text).unwrap();
    config.api_key = Secret::new("key");
    config.callback_token = Secret::new("tok-0123456789abcdef");
    config
}

fn job(content: Content) -> SendJob {
    SendJob {
        priority: Default::default(),
        schema_version: 1,
        message_id: "5b3e9a1e-6c7d-4f80-9a1b-2c3d4e5f6a01".into(),
        provider: "ib".into(),
        channel: sendfleet_protocol::Channel::Rcs,
        to: "+919876543210".into(),
        sender: "AcmeRetailAgent".into(),
        content,
        options: SendOptions::default(),
        fallback: None,
        metadata: BTreeMap::from([("campaign".into(), "c1".into())]),
        trace_id: "trace-1".into(),
        attempts: 0,
        first_attempt_at_ms: None,
        created_at_ms: 0,
        fallback_for: None,
    }
}

fn body_json(adapter: &InfobipAdapter, job: &SendJob) -> Value {
    serde_json::from_slice(&adapter.body(job).unwrap()).unwrap()
}

fn adapter(kind: &str, base: &str) -> InfobipAdapter {
    InfobipAdapter::new(provider(kind), &AdapterSettings { callback_base_url: base.into() }).unwrap()
}

#[test]
fn sms_text_body_has_infobip_field_names() {
    let adapter = adapter("infobip_sms", "https://hooks.example.com");
    let mut job = job(Content::Text { text: "Hello".into(), suggestions: vec![] });
    job.options = SendOptions {
        validity_period_seconds: Some(4 * 3600),
        regional: Some(Regional {
            india_dlt: Some(IndiaDlt {
                principal_entity_id: "1101700000000054321".into(),
                content_template_id: Some("1107170000000012345".into()),
                telemarketer_id: None,
            }),
            turkey_iys: None,
        }),
        ..SendOptions::default()
    };
    let body = body_json(&adapter, &job);
    let message = &body["messages"][0];
    assert_eq!(message["sender"], "AcmeRetailAgent");
    assert_eq!(message["destinations"][0], json!({"to": "919876543210", "messageId": job.message_id}));
    assert_eq!(message["content"], json!({"text": "Hello"}));
    assert_eq!(message["options"]["validityPeriod"], json!({"amount": 4, "timeUnit": "HOURS"}));
    assert_eq!(message["options"]["regional"]["indiaDlt"]["principalEntityId"], "1101700000000054321");
    assert_eq!(message["webhooks"]["delivery"]["url"], "https://hooks.example.com/callbacks/ib/tok-0123456789abcdef");
    assert_eq!(message["webhooks"]["contentType"], "application/json");
    assert!(body.get("options").is_none());
}

#[test]
fn rcs_text_matches_the_reference_fixture_shape() {
    let adapter = adapter("infobip_rcs", "");
    let job = job(Content::Text {
        text: "Hi Priya".into(),
        suggestions: vec![
            Suggestion::Reply { text: "Track order".into(), postback_data: "track:58213".into() },
            Suggestion::DialPhone {
                text: "Call support".into(),
                postback_data: "call_support".into(),
                phone_number: "+911800123456".into(),
            },
        ],
    });
    let body = body_json(&adapter, &job);
    let reference: Value = serde_json::from_slice(&fixture("rcs-send-text-request.json")).unwrap();
    let ours = &body["messages"][0]["content"];
    let theirs = &reference["messages"][0]["content"];
    assert_eq!(ours["type"], theirs["type"]);
    assert_eq!(ours["suggestions"][0], theirs["suggestions"][0]);
    assert_eq!(ours["suggestions"][1], theirs["suggestions"][2]);
    assert!(body["messages"][0]["webhooks"].get("delivery").is_none(), "no public URL configured");
}

#[test]
fn rcs_card_uses_infobip_enums() {
    let adapter = adapter("jiocx_rcs", "");
    let job = job(Content::Card {
        orientation: CardOrientation::Vertical,
        alignment: CardAlignment::Left,
        card: Card {
            title: Some("Sale".into()),
            description: Some("30% off".into()),
            media: Some(Media { url: "https://cdn/x.jpg".into(), thumbnail_url: None, height: MediaHeight::Medium }),
            suggestions: vec![],
        },
        suggestions: vec![],
    });
    let body = body_json(&adapter, &job);
    let content = &body["messages"][0]["content"];
    assert_eq!(content["type"], "CARD");
    assert_eq!(content["orientation"], "VERTICAL");
    assert_eq!(content["content"]["media"], json!({"file": {"url": "https://cdn/x.jpg"}, "height": "MEDIUM"}));
}

#[test]
fn sms_refuses_rich_content() {
    let adapter = adapter("infobip_sms", "");
    let job = job(Content::File { url: "https://x".into(), thumbnail_url: None, suggestions: vec![] });
    assert!(adapter.body(&job).unwrap_err().contains("SMS cannot carry file"));
}

#[test]
fn answers_are_classified() {
    assert!(
        matches!(classify(200, None, &fixture("rcs-send-response.json")), SendOutcome::Accepted { status: Some(s) } if s.id == 26)
    );
    let unauthorised = classify(401, None, &fixture("error-401.json"));
    assert!(matches!(&unauthorised, SendOutcome::AuthFailure { http_status: 401, reason } if reason.contains("E401")));
    let legacy = classify(401, None, &fixture("error-401-legacy.json"));
    assert!(matches!(&legacy, SendOutcome::AuthFailure { reason, .. } if reason.contains("Invalid login details")));
    let throttled = classify(429, Some(std::time::Duration::from_secs(2)), &fixture("error-429.json"));
    assert!(matches!(throttled, SendOutcome::Transient { code: TransientCode::Throttled, retry_after: Some(_), .. }));
    let bad = br#"{"errorCode":"E400","description":"Bad","violations":[{"property":"messages[0].content.text","violation":"size must be between 1 and 3072"}]}"#;
    assert!(
        matches!(classify(400, None, bad), SendOutcome::Rejected { code: RejectCode::BadRequest, reason, .. } if reason.contains("messages[0].content.text"))
    );
    let rejected = br#"{"messages":[{"messageId":"m","status":{"groupId":5,"groupName":"REJECTED","id":52,"name":"REJECTED_DESTINATION"}}]}"#;
    assert!(matches!(classify(200, None, rejected), SendOutcome::Rejected { code: RejectCode::RejectedStatus, .. }));
    assert!(matches!(classify(502, None, b"<html>"), SendOutcome::Transient { code: TransientCode::ServerError, .. }));
}

#[test]
fn delivery_reports_become_events() {
    let config = provider("infobip_rcs");
    let events = parse_callback(&config, &fixture("rcs-dlr-delivered.json")).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Delivered);
    assert_eq!(events[0].message_id.as_deref(), Some("5b3e9a1e-6c7d-4f80-9a1b-2c3d4e5f6a01"));
    assert_eq!(events[0].to.as_deref(), Some("+919876543210"));
    assert_eq!(events[0].details.get("callback_data").map(String::as_str), Some("tenant=acme;job=j-7782;attempt=1"));

    let failed = parse_callback(&config, &fixture("rcs-dlr-failed-not-capable.json")).unwrap();
    assert_eq!(failed[0].kind, EventKind::Undelivered);
    assert_eq!(failed[0].error.as_ref().map(|e| e.id), Some(7002));

    let sms = parse_callback(&provider("infobip_sms"), &fixture("sms-dlr-undeliverable.json")).unwrap();
    assert_eq!(sms[0].kind, EventKind::Undelivered);
    assert_eq!(sms[0].channel, sendfleet_protocol::Channel::Sms);
}

#[test]
fn callback_data_carries_trace_and_metadata_back() {
    let adapter = adapter("infobip_sms", "https://h");
    let job = job(Content::Text { text: "x".into(), suggestions: vec![] });
    let body = body_json(&adapter, &job);
    let data = body["messages"][0]["webhooks"]["callbackData"].as_str().unwrap().to_owned();
    let report = json!({"results": [{
        "messageId": job.message_id, "to": "919876543210",
        "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"},
        "callbackData": data, "someFutureField": {"x": 1}
    }]});
    let events = parse_callback(adapter.config(), report.to_string().as_bytes()).unwrap();
    assert_eq!(events[0].trace_id.as_deref(), Some("trace-1"));
    assert_eq!(events[0].metadata.get("campaign").map(String::as_str), Some("c1"));
}

#[test]
fn malformed_callbacks_say_why() {
    let config = provider("infobip_sms");
    assert!(matches!(parse_callback(&config, b"not json"), Err(CallbackError::Malformed(_))));
    let missing_id = br#"{"results":[{"status":{"groupId":3,"id":5}}]}"#;
    let err = parse_callback(&config, missing_id).unwrap_err();
    assert!(err.to_string().contains("results[0]") && err.to_string().contains("messageId"), "{err}");
}

#[test]
fn times_convert_both_ways() {
    assert_eq!(infobip_time("2026-01-15T10:40:01.207Z").unwrap(), "2026-01-15T10:40:01.207+0000");
    assert!(infobip_time("tomorrow").is_err());
    assert_eq!(callback::parse_time_ms("2026-01-15T10:40:01.207+0000"), Some(1_768_473_601_207));
}

#[test]
fn seen_reports_become_seen_events() {
    let events = parse_callback(&provider("infobip_rcs"), &fixture("rcs-seen.json")).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Seen);
    assert_eq!(events[0].message_id.as_deref(), Some("5b3e9a1e-6c7d-4f80-9a1b-2c3d4e5f6a01"));
    assert_eq!(events[0].at_ms, callback::parse_time_ms("2026-01-15T10:44:37.090+0000").unwrap());
    assert_eq!(events[0].to.as_deref(), Some("+919876543210"));
}

#[test]
fn rcs_inbound_text_and_suggestion_replies_become_inbound_events() {
    let config = provider("infobip_rcs");
    let text = &parse_callback(&config, &fixture("rcs-inbound-text.json")).unwrap()[0];
    assert_eq!(text.kind, EventKind::Inbound);
    assert_eq!(text.to.as_deref(), Some("+919876543210"), "the end user");
    assert_eq!(text.message_id.as_deref(), Some("5b3e9a1e-6c7d-4f80-9a1b-2c3d4e5f6a01"), "paired to our message");
    let inbound = text.inbound.as_ref().unwrap();
    assert_eq!(inbound.text.as_deref(), Some("Can you deliver it to my office instead?"));
    assert_eq!(inbound.kind, "text");
    assert_eq!(text.billing.as_ref().unwrap().can_initiate, Some(true));
    let tap = &parse_callback(&config, &fixture("rcs-inbound-suggestion.json")).unwrap()[0];
    assert_eq!(tap.inbound.as_ref().unwrap().kind, "suggestion");
    assert_eq!(tap.inbound.as_ref().unwrap().postback_data.as_deref(), Some("track:58213"));
    assert_eq!(tap.billing.as_ref().unwrap().interaction_type.as_deref(), Some("EVENT"));
}

#[test]
fn mo_ott_msisdn_renderings_with_from_and_files_and_locations_parse() {
    let body = json!({"results": [
        {"from": "919876543210", "to": "AcmeAgent", "integrationType": "RCS", "receivedAt": "2026-01-15T10:46:12.633+0000",
         "messageId": "mo-1", "message": {"type": "FILE", "url": "https://files/x.jpg", "name": "x.jpg", "contentType": "image/jpeg", "size": 1024}},
        {"sender": "919876543210", "to": "AcmeAgent", "receivedAt": "2026-01-15T10:47:00.000+0000",
         "messageId": "mo-2", "message": {"type": "LOCATION", "latitude": 19.07, "longitude": 72.87}}
    ], "messageCount": 2, "pendingMessageCount": 0});
    let events = parse_callback(&provider("jiocx_rcs"), body.to_string().as_bytes()).unwrap();
    assert_eq!(events.len(), 2, "a batch becomes one event per result");
    assert_eq!(events[0].to.as_deref(), Some("+919876543210"));
    assert_eq!(events[0].inbound.as_ref().unwrap().file_name.as_deref(), Some("x.jpg"));
    assert_eq!(events[1].inbound.as_ref().unwrap().latitude, Some(19.07));
    assert!(events[1].message_id.is_none(), "not paired to one of ours");
}

#[test]
fn typing_and_conversation_started_events_carry_billing_fields() {
    let typing = json!({"results": [{"sender": "919876543210", "to": "AcmeAgent", "receivedAt": "2026-01-15T10:46:12.633+0000",
        "event": {"type": "TYPING_INDICATOR"}, "entityId": "e", "applicationId": "a"}], "eventCount": 1, "pendingEventCount": 0});
    let events = parse_callback(&provider("infobip_rcs"), typing.to_string().as_bytes()).unwrap();
    assert_eq!(events[0].kind, EventKind::Typing);
    assert_eq!(events[0].to.as_deref(), Some("+919876543210"));
    let started = json!({"results": [{"messageId": "m-9", "trafficType": "A2P_CONVERSATION",
        "event": {"type": "CONVERSATION_STARTED"},
        "conversation": {"type": "A2P", "id": "conv-1", "startTime": "2026-01-15T10:46:12.633+0000", "endTime": "2026-01-16T10:46:12.633+0000"},
        "platform": {"entityId": "e", "applicationId": "a"}}], "eventCount": 1, "pendingEventCount": 0});
    let events = parse_callback(&provider("infobip_rcs"), started.to_string().as_bytes()).unwrap();
    assert_eq!(events[0].kind, EventKind::ConversationStarted);
    assert_eq!(events[0].message_id.as_deref(), Some("m-9"));
    let billing = events[0].billing.as_ref().unwrap();
    assert_eq!(billing.conversation_id.as_deref(), Some("conv-1"));
    assert_eq!(billing.traffic_type.as_deref(), Some("A2P_CONVERSATION"));
}

#[test]
fn sms_inbound_mo_json_2_and_both_dlr_shapes_parse() {
    let config = provider("infobip_sms");
    let mo = &parse_callback(&config, &fixture("sms-inbound.json")).unwrap()[0];
    assert_eq!(mo.kind, EventKind::Inbound);
    assert_eq!(mo.channel, sendfleet_protocol::Channel::Sms);
    assert_eq!(mo.to.as_deref(), Some("+919876543210"));
    assert_eq!(mo.inbound.as_ref().unwrap().keyword.as_deref(), Some("ORDER"));
    assert_eq!(mo.inbound.as_ref().unwrap().clean_text.as_deref(), Some("58213 where is my parcel"));
    let legacy = json!({"results": [{"bulkId": "b", "messageId": "m-1", "to": "15551234567", "from": "ACME",
        "sentAt": "2026-01-15T10:30:01.120+0000", "doneAt": "2026-01-15T10:30:04.870+0000", "smsCount": 2,
        "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"},
        "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "permanent": false}}]});
    let events = parse_callback(&config, legacy.to_string().as_bytes()).unwrap();
    assert_eq!(events[0].kind, EventKind::Delivered);
    assert_eq!(events[0].sender.as_deref(), Some("ACME"));
    assert_eq!(events[0].details.get("message_count").map(String::as_str), Some("2"));
    assert!(events[0].error.is_none(), "NO_ERROR is not an error");
}

#[test]
fn reports_and_inbound_messages_on_one_url_are_told_apart() {
    let mut mixed: Value = serde_json::from_slice(&fixture("rcs-dlr-delivered.json")).unwrap();
    let inbound: Value = serde_json::from_slice(&fixture("rcs-inbound-text.json")).unwrap();
    mixed["results"].as_array_mut().unwrap().push(inbound["results"][0].clone());
    let events = parse_callback(&provider("jiocx_rcs"), mixed.to_string().as_bytes()).unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Delivered, EventKind::Inbound]);
    assert_eq!(events[0].billing.as_ref().unwrap().traffic_type.as_deref(), Some("SINGLE"));
}

#[test]
fn provider_failover_reports_say_which_channel_ended_it() {
    let config = provider("infobip_rcs");
    let step = json!({"results": [{"messageId": "m-1", "channel": "RCS",
        "status": {"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE"},
        "error": {"groupId": 1, "id": 7002, "name": "EC_UNKNOWN_USER", "permanent": true}}]});
    assert!(
        parse_callback(&config, step.to_string().as_bytes()).unwrap().is_empty(),
        "an intermediate step is not final"
    );
    let last = json!({"results": [{"messageId": "m-1", "channel": "SMS",
        "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"}}]});
    let events = parse_callback(&config, last.to_string().as_bytes()).unwrap();
    assert_eq!((events[0].kind, events[0].channel), (EventKind::Delivered, sendfleet_protocol::Channel::Sms));
}

#[test]
fn unknown_shapes_are_refused_with_a_reason() {
    let config = provider("infobip_rcs");
    let err = parse_callback(&config, br#"{"results":[{"hello":"world"}]}"#).unwrap_err();
    assert!(matches!(err, CallbackError::Unrecognised(_)));
    assert!(err.to_string().contains("results[0]"));
    assert!(parse_callback(&config, br#"{"noresults":[]}"#).is_err());
}

#[test]
fn capability_answers_map_codes_to_what_the_worker_does() {
    let asked = vec!["+919876543210".to_owned(), "+919812345678".to_owned(), "+15550000001".to_owned()];
    let answer = capability_answer(200, &fixture("rcs-capability-response.json"), &asked).unwrap();
    assert_eq!(
        answer,
        vec![
            (asked[0].clone(), Capability::Enabled),
            (asked[1].clone(), Capability::NotCapable),
            (asked[2].clone(), Capability::Unknown),
        ],
        "a number missing from the answer is unknown"
    );
    for (code, expected) in [
        ("ENABLED", Capability::Enabled),
        ("UNREACHABLE", Capability::NotCapable),
        ("REJECTED_NETWORK", Capability::NotCapable),
        ("REJECTED_ROUTE_NOT_AVAILABLE", Capability::NotCapable),
        ("INVALID_DESTINATION_ADDRESS", Capability::InvalidNumber),
        ("REQUEST_FAILED", Capability::Unknown),
        ("PROCESSING_ERROR", Capability::Unknown),
        ("UNKNOWN_CODE", Capability::Unknown),
        ("SOMETHING_NEW", Capability::Unknown),
    ] {
        assert_eq!(capability_of(code), expected, "{code}");
    }
    assert_eq!(capability_answer(429, &fixture("error-429.json"), &asked), Err(CapabilityError::Throttled));
    let err = capability_answer(401, &fixture("error-401.json"), &asked).unwrap_err();
    assert!(err.to_string().contains("E401"), "{err}");
    assert!(matches!(capability_answer(200, b"<xml/>", &asked), Err(CapabilityError::Failed(_))));
}

#[test]
fn capability_query_body_matches_the_reference_fixture_shape() {
    let query = wire::CapabilityQuery {
        sender: "AcmeRetailAgent",
        phone_numbers: vec!["919876543210".into(), "919812345678".into()],
    };
    let ours = serde_json::to_value(&query).unwrap();
    let mut theirs: Value = serde_json::from_slice(&fixture("rcs-capability-request.json")).unwrap();
    theirs.as_object_mut().unwrap().remove("options");
    assert_eq!(ours, theirs);
}

#[test]
fn provider_side_failover_puts_sms_failover_in_the_rcs_request() {
    let mut config = provider("infobip_rcs");
    config.fallback_mode = sendfleet_config::FallbackMode::Provider;
    let adapter = InfobipAdapter::new(config, &AdapterSettings::default()).unwrap();
    let mut job = job(Content::Text { text: "Hi".into(), suggestions: vec![] });
    job.fallback = Some(sendfleet_protocol::SmsFallback {
        text: "Hi by SMS".into(),
        sender: Some("ACMEIN".into()),
        provider: None,
        regional: Some(Regional {
            india_dlt: Some(IndiaDlt {
                principal_entity_id: "1101".into(),
                content_template_id: Some("1107".into()),
                telemarketer_id: None,
            }),
            turkey_iys: None,
        }),
        validity_period_seconds: Some(3_600),
    });
    let body = body_json(&adapter, &job);
    let failover = &body["messages"][0]["options"]["smsFailover"];
    assert_eq!(failover["text"], "Hi by SMS");
    assert_eq!(failover["sender"], "ACMEIN");
    assert_eq!(failover["validityPeriod"], json!({"amount": 1, "timeUnit": "HOURS"}));
    assert_eq!(failover["regional"]["indiaDlt"]["principalEntityId"], "1101");

    let fleet = adapter_with_fleet_mode();
    let body = body_json(&fleet, &job);
    assert!(body["messages"][0]["options"].get("smsFailover").is_none(), "fleet mode keeps the fallback to itself");
}

fn adapter_with_fleet_mode() -> InfobipAdapter {
    adapter("infobip_rcs", "")
}

#[test]
fn reports_about_an_sms_fallback_carry_the_rcs_message_id() {
    let adapter = adapter("infobip_sms", "https://h");
    let mut job = job(Content::Text { text: "x".into(), suggestions: vec![] });
    job.message_id = "rcs-1.sms".into();
    job.fallback_for = Some("rcs-1".into());
    let body = body_json(&adapter, &job);
    let data = body["messages"][0]["webhooks"]["callbackData"].as_str().unwrap().to_owned();
    let report = json!({"results": [{
        "messageId": "rcs-1.sms", "to": "919876543210",
        "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"},
        "callbackData": data
    }]});
    let events = parse_callback(adapter.config(), report.to_string().as_bytes()).unwrap();
    assert_eq!(events[0].message_id.as_deref(), Some("rcs-1"));
    assert_eq!(events[0].details.get("fallback_message_id").map(String::as_str), Some("rcs-1.sms"));
    assert_eq!(events[0].channel, sendfleet_protocol::Channel::Sms);
}

#[test]
fn outbound_events_have_infobip_shapes() {
    let typing = OutboundEvent::TypingIndicator { to: "+447700900123".into(), sender: String::new() };
    let body: serde_json::Value = serde_json::from_slice(&request::build_event_body(&typing, "Agent")).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"events": [{"sender": "Agent", "destinations": [{"to": "447700900123"}], "content": {"type": "TYPING_INDICATOR"}}]})
    );
    let seen =
        OutboundEvent::ReadReceipt { to: "+447700900123".into(), sender: "Other".into(), message_id: "mo-1".into() };
    let body: serde_json::Value = serde_json::from_slice(&request::build_event_body(&seen, "Agent")).unwrap();
    assert_eq!(body["events"][0]["sender"], "Other");
    assert_eq!(body["events"][0]["content"], serde_json::json!({"type": "SEEN", "messageId": "mo-1"}));
}

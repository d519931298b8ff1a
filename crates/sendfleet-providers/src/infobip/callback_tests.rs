//! Every Infobip/JioCX webhook format, from the realistic payloads in
//! `fixtures/infobip/`, becomes the right normalised event.

use sendfleet_config::{ProviderConfig, Secret};
use sendfleet_protocol::{Channel, Event, EventKind};
use serde_json::{Value, json};

use super::callback::parse_time_ms;
use crate::{CallbackError, ParsedCallback};

/// The events of a body with no rejected report, else the first rejection as an error:
/// the old whole-body answer, which these tests' reasons are written against.
fn parse_callback(config: &ProviderConfig, body: &[u8]) -> Result<Vec<Event>, CallbackError> {
    super::parse_callback(config, body).and_then(crate::ParsedCallback::strict)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../fixtures/infobip/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn provider(kind: &str) -> ProviderConfig {
    let text = format!("id = \"p\"\nkind = \"{}\"\nbase_url = \"https://x.api.infobip.com\"\n", kind);
    let mut config: ProviderConfig = toml::from_str(&text).expect("provider toml");
    config.api_key = Secret::new("key");
    config
}

fn parse(kind: &str, name: &str) -> Vec<Event> {
    parse_callback(&provider(kind), &fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn ms(text: &str) -> i64 {
    parse_time_ms(text).expect("fixture time")
}

#[test]
fn sms_v3_delivery_report() {
    let events = parse("infobip_sms", "sms-dlr-delivered.json");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!((e.kind, e.channel, e.provider.as_str()), (EventKind::Delivered, Channel::Sms, "p"));
    assert_eq!(e.message_id.as_deref(), Some("7f1c2a9e-3b4d-4e5f-8a6b-0c1d2e3f4a01"));
    assert_eq!(e.to.as_deref(), Some("+919876543210"));
    assert_eq!(e.sender.as_deref(), Some("ACMEIN"));
    assert_eq!(e.at_ms, ms("2026-01-15T10:30:04.870+0000"));
    assert_eq!(e.status.as_ref().map(|s| (s.group_id, s.id)), Some((3, 5)));
    assert!(e.error.is_none());
    assert_eq!(e.details.get("bulk_id").map(String::as_str), Some("acme-j-7781"));
    assert_eq!(e.details.get("message_count").map(String::as_str), Some("1"));
    assert_eq!(e.details.get("mcc_mnc").map(String::as_str), Some("405861"));
    let billing = e.billing.as_ref().expect("price");
    assert_eq!((billing.price_per_message, billing.currency.as_deref()), (Some(0.0021), Some("EUR")));
    assert!(billing.traffic_type.is_none() && billing.conversation_id.is_none());
}

#[test]
fn sms_legacy_delivery_report_batch() {
    let events = parse("infobip_sms", "sms-dlr-legacy.json");
    assert_eq!(events.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::Delivered, EventKind::Undelivered]);
    assert_eq!(events[0].sender.as_deref(), Some("ACMEIN"), "legacy `from` is the sender");
    assert_eq!(events[0].details.get("message_count").map(String::as_str), Some("2"), "legacy `smsCount`");
    assert_eq!(events[1].message_id.as_deref(), Some("3c1f0b7e-2a4d-4b6e-9f8a-1d2e3f4a5b02"));
    assert_eq!(events[1].status.as_ref().map(|s| (s.group_id, s.id)), Some((4, 15)));
    let error = events[1].error.as_ref().expect("absent subscriber");
    assert_eq!((error.id, error.permanent), (27, false));
    assert_ne!(events[0].event_id, events[1].event_id);
}

#[test]
fn sms_v3_undeliverable_report() {
    let e = &parse("infobip_sms", "sms-dlr-undeliverable.json")[0];
    assert_eq!(e.kind, EventKind::Undelivered);
    assert_eq!(e.error.as_ref().map(|x| (x.id, x.permanent)), Some((1, true)));
}

#[test]
fn sms_inbound_mo_json_2() {
    let events = parse("infobip_sms", "sms-inbound.json");
    let e = &events[0];
    assert_eq!((e.kind, e.channel), (EventKind::Inbound, Channel::Sms));
    assert_eq!(e.to.as_deref(), Some("+919876543210"), "the end user");
    assert_eq!(e.sender.as_deref(), Some("919167123456"), "our number");
    assert!(e.message_id.is_none(), "an SMS MO is not paired to our message");
    assert_eq!(e.at_ms, ms("2026-01-15T11:02:45.310+0000"));
    let inbound = e.inbound.as_ref().expect("inbound");
    assert_eq!(inbound.kind, "text");
    assert_eq!(inbound.provider_message_id.as_deref(), Some("817790313235066001"));
    assert_eq!(inbound.text.as_deref(), Some("ORDER 58213 where is my parcel"));
    assert_eq!(inbound.clean_text.as_deref(), Some("58213 where is my parcel"));
    assert_eq!(inbound.keyword.as_deref(), Some("ORDER"));
    assert_eq!(inbound.parts, Some(1));
    assert_eq!(e.details.get("callback_data").map(String::as_str), Some("tenant=acme"));
}

#[test]
fn rcs_delivery_reports_carry_billing() {
    let e = &parse("infobip_rcs", "rcs-dlr-delivered.json")[0];
    assert_eq!((e.kind, e.channel), (EventKind::Delivered, Channel::Rcs));
    assert_eq!(e.sender.as_deref(), Some("AcmeRetailAgent"));
    let billing = e.billing.as_ref().expect("billing");
    assert_eq!(billing.traffic_type.as_deref(), Some("SINGLE"));
    assert_eq!(billing.interaction_type.as_deref(), Some("SINGLE_MESSAGE"));
    assert_eq!(billing.can_initiate, Some(true));
    assert_eq!(billing.conversation_id, None, "null id");
    assert_eq!(billing.price_per_message, Some(0.0015));

    let failed = &parse("infobip_rcs", "rcs-dlr-failed-not-capable.json")[0];
    assert_eq!(failed.kind, EventKind::Undelivered);
    assert_eq!(failed.error.as_ref().map(|x| x.id), Some(7002));
}

#[test]
fn rcs_seen_report() {
    let e = &parse("infobip_rcs", "rcs-seen.json")[0];
    assert_eq!(e.kind, EventKind::Seen);
    assert_eq!(e.message_id.as_deref(), Some("5b3e9a1e-6c7d-4f80-9a1b-2c3d4e5f6a01"));
    assert_eq!(e.at_ms, ms("2026-01-15T10:44:37.090+0000"));
    assert_eq!(e.sender.as_deref(), Some("AcmeRetailAgent"));
}

#[test]
fn rcs_inbound_text_file_location_and_suggestions() {
    let text = &parse("infobip_rcs", "rcs-inbound-text.json")[0];
    assert_eq!(text.kind, EventKind::Inbound);
    assert_eq!(text.message_id.as_deref(), Some("5b3e9a1e-6c7d-4f80-9a1b-2c3d4e5f6a01"), "paired");
    assert_eq!(text.to.as_deref(), Some("+919876543210"));
    assert_eq!(text.sender.as_deref(), Some("AcmeRetailAgent"));
    let inbound = text.inbound.as_ref().expect("inbound");
    assert_eq!((inbound.kind.as_str(), inbound.parts), ("text", Some(1)));
    assert_eq!(inbound.provider_message_id.as_deref(), Some("a9d0c1e2-7f3b-4c5d-8e9f-0a1b2c3d4e01"));
    assert_eq!(text.billing.as_ref().and_then(|b| b.interaction_type.as_deref()), Some("BASIC_MESSAGE"));

    let file = &parse("infobip_rcs", "rcs-inbound-file.json")[0];
    let inbound = file.inbound.as_ref().expect("inbound");
    assert_eq!(inbound.kind, "file");
    assert_eq!(inbound.url.as_deref(), Some("https://files.example.com/rcs/inbound/7d1e/receipt.pdf"));
    assert_eq!(inbound.file_name.as_deref(), Some("receipt.pdf"));
    assert_eq!(inbound.content_type.as_deref(), Some("application/pdf"));
    assert_eq!(inbound.size_bytes, Some(123_456));
    let billing = file.billing.as_ref().expect("billing");
    assert_eq!(billing.conversation_id.as_deref(), Some("conv-7d1e2f3a"));
    assert_eq!(billing.can_initiate, Some(false));
    assert_eq!(billing.traffic_type.as_deref(), Some("SINGLE"));

    let location = &parse("infobip_rcs", "rcs-inbound-location.json")[0];
    let inbound = location.inbound.as_ref().expect("inbound");
    assert_eq!((inbound.kind.as_str(), inbound.latitude, inbound.longitude), ("location", Some(19.076), Some(72.8777)));
    assert!(location.message_id.is_none(), "not paired");

    let tap = &parse("infobip_rcs", "rcs-inbound-suggestion.json")[0];
    let inbound = tap.inbound.as_ref().expect("inbound");
    assert_eq!(inbound.kind, "suggestion");
    assert_eq!(inbound.text.as_deref(), Some("Track order"));
    assert_eq!(inbound.postback_data.as_deref(), Some("track:58213"));
    let billing = tap.billing.as_ref().expect("billing");
    assert_eq!((billing.interaction_type.as_deref(), billing.traffic_type.as_deref()), (Some("EVENT"), None));
}

#[test]
fn rcs_typing_and_conversation_started_events() {
    let typing = &parse("infobip_rcs", "rcs-typing.json")[0];
    assert_eq!(typing.kind, EventKind::Typing);
    assert_eq!(typing.to.as_deref(), Some("+919876543210"));
    assert_eq!(typing.sender.as_deref(), Some("AcmeRetailAgent"));
    assert_eq!(typing.at_ms, ms("2026-01-15T10:46:05Z"));
    assert!(typing.billing.is_none());

    let started = &parse("infobip_rcs", "rcs-conversation-started.json")[0];
    assert_eq!(started.kind, EventKind::ConversationStarted);
    assert_eq!(started.message_id.as_deref(), Some("5b3e9a1e-6c7d-4f80-9a1b-2c3d4e5f6a01"));
    let billing = started.billing.as_ref().expect("billing");
    assert_eq!(billing.traffic_type.as_deref(), Some("A2P_CONVERSATION"));
    assert_eq!(billing.conversation_type.as_deref(), Some("A2P"));
    assert_eq!(billing.conversation_id.as_deref(), Some("conv-7d1e2f3a"));
    assert_eq!(billing.conversation_start_ms, Some(ms("2026-01-15T10:40:01.207+0000")));
    assert_eq!(billing.conversation_end_ms, Some(ms("2026-01-16T10:40:01.207+0000")));
    assert_eq!(started.at_ms, ms("2026-01-15T10:40:01.207+0000"));
}

#[test]
fn jiocx_posts_reports_and_inbound_messages_to_one_url() {
    let events = parse("jiocx_rcs", "jiocx-mixed-batch.json");
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Delivered, EventKind::Inbound, EventKind::Inbound]);
    assert!(events.iter().all(|e| e.provider == "p" && e.channel == Channel::Rcs));
    assert_eq!(events[2].inbound.as_ref().map(|i| i.kind.as_str()), Some("suggestion"));
}

/// Adds `futureField` to every object in the body: what a newer provider version sends.
fn with_unknown_fields(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for child in map.values_mut() {
                with_unknown_fields(child);
            }
            map.insert("futureField".into(), json!({"nested": [1, "two", null]}));
        }
        Value::Array(items) => items.iter_mut().for_each(with_unknown_fields),
        _ => {}
    }
}

#[test]
fn unknown_extra_fields_are_ignored_in_every_format() {
    let formats = [
        ("infobip_sms", "sms-dlr-delivered.json"),
        ("infobip_sms", "sms-dlr-legacy.json"),
        ("infobip_sms", "sms-inbound.json"),
        ("infobip_rcs", "rcs-dlr-delivered.json"),
        ("infobip_rcs", "rcs-seen.json"),
        ("infobip_rcs", "rcs-inbound-file.json"),
        ("infobip_rcs", "rcs-typing.json"),
        ("infobip_rcs", "rcs-conversation-started.json"),
        ("jiocx_rcs", "jiocx-mixed-batch.json"),
    ];
    for (kind, name) in formats {
        let plain = parse(kind, name);
        let mut body: Value = serde_json::from_slice(&fixture(name)).expect("fixture json");
        with_unknown_fields(&mut body);
        let extended = parse_callback(&provider(kind), body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{name} with unknown fields: {e}"));
        assert_eq!(plain.len(), extended.len(), "{name}");
        for (a, mut b) in plain.into_iter().zip(extended) {
            b.event_id.clone_from(&a.event_id);
            assert_eq!(a, b, "{name}: unknown fields changed the event");
        }
    }
}

#[test]
fn bad_bodies_are_refused_with_a_reason() {
    let config = provider("infobip_rcs");
    let cases: [(&[u8], &str); 7] = [
        (b"", "expected"),
        (b"[1,2]", "expected"),
        (br#"{"results": "x"}"#, "expected"),
        (br#"{"results": [42]}"#, "results[0]: a result must be an object"),
        (br#"{"results": [{"status": {"groupId": "three"}, "messageId": "m"}]}"#, "results[0]"),
        (br#"{"results": [{"event": {}}]}"#, "event without a type"),
        (br#"{"results": [{"message": {"text": "no type"}, "sender": "1"}]}"#, "type"),
    ];
    for (body, needle) in cases {
        let err = parse_callback(&config, body).unwrap_err();
        assert!(err.to_string().contains(needle), "{}: {err}", String::from_utf8_lossy(body));
    }
    let err = parse_callback(&config, br#"{"results": [{"event": {"type": "SENDER_UPDATE"}}]}"#).unwrap_err();
    assert!(matches!(err, CallbackError::Unrecognised(_)), "{err}");
    assert!(parse_callback(&config, br#"{"results": []}"#).unwrap().is_empty(), "an empty batch is fine");
}

/// A small deterministic generator (xorshift64*), so the fuzz test needs no extra crate
/// and every failure is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random JSON value built from the keys Infobip uses, with random types, so the
/// parser sees plausible shapes with wrong types, missing fields and odd nesting.
fn random_value(rng: &mut Rng, depth: usize) -> Value {
    const KEYS: &[&str] = &[
        "results",
        "messageId",
        "status",
        "groupId",
        "id",
        "error",
        "seenAt",
        "event",
        "type",
        "message",
        "text",
        "receivedAt",
        "sender",
        "from",
        "to",
        "price",
        "conversation",
        "canInitiate",
        "size",
        "latitude",
        "doneAt",
        "smsCount",
        "messageCount",
        "callbackData",
        "startTime",
        "trafficType",
        "channel",
    ];
    match rng.below(if depth > 3 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 1),
        2 => json!(rng.next() as i64),
        3 => json!((rng.next() % 1000) as f64 / 7.0),
        4 => json!(
            ["TYPING_INDICATOR", "CONVERSATION_STARTED", "TEXT", "", "2026-01-15T10:46:05Z", "\u{0}é"][rng.below(6)]
        ),
        5 => json!(-(rng.below(5) as i64)),
        6 | 7 => {
            let mut map = serde_json::Map::new();
            for _ in 0..rng.below(6) {
                map.insert(KEYS[rng.below(KEYS.len())].into(), random_value(rng, depth + 1));
            }
            Value::Object(map)
        }
        _ => Value::Array((0..rng.below(4)).map(|_| random_value(rng, depth + 1)).collect()),
    }
}

#[test]
fn random_and_mutated_bodies_never_panic() {
    let names = [
        "sms-dlr-delivered.json",
        "sms-dlr-legacy.json",
        "sms-inbound.json",
        "rcs-dlr-delivered.json",
        "rcs-inbound-file.json",
        "rcs-conversation-started.json",
        "jiocx-mixed-batch.json",
    ];
    let seeds: Vec<Vec<u8>> = names.iter().map(|n| fixture(n)).collect();
    let config = provider("jiocx_rcs");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut refused) = (0, 0);
    for round in 0..3_000 {
        let body: Vec<u8> = match round % 3 {
            // A fixture with a few bytes flipped, dropped or duplicated.
            0 => {
                let mut bytes = seeds[rng.below(seeds.len())].clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(bytes.len());
                    match rng.below(3) {
                        0 => bytes[at] = rng.next() as u8,
                        1 => drop(bytes.remove(at)),
                        _ => bytes.insert(at, bytes[at]),
                    }
                }
                bytes
            }
            // Random JSON with Infobip's keys, wrapped in `results` half the time.
            1 => {
                let value = random_value(&mut rng, 0);
                let value = if rng.below(2) == 0 { json!({"results": [value]}) } else { value };
                value.to_string().into_bytes()
            }
            // Raw noise.
            _ => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        };
        match parse_callback(&config, &body) {
            Ok(_) => ok += 1,
            Err(err) => {
                assert!(!err.to_string().is_empty());
                refused += 1;
            }
        }
    }
    // Both outcomes occur: mutations of valid bodies still parse sometimes.
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
}

fn delivered(id: &str) -> Value {
    json!({"messageId": id, "to": "919876543210",
        "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"}})
}

#[test]
fn one_bad_result_is_rejected_and_the_rest_of_the_batch_parsed() {
    for kind in ["infobip_sms", "infobip_rcs", "jiocx_rcs"] {
        let mut results: Vec<Value> = (0..50).map(|i| delivered(&format!("m-{i}"))).collect();
        results[17] = json!({"status": {"groupId": 3, "id": 5}});
        results[30] = json!({"event": {"type": "SENDER_UPDATE"}});
        results[41] = json!({"messageId": "pending",
            "status": {"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE"}});
        let body = json!({ "results": results }).to_string();
        let parsed = super::parse_callback(&provider(kind), body.as_bytes()).expect("the body is readable");
        assert_eq!(parsed.reports, 50, "{kind:?}");
        assert_eq!(parsed.events.len(), 47, "{kind:?}: every good report, none for the pending one");
        assert_eq!(parsed.events[17].message_id.as_deref(), Some("m-18"), "in order, the bad one skipped");
        let rejected: Vec<(usize, &str)> = parsed.rejected.iter().map(|r| (r.index, r.error.label())).collect();
        assert_eq!(rejected, [(17, "malformed"), (30, "unrecognised")]);
        assert!(parsed.rejected[0].to_string().starts_with("results[17] malformed:"), "{}", parsed.rejected[0]);
        assert!(parsed.rejected[0].error.reason().contains("messageId"));
        assert!(!parsed.all_rejected());
    }
}

#[test]
fn a_body_is_refused_only_when_every_result_is_bad() {
    let config = provider("infobip_rcs");
    let all_bad = json!({"results": [{"hello": 1}, 42, {"event": {}}]}).to_string();
    let parsed = super::parse_callback(&config, all_bad.as_bytes()).unwrap();
    assert!(parsed.all_rejected() && parsed.events.is_empty());
    assert_eq!(parsed.rejected.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1, 2]);
    // A pending report is a good one that yields no event: not "every report bad".
    let pending = json!({"results": [{"hello": 1}, {"messageId": "p",
        "status": {"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE"}}]});
    let parsed = super::parse_callback(&config, pending.to_string().as_bytes()).unwrap();
    assert!(!parsed.all_rejected() && parsed.events.is_empty());
    assert_eq!(super::parse_callback(&config, br#"{"results": []}"#).unwrap(), ParsedCallback::default());
    // Not a batch at all: still the whole body's error.
    assert!(matches!(super::parse_callback(&config, b"{\"results\": ["), Err(CallbackError::Malformed(_))));
}

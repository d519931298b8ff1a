//! Keeps `docs/schema/*.schema.json` in step with the wire types.
//!
//! Rich documents built in Rust are encoded with [`sendfleet_protocol::encode`],
//! transcoded from MessagePack into their JSON view and validated against the schema.
//! Then, structure by structure, the schema's `required` lists and null handling are
//! checked against what serde actually decodes: a document with only the required fields
//! decodes, removing any required field fails both the decoder and the schema, `nil` is
//! accepted exactly where the schema allows `null`.

use std::collections::{BTreeMap, BTreeSet};

use jsonschema::Validator;
use sendfleet_protocol::{
    Billing, Card, CardAlignment, CardOrientation, CardWidth, Channel, Content, DecodeError, DeliveryOutcome,
    DeliveryTimeWindow, Event, EventKind, InboundMessage, IndiaDlt, Media, MediaHeight, Priority, ProviderErrorInfo,
    ProviderStatus, Recipient, Regional, SCHEMA_VERSION, SendJob, SendOptions, SendRequest, SmsFallback, Suggestion,
    TemplateRef, TimeOfDay, TurkeyIys, UrlApplication, WebviewViewMode, decode, encode,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

// ---- helpers ------------------------------------------------------------------------

fn schema_doc(name: &str) -> Value {
    let path = format!("{}/../../docs/schema/{name}.schema.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let schema: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    if let Err(err) = jsonschema::meta::validate(&schema) {
        panic!("{path} is not a valid JSON Schema: {err}");
    }
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema", "{path}");
    schema
}

fn compile(schema: &Value) -> Validator {
    jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("schema does not compile: {e}"))
}

/// A validator for one `$defs` entry of a schema document.
fn def_validator(doc: &Value, def: &str) -> Validator {
    assert!(doc["$defs"].get(def).is_some(), "no $defs/{def}");
    compile(&json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": doc["$defs"].clone(),
        "$ref": format!("#/$defs/{def}"),
    }))
}

/// The JSON view of a document as it travels: encoded by the real codec, then the
/// MessagePack bytes read back as a generic value.
fn json_view<T: Serialize>(doc: &T) -> Value {
    let bytes = encode(doc);
    rmp_serde::from_slice::<Value>(&bytes).expect("MessagePack transcodes to JSON")
}

/// The JSON view of MessagePack bytes that may hold `bin` values (arrays of 0-255).
fn json_view_with_bin(bytes: &[u8]) -> Value {
    fn convert(value: rmpv::Value) -> Value {
        match value {
            rmpv::Value::Nil => Value::Null,
            rmpv::Value::Boolean(b) => Value::Bool(b),
            rmpv::Value::Integer(i) => {
                i.as_u64().map(Value::from).or_else(|| i.as_i64().map(Value::from)).expect("integer fits")
            }
            rmpv::Value::F32(f) => json!(f),
            rmpv::Value::F64(f) => json!(f),
            rmpv::Value::String(s) => Value::String(s.into_str().expect("UTF-8 string")),
            rmpv::Value::Binary(bytes) => Value::Array(bytes.into_iter().map(Value::from).collect()),
            rmpv::Value::Array(items) => Value::Array(items.into_iter().map(convert).collect()),
            rmpv::Value::Map(entries) => Value::Object(
                entries.into_iter().map(|(k, v)| (k.as_str().expect("string keys").to_owned(), convert(v))).collect(),
            ),
            rmpv::Value::Ext(..) => panic!("no ext types on the wire"),
        }
    }
    convert(rmpv::decode::read_value(&mut &bytes[..]).expect("valid MessagePack"))
}

/// MessagePack bytes of a JSON value, as a producer in another language would write them.
fn msgpack(value: &Value) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("JSON encodes as MessagePack")
}

fn decodes_as<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    rmp_serde::from_slice::<T>(&msgpack(value)).map_err(|e| e.to_string())
}

fn assert_valid(validator: &Validator, instance: &Value, what: &str) {
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).take(10).collect();
    assert!(errors.is_empty(), "{what} does not match its schema: {errors:#?}\n{instance:#}");
}

fn assert_invalid(validator: &Validator, instance: &Value, what: &str) {
    assert!(!validator.is_valid(instance), "{what} should not match the schema\n{instance:#}");
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Whether a property schema accepts `null` (`"type": [.., "null"]` or `anyOf` with null).
fn allows_null(property: &Value) -> bool {
    let in_type = match &property["type"] {
        Value::Array(types) => types.iter().any(|t| t == "null"),
        Value::String(t) => t == "null",
        _ => false,
    };
    let in_any_of = property["anyOf"].as_array().is_some_and(|alts| alts.iter().any(|alt| alt["type"] == "null"));
    in_type || in_any_of
}

/// Checks one object schema (`object_schema`, validated through `validator`) against
/// serde's decoding of `T`, using `full`: a JSON view with every property present.
fn check_structure<T: DeserializeOwned>(validator: &Validator, object_schema: &Value, full: &Value, what: &str) {
    let properties = object_schema["properties"].as_object().unwrap_or_else(|| panic!("{what}: no properties"));
    let required: BTreeSet<&str> = object_schema["required"]
        .as_array()
        .map(|r| r.iter().map(|v| v.as_str().expect("required names are strings")).collect())
        .unwrap_or_default();
    let full_object = full.as_object().unwrap_or_else(|| panic!("{what}: sample is not a map"));
    let present: BTreeSet<&str> = full_object.keys().map(String::as_str).collect();
    let documented: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
    assert_eq!(present, documented, "{what}: the full sample and the schema's properties differ");
    for name in &required {
        assert!(documented.contains(name), "{what}: required '{name}' is not a property");
    }

    assert_valid(validator, full, what);
    decodes_as::<T>(full).unwrap_or_else(|e| panic!("{what}: the full sample does not decode: {e}"));

    let minimal: serde_json::Map<String, Value> = full_object
        .iter()
        .filter(|(k, _)| required.contains(k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let minimal = Value::Object(minimal);
    assert_valid(validator, &minimal, &format!("{what} with required fields only"));
    decodes_as::<T>(&minimal)
        .unwrap_or_else(|e| panic!("{what}: serde needs more than the schema's required fields: {e}"));

    for name in &required {
        let mut without = full.clone();
        without.as_object_mut().expect("map").remove(*name);
        assert_invalid(validator, &without, &format!("{what} without '{name}'"));
        assert!(
            decodes_as::<T>(&without).is_err(),
            "{what}: the schema requires '{name}' but serde decodes without it"
        );
    }

    for (name, property) in properties {
        let mut nulled = full.clone();
        nulled[name.as_str()] = Value::Null;
        let schema_accepts = validator.is_valid(&nulled);
        let serde_accepts = decodes_as::<T>(&nulled).is_ok();
        assert_eq!(allows_null(property), schema_accepts, "{what}.{name}: property schema vs whole schema on null");
        assert_eq!(
            schema_accepts, serde_accepts,
            "{what}.{name} = nil: schema accepts: {schema_accepts}, serde accepts: {serde_accepts}"
        );
    }
}

/// The variant schema of a tagged union (`oneOf` entry whose `type` is `tag`).
fn variant_schema<'a>(union: &'a Value, tag: &str) -> &'a Value {
    union["oneOf"]
        .as_array()
        .expect("a tagged union is a oneOf")
        .iter()
        .find(|v| v["properties"]["type"]["const"] == tag)
        .unwrap_or_else(|| panic!("no variant '{tag}'"))
}

fn union_tags(union: &Value) -> BTreeSet<String> {
    union["oneOf"]
        .as_array()
        .expect("oneOf")
        .iter()
        .map(|v| v["properties"]["type"]["const"].as_str().expect("const tag").to_owned())
        .collect()
}

/// The values of a string enum in `$defs`: an `enum` list, or (when the variants have
/// doc comments, as schemars writes them) a `oneOf` of `const` values.
fn enum_values(doc: &Value, def: &str) -> BTreeSet<String> {
    let schema = &doc["$defs"][def];
    let values: Vec<&Value> = match (schema["enum"].as_array(), schema["oneOf"].as_array()) {
        (Some(values), _) => values.iter().collect(),
        (None, Some(variants)) => variants.iter().map(|v| &v["const"]).collect(),
        (None, None) => panic!("$defs/{def} is not an enum"),
    };
    values.into_iter().map(|v| v.as_str().expect("string enum").to_owned()).collect()
}

fn serialized_names<T: Serialize>(values: &[T]) -> BTreeSet<String> {
    values.iter().map(|v| json_view(v).as_str().expect("unit variants serialize as strings").to_owned()).collect()
}

// ---- samples ------------------------------------------------------------------------

const ALL_MEDIA_HEIGHTS: [MediaHeight; 3] = [MediaHeight::Short, MediaHeight::Medium, MediaHeight::Tall];
const ALL_ORIENTATIONS: [CardOrientation; 2] = [CardOrientation::Horizontal, CardOrientation::Vertical];
const ALL_ALIGNMENTS: [CardAlignment; 2] = [CardAlignment::Left, CardAlignment::Right];
const ALL_CARD_WIDTHS: [CardWidth; 2] = [CardWidth::Small, CardWidth::Medium];
const ALL_URL_APPLICATIONS: [UrlApplication; 2] = [UrlApplication::Browser, UrlApplication::Webview];
const ALL_VIEW_MODES: [WebviewViewMode; 3] = [WebviewViewMode::Full, WebviewViewMode::Half, WebviewViewMode::Tall];
const ALL_CHANNELS: [Channel; 2] = [Channel::Rcs, Channel::Sms];

fn all_event_kinds() -> Vec<EventKind> {
    let kinds = vec![
        EventKind::Accepted,
        EventKind::Failed,
        EventKind::Retrying,
        EventKind::Delivered,
        EventKind::Undelivered,
        EventKind::Seen,
        EventKind::Inbound,
        EventKind::Typing,
        EventKind::ConversationStarted,
        EventKind::FallbackTriggered,
    ];
    // A new kind fails to compile here: add it to the list above (the schema is generated
    // from the enum).
    for kind in &kinds {
        match kind {
            EventKind::Accepted
            | EventKind::Failed
            | EventKind::Retrying
            | EventKind::Delivered
            | EventKind::Undelivered
            | EventKind::Seen
            | EventKind::Inbound
            | EventKind::Typing
            | EventKind::ConversationStarted
            | EventKind::FallbackTriggered => {}
        }
    }
    kinds
}

/// One suggestion of every type, every optional field set.
fn all_suggestions() -> Vec<Suggestion> {
    let mut suggestions = vec![
        Suggestion::Reply { text: "Yes".into(), postback_data: "yes".into() },
        Suggestion::DialPhone {
            text: "Call".into(),
            postback_data: "call".into(),
            phone_number: "+15551234567".into(),
        },
        Suggestion::ShowLocation {
            text: "Find us".into(),
            postback_data: "map".into(),
            latitude: 52.5200,
            longitude: -13.405,
            label: Some("Shop".into()),
        },
        Suggestion::RequestLocation { text: "Share location".into(), postback_data: "where".into() },
        Suggestion::CreateCalendarEvent {
            text: "Remind me".into(),
            postback_data: "cal".into(),
            start_time: "2026-03-01T10:00:00Z".into(),
            end_time: "2026-03-01T11:00:00+01:00".into(),
            title: "Pick-up".into(),
            description: Some("Bring your receipt".into()),
        },
    ];
    for application in ALL_URL_APPLICATIONS {
        for mode in ALL_VIEW_MODES {
            suggestions.push(Suggestion::OpenUrl {
                text: "Open".into(),
                postback_data: "open".into(),
                url: "https://example.com/offer".into(),
                application: Some(application),
                webview_view_mode: Some(mode),
            });
        }
    }
    suggestions
}

fn card(height: MediaHeight) -> Card {
    Card {
        title: Some("Spring sale".into()),
        description: Some("Everything 20% off this week".into()),
        media: Some(Media {
            url: "https://example.com/video.mp4".into(),
            thumbnail_url: Some("https://example.com/thumb.jpg".into()),
            height,
        }),
        suggestions: vec![Suggestion::Reply { text: "More".into(), postback_data: "more".into() }],
    }
}

/// Contents of every type, with every enum value somewhere.
fn all_contents() -> Vec<Content> {
    let mut contents = vec![
        Content::Text { text: "Your parcel arrives today.".into(), suggestions: all_suggestions() },
        Content::Text { text: "SMS text".into(), suggestions: vec![] },
        Content::File {
            url: "https://example.com/clip.mp4".into(),
            thumbnail_url: Some("https://example.com/clip.jpg".into()),
            suggestions: vec![Suggestion::Reply { text: "Like".into(), postback_data: "like".into() }],
        },
        Content::Template {
            template_id: "order_update".into(),
            parameters: map(&[("name", "Ada"), ("order", "A-1001")]),
        },
        Content::Template { template_id: "no_params".into(), parameters: BTreeMap::new() },
    ];
    for orientation in ALL_ORIENTATIONS {
        for alignment in ALL_ALIGNMENTS {
            for height in ALL_MEDIA_HEIGHTS {
                contents.push(Content::Card {
                    orientation,
                    alignment,
                    card: card(height),
                    suggestions: vec![Suggestion::Reply { text: "Buy".into(), postback_data: "buy".into() }],
                });
            }
        }
    }
    for card_width in ALL_CARD_WIDTHS {
        contents.push(Content::Carousel {
            card_width,
            cards: vec![card(MediaHeight::Short), Card { title: Some("Only a title".into()), ..Card::default() }],
            suggestions: vec![Suggestion::RequestLocation { text: "Nearest".into(), postback_data: "near".into() }],
        });
    }
    contents
}

fn full_options() -> SendOptions {
    SendOptions {
        validity_period_seconds: Some(3_600),
        send_at: Some("2026-03-01T09:00:00Z".into()),
        delivery_time_window: Some(DeliveryTimeWindow {
            days: vec!["MONDAY".into(), "FRIDAY".into()],
            from: Some(TimeOfDay { hour: 9, minute: 0 }),
            to: Some(TimeOfDay { hour: 17, minute: 30 }),
        }),
        campaign_reference_id: Some("spring-2026".into()),
        regional: Some(full_regional()),
    }
}

fn full_regional() -> Regional {
    Regional {
        india_dlt: Some(IndiaDlt {
            principal_entity_id: "1201159100000000000".into(),
            content_template_id: Some("1207161000000000000".into()),
            telemarketer_id: Some("1702000000000000000".into()),
        }),
        turkey_iys: Some(TurkeyIys { recipient_type: "BIREYSEL".into(), brand_code: Some(123_456) }),
    }
}

fn full_fallback() -> SmsFallback {
    SmsFallback {
        text: "Your parcel arrives today.".into(),
        sender: Some("ACMEIN".into()),
        provider: Some("infobip-sms".into()),
        regional: Some(full_regional()),
        validity_period_seconds: Some(600),
    }
}

fn minimal_request(content: Content) -> SendRequest {
    SendRequest {
        priority: Default::default(),
        schema_version: SCHEMA_VERSION,
        message_id: None,
        channel: Channel::Rcs,
        provider: None,
        to: Some("+919876543210".into()),
        recipients: vec![],
        sender: None,
        content: Some(content),
        template: None,
        options: SendOptions::default(),
        fallback: None,
        metadata: BTreeMap::new(),
        trace_id: None,
    }
}

/// A bulk SMS request: `recipients` instead of `to`.
fn bulk_request() -> SendRequest {
    SendRequest {
        priority: Default::default(),
        to: None,
        recipients: vec![
            Recipient {
                to: "+15551234567".into(),
                message_id: Some("m-bulk-1".into()),
                variables: map(&[("name", "Ada")]),
                metadata: map(&[("row", "1")]),
            },
            Recipient {
                to: "+15557654321".into(),
                message_id: None,
                variables: BTreeMap::new(),
                metadata: BTreeMap::new(),
            },
        ],
        channel: Channel::Sms,
        ..minimal_request(Content::Text { text: "Hello".into(), suggestions: vec![] })
    }
}

/// Requests covering every content type, every option, single and bulk destinations.
fn sample_requests() -> Vec<SendRequest> {
    let mut requests: Vec<SendRequest> = all_contents()
        .into_iter()
        .map(|content| SendRequest {
            priority: Priority::High,
            message_id: Some("m-0001".into()),
            provider: Some("infobip-rcs".into()),
            sender: Some("acme_agent".into()),
            options: full_options(),
            fallback: Some(full_fallback()),
            metadata: map(&[("customer", "42"), ("campaign", "spring")]),
            trace_id: Some("trace-1".into()),
            ..minimal_request(content)
        })
        .collect();
    requests.push(bulk_request());
    requests.push(SendRequest {
        priority: Default::default(),
        content: None,
        template: Some(TemplateRef { id: "welcome".into(), variables: map(&[("name", "Ada")]) }),
        ..minimal_request(Content::Text { text: String::new(), suggestions: vec![] })
    });
    requests.push(minimal_request(Content::Text { text: "hi".into(), suggestions: vec![] }));
    requests.push(SendRequest {
        priority: Default::default(),
        channel: Channel::Sms,
        options: SendOptions {
            delivery_time_window: Some(DeliveryTimeWindow { days: vec!["SUNDAY".into()], from: None, to: None }),
            regional: Some(Regional {
                india_dlt: Some(IndiaDlt {
                    principal_entity_id: "1201".into(),
                    content_template_id: None,
                    telemarketer_id: None,
                }),
                turkey_iys: Some(TurkeyIys { recipient_type: "TACIR".into(), brand_code: None }),
            }),
            ..SendOptions::default()
        },
        ..minimal_request(Content::Text { text: "OTP 1234".into(), suggestions: vec![] })
    });
    requests
}

fn full_job() -> SendJob {
    SendJob {
        priority: Priority::Bulk,
        schema_version: SCHEMA_VERSION,
        message_id: "m-0001".into(),
        provider: "infobip-rcs".into(),
        channel: Channel::Rcs,
        to: "+919876543210".into(),
        sender: "acme_agent".into(),
        content: all_contents().remove(0),
        options: full_options(),
        fallback: Some(full_fallback()),
        metadata: map(&[("customer", "42")]),
        trace_id: "trace-1".into(),
        attempts: 2,
        first_attempt_at_ms: Some(1_767_225_600_000),
        created_at_ms: 1_767_225_599_000,
        fallback_for: Some("m-rcs-1".into()),
    }
}

fn sample_jobs() -> Vec<SendJob> {
    let mut jobs: Vec<SendJob> = all_contents().into_iter().map(|content| SendJob { content, ..full_job() }).collect();
    jobs.push(SendJob {
        priority: Default::default(),
        channel: Channel::Sms,
        content: Content::Text { text: "hello".into(), suggestions: vec![] },
        options: SendOptions::default(),
        fallback: None,
        metadata: BTreeMap::new(),
        attempts: 0,
        first_attempt_at_ms: None,
        fallback_for: None,
        ..full_job()
    });
    jobs
}

fn full_status() -> ProviderStatus {
    ProviderStatus {
        group_id: 3,
        group_name: Some("DELIVERED".into()),
        id: 5,
        name: Some("DELIVERED_TO_HANDSET".into()),
        description: Some("Message delivered to handset".into()),
    }
}

fn full_error() -> ProviderErrorInfo {
    ProviderErrorInfo {
        group_id: 1,
        id: 7002,
        name: Some("EC_UNKNOWN_USER".into()),
        description: Some("Unknown subscriber".into()),
        permanent: true,
    }
}

fn full_inbound() -> InboundMessage {
    InboundMessage {
        kind: "file".into(),
        provider_message_id: Some("ib-mo-1".into()),
        text: Some("see attached".into()),
        clean_text: Some("attached".into()),
        keyword: Some("SEE".into()),
        postback_data: Some("pb".into()),
        url: Some("https://files.example.com/x.jpg".into()),
        file_name: Some("x.jpg".into()),
        content_type: Some("image/jpeg".into()),
        size_bytes: Some(52_811),
        latitude: Some(19.07),
        longitude: Some(72.87),
        parts: Some(1),
    }
}

fn full_billing() -> Billing {
    Billing {
        traffic_type: Some("A2P_CONVERSATION".into()),
        interaction_type: Some("SINGLE_MESSAGE".into()),
        conversation_id: Some("conv-1".into()),
        conversation_type: Some("A2P".into()),
        can_initiate: Some(true),
        conversation_start_ms: Some(1_768_473_601_207),
        conversation_end_ms: Some(1_768_560_001_207),
        price_per_message: Some(0.0042),
        currency: Some("EUR".into()),
    }
}

/// An event of every kind, filled as the code fills it (and fully, for the schema).
fn sample_events() -> Vec<Event> {
    let mut events = Vec::new();
    for kind in all_event_kinds() {
        let mut event = Event::new(kind, "infobip-rcs", Channel::Rcs);
        event.message_id = Some("m-0001".into());
        event.to = Some("+919876543210".into());
        event.sender = Some("acme_agent".into());
        event.attempt = Some(1);
        event.metadata = map(&[("customer", "42")]);
        event.trace_id = Some("trace-1".into());
        match kind {
            EventKind::Accepted => {
                event.event_id = Event::outcome_id("m-0001", kind);
                event.status = Some(ProviderStatus { group_id: 1, id: 26, ..full_status() });
                event.details = map(&[("duplicate_suppressed", "true")]);
            }
            EventKind::Failed => {
                event.event_id = Event::outcome_id("m-0001", kind);
                event.status = Some(ProviderStatus { group_id: 5, ..full_status() });
                event.error = Some(full_error());
                event.reason = Some("HTTP 400: bad request".into());
                event.details = map(&[("reason_code", "bad_request")]);
            }
            EventKind::Retrying => {
                event.reason = Some("HTTP 429".into());
                event.details = map(&[("reason_code", "throttled"), ("retry_in_ms", "4000"), ("retry_tier", "5s")]);
            }
            EventKind::Delivered | EventKind::Undelivered => {
                event.attempt = None;
                event.status = Some(full_status());
                event.error = Some(ProviderErrorInfo { permanent: false, ..full_error() });
                event.outcome = Some(if kind == EventKind::Delivered {
                    DeliveryOutcome::Delivered
                } else {
                    DeliveryOutcome::UndeliverableNotCapable
                });
                event.details =
                    map(&[("bulk_id", "b-1"), ("message_count", "2"), ("callback_data", "{\"upstream\":true}")]);
                event.billing = Some(Billing {
                    traffic_type: Some("SINGLE".into()),
                    interaction_type: Some("SINGLE_MESSAGE".into()),
                    conversation_id: Some("conv-1".into()),
                    can_initiate: Some(false),
                    price_per_message: Some(0.01),
                    currency: Some("EUR".into()),
                    ..Billing::default()
                });
            }
            EventKind::Inbound => {
                event.attempt = None;
                event.inbound = Some(full_inbound());
                event.billing =
                    Some(Billing { conversation_start_ms: None, conversation_end_ms: None, ..full_billing() });
                event.details = map(&[("callback_data", "{\"upstream\":true}")]);
            }
            EventKind::Seen => {
                event.attempt = None;
                event.outcome = Some(DeliveryOutcome::Seen);
            }
            EventKind::Typing => {
                event.attempt = None;
                event.message_id = None;
            }
            EventKind::ConversationStarted => {
                event.attempt = None;
                event.billing = Some(full_billing());
                event.details = map(&[("event_type", "CONVERSATION_STARTED")]);
            }
            _ => {
                event.details = map(&[("text", "STOP")]);
            }
        }
        events.push(event);
    }
    // Everything optional absent, as for an unpaired inbound message.
    events.push(Event::new(EventKind::Inbound, "jiocx", Channel::Sms));
    events
}

/// The dispatcher's `RejectedRequest` (defined in sendfleet-dispatcher), mirrored field
/// for field so this crate can check the schema without depending on the dispatcher.
#[derive(Serialize)]
struct RejectedRequest {
    schema_version: u16,
    reason_code: String,
    reason: String,
    #[serde(with = "serde_bytes")]
    original: Vec<u8>,
}

// ---- tests --------------------------------------------------------------------------

#[test]
fn every_sample_request_matches_the_schema() {
    let validator = compile(&schema_doc("send-request"));
    let samples = sample_requests();
    let types: BTreeSet<&str> = samples.iter().filter_map(|r| r.content.as_ref()).map(Content::kind).collect();
    assert_eq!(types, ["card", "carousel", "file", "template", "text"].into_iter().collect());
    for (index, request) in samples.iter().enumerate() {
        let view = json_view(request);
        assert_valid(&validator, &view, &format!("request #{index}"));
        assert_eq!(&decode::<SendRequest>(&encode(request)).expect("round trip"), request);
    }
}

#[test]
fn every_sample_job_matches_the_schema() {
    let validator = compile(&schema_doc("send-job"));
    for (index, job) in sample_jobs().iter().enumerate() {
        assert_valid(&validator, &json_view(job), &format!("job #{index}"));
    }
}

#[test]
fn an_event_of_every_kind_matches_the_schema() {
    let validator = compile(&schema_doc("event"));
    for event in sample_events() {
        let view = json_view(&event);
        assert_valid(&validator, &view, &format!("{} event", event.kind.as_str()));
        assert_eq!(view["kind"], event.kind.as_str(), "the kind serializes as its routing-key name");
    }
}

#[test]
fn a_rejected_request_matches_the_schema() {
    let validator = compile(&schema_doc("rejected-request"));
    let original = encode(&minimal_request(Content::Text { text: "hi".into(), suggestions: vec![] }));
    let body = RejectedRequest {
        schema_version: SCHEMA_VERSION,
        reason_code: "invalid_destination".into(),
        reason: "'12345' is not an E.164 number (+ and 8-15 digits)".into(),
        original: original.clone(),
    };
    let bytes = encode(&body);
    let raw = rmpv::decode::read_value(&mut &bytes[..]).expect("MessagePack");
    let original_raw = raw.as_map().and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("original")));
    assert!(matches!(original_raw, Some((_, rmpv::Value::Binary(_)))), "original is written as a bin: {raw}");
    let view = json_view_with_bin(&bytes);
    assert_valid(&validator, &view, "rejected request");
    assert_eq!(view["original"].as_array().map(Vec::len), Some(original.len()));
    let mut text_original = view.clone();
    text_original["original"] = json!("not bytes");
    assert_invalid(&validator, &text_original, "rejected request with a string as original");
    let mut without_reason = view;
    without_reason.as_object_mut().expect("map").remove("reason_code");
    assert_invalid(&validator, &without_reason, "rejected request without reason_code");
}

#[test]
fn enums_in_the_schemas_are_exactly_what_serde_writes() {
    let request = schema_doc("send-request");
    let job = schema_doc("send-job");
    let event = schema_doc("event");
    for doc in [&request, &job, &event] {
        assert_eq!(enum_values(doc, "Channel"), serialized_names(&ALL_CHANNELS));
    }
    for doc in [&request, &job] {
        assert_eq!(enum_values(doc, "MediaHeight"), serialized_names(&ALL_MEDIA_HEIGHTS));
        assert_eq!(enum_values(doc, "CardOrientation"), serialized_names(&ALL_ORIENTATIONS));
        assert_eq!(enum_values(doc, "CardAlignment"), serialized_names(&ALL_ALIGNMENTS));
        assert_eq!(enum_values(doc, "CardWidth"), serialized_names(&ALL_CARD_WIDTHS));
        assert_eq!(enum_values(doc, "UrlApplication"), serialized_names(&ALL_URL_APPLICATIONS));
        assert_eq!(enum_values(doc, "WebviewViewMode"), serialized_names(&ALL_VIEW_MODES));
        let content_tags: BTreeSet<String> =
            all_contents().iter().map(|c| json_view(c)["type"].as_str().expect("tag").to_owned()).collect();
        assert_eq!(union_tags(&doc["$defs"]["Content"]), content_tags);
        let suggestion_tags: BTreeSet<String> =
            all_suggestions().iter().map(|s| json_view(s)["type"].as_str().expect("tag").to_owned()).collect();
        assert_eq!(union_tags(&doc["$defs"]["Suggestion"]), suggestion_tags);
        // Shared parts are the same in every schema that has them.
        for (name, def) in job["$defs"].as_object().expect("$defs") {
            if let Some(other) = request["$defs"].get(name) {
                assert_eq!(def, other, "$defs/{name} differs between send-request and send-job");
            }
        }
    }
    assert_eq!(enum_values(&event, "EventKind"), serialized_names(&all_event_kinds()));
    assert_eq!(event["$defs"]["Channel"], request["$defs"]["Channel"]);
    // String maps are objects of strings alike in every document.
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    for (doc, field) in [(&request, "metadata"), (&job, "metadata"), (&event, "details"), (&event, "metadata")] {
        let property = &doc["properties"][field];
        assert_eq!(property["type"], string_map["type"], "{field}");
        assert_eq!(property["additionalProperties"], string_map["additionalProperties"], "{field}");
    }
}

#[test]
fn required_fields_and_nil_handling_match_serde() {
    let request_doc = schema_doc("send-request");
    let job_doc = schema_doc("send-job");
    let event_doc = schema_doc("event");

    // Top-level documents, from a sample with every field present.
    let mut request = json_view(&sample_requests()[0]);
    request["recipients"] = json_view(&bulk_request().recipients);
    request["template"] = json!({"id": "welcome"});
    check_structure::<SendRequest>(&compile(&request_doc), &request_doc, &request, "SendRequest");
    check_structure::<SendJob>(&compile(&job_doc), &job_doc, &json_view(&full_job()), "SendJob");
    let mut event = json_view(&sample_events()[1]);
    event["details"] = json!({"reason_code": "bad_request"});
    event["inbound"] = json_view(&full_inbound());
    event["billing"] = json_view(&full_billing());
    event["outcome"] = json!("undeliverable_not_capable");
    check_structure::<Event>(&compile(&event_doc), &event_doc, &event, "Event");

    // Nested structures.
    let defs = |doc: &Value, name: &str| doc["$defs"][name].clone();
    let r = &request_doc;
    let structure_samples: Vec<(&str, Value)> = vec![
        ("Recipient", json_view(&bulk_request().recipients[0])),
        ("TemplateRef", json_view(&TemplateRef { id: "t".into(), variables: map(&[("a", "b")]) })),
        ("SendOptions", json_view(&full_options())),
        ("DeliveryTimeWindow", json_view(&full_options().delivery_time_window)),
        ("TimeOfDay", json_view(&TimeOfDay { hour: 9, minute: 30 })),
        ("Regional", json_view(&full_regional())),
        ("IndiaDlt", json_view(&full_regional().india_dlt)),
        ("TurkeyIys", json_view(&full_regional().turkey_iys)),
        ("SmsFallback", json_view(&full_fallback())),
        ("Card", json_view(&card(MediaHeight::Tall))),
        ("Media", json_view(&card(MediaHeight::Tall).media)),
    ];
    for (name, sample) in structure_samples {
        let validator = def_validator(r, name);
        let schema = defs(r, name);
        match name {
            "Recipient" => check_structure::<Recipient>(&validator, &schema, &sample, name),
            "TemplateRef" => check_structure::<TemplateRef>(&validator, &schema, &sample, name),
            "SendOptions" => check_structure::<SendOptions>(&validator, &schema, &sample, name),
            "DeliveryTimeWindow" => check_structure::<DeliveryTimeWindow>(&validator, &schema, &sample, name),
            "TimeOfDay" => check_structure::<TimeOfDay>(&validator, &schema, &sample, name),
            "Regional" => check_structure::<Regional>(&validator, &schema, &sample, name),
            "IndiaDlt" => check_structure::<IndiaDlt>(&validator, &schema, &sample, name),
            "TurkeyIys" => check_structure::<TurkeyIys>(&validator, &schema, &sample, name),
            "SmsFallback" => check_structure::<SmsFallback>(&validator, &schema, &sample, name),
            "Card" => check_structure::<Card>(&validator, &schema, &sample, name),
            "Media" => check_structure::<Media>(&validator, &schema, &sample, name),
            other => unreachable!("{other}"),
        }
    }
    let e = &event_doc;
    check_structure::<ProviderStatus>(
        &def_validator(e, "ProviderStatus"),
        &defs(e, "ProviderStatus"),
        &json_view(&full_status()),
        "ProviderStatus",
    );
    check_structure::<InboundMessage>(
        &def_validator(e, "InboundMessage"),
        &defs(e, "InboundMessage"),
        &json_view(&full_inbound()),
        "InboundMessage",
    );
    check_structure::<Billing>(
        &def_validator(e, "Billing"),
        &defs(e, "Billing"),
        &json_view(&full_billing()),
        "Billing",
    );
    check_structure::<ProviderErrorInfo>(
        &def_validator(e, "ProviderErrorInfo"),
        &defs(e, "ProviderErrorInfo"),
        &json_view(&full_error()),
        "ProviderErrorInfo",
    );

    // Tagged unions, variant by variant.
    let content_validator = def_validator(r, "Content");
    for (tag, sample) in fullest_by_tag(all_contents().iter().map(json_view)) {
        let variant = variant_schema(&r["$defs"]["Content"], &tag);
        check_structure::<Content>(&content_validator, variant, &sample, &format!("Content/{tag}"));
    }
    let suggestion_validator = def_validator(r, "Suggestion");
    for (tag, sample) in fullest_by_tag(all_suggestions().iter().map(json_view)) {
        let variant = variant_schema(&r["$defs"]["Suggestion"], &tag);
        check_structure::<Suggestion>(&suggestion_validator, variant, &sample, &format!("Suggestion/{tag}"));
    }
}

/// Per `type` tag, the sample with the most fields present.
fn fullest_by_tag(samples: impl Iterator<Item = Value>) -> BTreeMap<String, Value> {
    let mut fullest: BTreeMap<String, Value> = BTreeMap::new();
    for sample in samples {
        let tag = sample["type"].as_str().expect("tag").to_owned();
        let size = |v: &Value| v.as_object().map_or(0, serde_json::Map::len);
        if fullest.get(&tag).is_none_or(|kept| size(kept) < size(&sample)) {
            fullest.insert(tag, sample);
        }
    }
    fullest
}

#[test]
fn unknown_fields_are_ignored_by_readers_and_allowed_by_the_schemas() {
    let validator = compile(&schema_doc("send-request"));
    let mut request = json_view(&sample_requests()[0]);
    request["added_in_a_later_minor"] = json!({"anything": [1, 2]});
    request["content"]["also_new"] = json!(true);
    request["options"]["regional"]["india_dlt"]["new_id"] = json!("x");
    assert_valid(&validator, &request, "request with unknown fields");
    let decoded: SendRequest = decode(&msgpack(&request)).expect("unknown fields are ignored");
    assert_eq!(decoded, sample_requests()[0]);
}

#[test]
fn a_missing_channel_fails_schema_and_decoder() {
    let validator = compile(&schema_doc("send-request"));
    let mut request = json_view(&sample_requests()[0]);
    request.as_object_mut().expect("map").remove("channel");
    assert_invalid(&validator, &request, "request without channel");
    let err = decode::<SendRequest>(&msgpack(&request)).unwrap_err();
    assert!(matches!(&err, DecodeError::Malformed(m) if m.contains("channel")), "{err}");
}

#[test]
fn an_unknown_content_type_fails_schema_and_decoder() {
    let validator = compile(&schema_doc("send-request"));
    let mut request = json_view(&minimal_request(Content::Text { text: "hi".into(), suggestions: vec![] }));
    request["content"]["type"] = json!("hologram");
    assert_invalid(&validator, &request, "request with content type 'hologram'");
    assert!(matches!(decode::<SendRequest>(&msgpack(&request)), Err(DecodeError::Malformed(_))));

    let mut suggestion = json_view(&sample_requests()[0]);
    suggestion["content"]["suggestions"][0]["type"] = json!("teleport");
    assert_invalid(&validator, &suggestion, "request with suggestion type 'teleport'");
    assert!(matches!(decode::<SendRequest>(&msgpack(&suggestion)), Err(DecodeError::Malformed(_))));
}

#[test]
fn schema_version_must_be_the_integer_one() {
    let validator = compile(&schema_doc("send-request"));
    let request = json_view(&minimal_request(Content::Text { text: "hi".into(), suggestions: vec![] }));

    let mut as_string = request.clone();
    as_string["schema_version"] = json!("1");
    assert_invalid(&validator, &as_string, "schema_version as a string");
    assert!(matches!(decode::<SendRequest>(&msgpack(&as_string)), Err(DecodeError::Malformed(_))));

    let mut future = request;
    future["schema_version"] = json!(2);
    assert_invalid(&validator, &future, "schema_version 2");
    assert!(matches!(decode::<SendRequest>(&msgpack(&future)), Err(DecodeError::UnsupportedVersion { found: 2, .. })));

    for name in ["send-job", "event", "rejected-request"] {
        let doc = schema_doc(name);
        assert_eq!(doc["properties"]["schema_version"]["const"], json!(SCHEMA_VERSION), "{name}");
        assert!(doc["required"].as_array().is_some_and(|r| r.contains(&json!("schema_version"))), "{name}");
    }
}

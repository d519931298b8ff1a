//! Parsing Infobip's webhooks into events.
//!
//! Every webhook is `{"results": [...]}`; a batch becomes one event per result.
//! Results are told apart by shape, so one URL can receive every kind. Unknown extra
//! fields are ignored.

use std::collections::BTreeMap;

use sendfleet_config::ProviderConfig;
use sendfleet_protocol::{Channel, Event, EventKind, ProviderErrorInfo};
use serde::{Deserialize, Serialize};

use super::{DELIVERED_GROUP, PENDING_GROUP, to_status, wire};
use crate::CallbackError;

/// What we put in `webhooks.callbackData` so reports carry the trace id and the
/// request's metadata back without any lookup.
#[derive(Serialize, Deserialize)]
struct CallbackData {
    sf: u8,
    #[serde(default)]
    trace: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    meta: BTreeMap<String, String>,
}

const CALLBACK_DATA_LIMIT: usize = 4_000;

/// Encodes trace id and metadata for `callbackData` (≤ 4,000 characters; metadata is
/// dropped if it would not fit).
pub(crate) fn encode_callback_data(trace_id: &str, metadata: &BTreeMap<String, String>) -> String {
    let full = CallbackData { sf: 1, trace: trace_id.to_owned(), meta: metadata.clone() };
    let text = serde_json::to_string(&full).unwrap_or_default();
    if text.chars().count() <= CALLBACK_DATA_LIMIT {
        return text;
    }
    let short = CallbackData { sf: 1, trace: trace_id.chars().take(200).collect(), meta: BTreeMap::new() };
    serde_json::to_string(&short).unwrap_or_default()
}

pub(crate) fn decode_callback_data(data: Option<String>, event: &mut Event) {
    let Some(data) = data else { return };
    match serde_json::from_str::<CallbackData>(&data) {
        Ok(decoded) if decoded.sf == 1 => {
            event.trace_id = Some(decoded.trace).filter(|t| !t.is_empty());
            event.metadata = decoded.meta;
        }
        _ => {
            event.details.insert("callback_data".into(), data);
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    results: Vec<serde_json::Value>,
}

/// A delivery report (SMS v3, SMS legacy, RCS).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryReport {
    message_id: String,
    #[serde(default)]
    to: Option<String>,
    #[serde(default, alias = "from")]
    sender: Option<String>,
    #[serde(default)]
    done_at: Option<String>,
    status: wire::Status,
    #[serde(default)]
    error: Option<wire::ErrorObject>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    callback_data: Option<String>,
    #[serde(default)]
    bulk_id: Option<String>,
    #[serde(default, alias = "smsCount")]
    message_count: Option<u32>,
    #[serde(default)]
    interaction_type: Option<String>,
    #[serde(default)]
    price: Option<Price>,
    #[serde(default)]
    conversation: Option<Conversation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Price {
    #[serde(default)]
    traffic_type: Option<String>,
    #[serde(default)]
    price_per_message: Option<f64>,
    #[serde(default)]
    currency: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conversation {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    can_initiate: Option<bool>,
    #[serde(default)]
    start_time: Option<String>,
    #[serde(default)]
    end_time: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeenReport {
    message_id: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    seen_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RcsEventReport {
    event: RcsEventType,
    #[serde(default)]
    sender: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    received_at: Option<String>,
    #[serde(default)]
    traffic_type: Option<String>,
    #[serde(default)]
    conversation: Option<Conversation>,
}

#[derive(Deserialize)]
struct RcsEventType {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RcsInbound {
    #[serde(default, alias = "from")]
    sender: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    received_at: Option<String>,
    #[serde(default)]
    interaction_type: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    paired_message_id: Option<String>,
    #[serde(default)]
    keyword: Option<String>,
    #[serde(default)]
    callback_data: Option<String>,
    message: RcsInboundBody,
    #[serde(default)]
    price: Option<Price>,
    #[serde(default)]
    conversation: Option<Conversation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RcsInboundBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    postback_data: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SmsInbound {
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    clean_text: Option<String>,
    #[serde(default)]
    keyword: Option<String>,
    #[serde(default)]
    received_at: Option<String>,
    #[serde(default)]
    sms_count: Option<u32>,
}

/// Parses a webhook body into events.
pub fn parse_callback(config: &ProviderConfig, body: &[u8]) -> Result<Vec<Event>, CallbackError> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| CallbackError::Malformed(format!("expected {{\"results\": [...]}}: {e}")))?;
    let mut events = Vec::with_capacity(envelope.results.len());
    for (index, result) in envelope.results.into_iter().enumerate() {
        if let Some(event) = parse_result(config, result).map_err(|e| match e {
            CallbackError::Malformed(m) => CallbackError::Malformed(format!("results[{index}]: {m}")),
            CallbackError::Unrecognised(m) => CallbackError::Unrecognised(format!("results[{index}]: {m}")),
        })? {
            events.push(event);
        }
    }
    Ok(events)
}

fn parse_result(config: &ProviderConfig, result: serde_json::Value) -> Result<Option<Event>, CallbackError> {
    let malformed = |e: serde_json::Error| CallbackError::Malformed(e.to_string());
    // One URL may receive every kind (JioCX posts reports and inbound messages to one
    // callback), so each result is told apart by its shape.
    if result.get("status").is_some_and(serde_json::Value::is_object) {
        return Ok(delivery_event(config, serde_json::from_value(result).map_err(malformed)?));
    }
    if result.get("seenAt").is_some() {
        return Ok(Some(seen_event(config, serde_json::from_value(result).map_err(malformed)?)));
    }
    if let Some(kind) = result.get("event").and_then(|e| e.get("type")).and_then(|t| t.as_str()) {
        return match kind {
            "TYPING_INDICATOR" | "CONVERSATION_STARTED" => {
                Ok(Some(rcs_event(config, serde_json::from_value(result).map_err(malformed)?)))
            }
            other => Err(CallbackError::Unrecognised(format!("event type {other}"))),
        };
    }
    if result.get("message").is_some_and(serde_json::Value::is_object) {
        return Ok(Some(rcs_inbound(config, serde_json::from_value(result).map_err(malformed)?)));
    }
    if result.get("text").is_some() && result.get("receivedAt").is_some() {
        return Ok(Some(sms_inbound(config, serde_json::from_value(result).map_err(malformed)?)));
    }
    Err(CallbackError::Unrecognised("neither a delivery report, a seen report, an inbound message nor an event".into()))
}

fn delivery_event(config: &ProviderConfig, report: DeliveryReport) -> Option<Event> {
    let kind = match report.status.group_id {
        DELIVERED_GROUP => EventKind::Delivered,
        // Intermediate reports (pending, or a provider-side failover step) are only
        // sent when asked for; the final report says how it ended.
        PENDING_GROUP => return None,
        _ => EventKind::Undelivered,
    };
    // With provider-side failover both reports carry our message id; `channel` says
    // which channel this report (and so the final outcome) is about.
    let channel = match report.channel.as_deref() {
        Some("SMS") => Channel::Sms,
        Some("RCS") => Channel::Rcs,
        _ => config.channel(),
    };
    let mut event = Event::new(kind, &config.id, channel);
    event.message_id = Some(report.message_id);
    event.to = report.to.map(|to| e164(&to));
    event.sender = report.sender;
    if let Some(at) = report.done_at.as_deref().and_then(parse_time_ms) {
        event.at_ms = at;
    }
    event.status = Some(to_status(report.status));
    event.error = report.error.filter(|e| e.id != 0).map(|e| ProviderErrorInfo {
        group_id: e.group_id,
        id: e.id,
        name: e.name,
        description: e.description,
        permanent: e.permanent,
    });
    let details = &mut event.details;
    insert(details, "bulk_id", report.bulk_id);
    insert(details, "message_count", report.message_count.map(|c| c.to_string()));
    insert(details, "interaction_type", report.interaction_type);
    billing(details, report.price, report.conversation);
    decode_callback_data(report.callback_data, &mut event);
    Some(event)
}

fn insert(details: &mut BTreeMap<String, String>, key: &str, value: Option<String>) {
    if let Some(value) = value.filter(|v| !v.is_empty()) {
        details.insert(key.to_owned(), value);
    }
}

/// RCS billing fields: traffic type, conversation id, whether the agent may initiate.
fn billing(details: &mut BTreeMap<String, String>, price: Option<Price>, conversation: Option<Conversation>) {
    if let Some(price) = price {
        insert(details, "traffic_type", price.traffic_type);
        insert(details, "price", price.price_per_message.map(|p| p.to_string()));
        insert(details, "currency", price.currency);
    }
    if let Some(conversation) = conversation {
        insert(details, "conversation_id", conversation.id);
        insert(details, "conversation_type", conversation.kind);
        insert(details, "can_initiate", conversation.can_initiate.map(|c| c.to_string()));
    }
}

fn seen_event(config: &ProviderConfig, report: SeenReport) -> Event {
    let mut event = Event::new(EventKind::Seen, &config.id, config.channel());
    event.message_id = Some(report.message_id);
    // The spec's from/to are ambiguous for seen reports: keep both, correlate by id.
    event.to = report.from.as_deref().map(e164);
    insert(&mut event.details, "seen_at", report.seen_at.clone());
    if let Some(at) = report.seen_at.as_deref().and_then(parse_time_ms) {
        event.at_ms = at;
    }
    event
}

fn rcs_event(config: &ProviderConfig, report: RcsEventReport) -> Event {
    let kind = if report.event.kind == "TYPING_INDICATOR" { EventKind::Typing } else { EventKind::ConversationStarted };
    let mut event = Event::new(kind, &config.id, config.channel());
    // Typing comes from the user (`sender`); a conversation names the message that opened it.
    event.to = report.sender.as_deref().map(e164);
    event.sender = report.to;
    event.message_id = report.message_id;
    if let Some(at) = report.received_at.as_deref().and_then(parse_time_ms) {
        event.at_ms = at;
    }
    let details = &mut event.details;
    insert(details, "traffic_type", report.traffic_type);
    if let Some(conversation) = report.conversation {
        insert(details, "conversation_id", conversation.id);
        insert(details, "conversation_type", conversation.kind);
        insert(details, "conversation_start", conversation.start_time);
        insert(details, "conversation_end", conversation.end_time);
    }
    event
}

fn rcs_inbound(config: &ProviderConfig, message: RcsInbound) -> Event {
    let mut event = Event::new(EventKind::Inbound, &config.id, config.channel());
    // `sender` is the end user in the current rendering; older OTT renderings use `from`.
    event.to = message.sender.as_deref().map(e164);
    event.sender = message.to;
    event.message_id = message.paired_message_id;
    if let Some(at) = message.received_at.as_deref().and_then(parse_time_ms) {
        event.at_ms = at;
    }
    let details = &mut event.details;
    insert(details, "inbound_message_id", message.message_id);
    insert(details, "interaction_type", message.interaction_type);
    insert(details, "keyword", message.keyword);
    let body = message.message;
    insert(details, "message_type", Some(body.kind.to_ascii_lowercase()));
    insert(details, "text", body.text);
    insert(details, "postback_data", body.postback_data);
    insert(details, "url", body.url);
    insert(details, "file_name", body.name);
    insert(details, "content_type", body.content_type);
    insert(details, "size", body.size.map(|s| s.to_string()));
    insert(details, "latitude", body.latitude.map(|l| l.to_string()));
    insert(details, "longitude", body.longitude.map(|l| l.to_string()));
    billing(details, message.price, message.conversation);
    decode_callback_data(message.callback_data, &mut event);
    event
}

fn sms_inbound(config: &ProviderConfig, message: SmsInbound) -> Event {
    let mut event = Event::new(EventKind::Inbound, &config.id, Channel::Sms);
    event.to = message.from.as_deref().map(e164);
    event.sender = message.to;
    if let Some(at) = message.received_at.as_deref().and_then(parse_time_ms) {
        event.at_ms = at;
    }
    let details = &mut event.details;
    insert(details, "inbound_message_id", message.message_id);
    insert(details, "message_type", Some("text".into()));
    insert(details, "text", message.text);
    insert(details, "clean_text", message.clean_text);
    insert(details, "keyword", message.keyword);
    insert(details, "sms_count", message.sms_count.map(|c| c.to_string()));
    event
}

/// Infobip numbers are digits; events carry E.164 with `+`.
fn e164(number: &str) -> String {
    if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
        format!("+{number}")
    } else {
        number.to_owned()
    }
}

/// Infobip's `2026-01-15T10:40:03.512+0000` (or RFC 3339) → ms since the epoch.
pub(crate) fn parse_time_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|t| t.timestamp_millis())
}

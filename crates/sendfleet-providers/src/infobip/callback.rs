//! Parsing Infobip's webhooks into events.
//!
//! Every webhook is `{"results": [...]}`; a batch becomes one event per result.
//! Results are told apart by shape, so one URL can receive every kind. Unknown extra
//! fields are ignored.

use std::collections::BTreeMap;

use sendfleet_config::ProviderConfig;
use sendfleet_protocol::{Billing, Channel, Event, EventKind, InboundMessage, ProviderErrorInfo};
use serde::{Deserialize, Serialize};

use super::{DELIVERED_GROUP, PENDING_GROUP, to_status, wire};
use crate::{CallbackError, ParsedCallback};

/// What we put in `webhooks.callbackData` so reports carry the trace id and the
/// request's metadata back without any lookup.
#[derive(Serialize, Deserialize)]
struct CallbackData {
    sf: u8,
    #[serde(default)]
    trace: String,
    /// The RCS message an SMS fallback replaces: its reports are about that message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fb: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    meta: BTreeMap<String, String>,
}

const CALLBACK_DATA_LIMIT: usize = 4_000;

/// Encodes trace id and metadata for `callbackData` (≤ 4,000 characters; metadata is
/// dropped if it would not fit).
pub(crate) fn encode_callback_data(
    trace_id: &str,
    fallback_for: Option<&str>,
    metadata: &BTreeMap<String, String>,
) -> String {
    let fb = fallback_for.map(str::to_owned);
    let full = CallbackData { sf: 1, trace: trace_id.to_owned(), fb: fb.clone(), meta: metadata.clone() };
    let text = serde_json::to_string(&full).unwrap_or_default();
    if text.chars().count() <= CALLBACK_DATA_LIMIT {
        return text;
    }
    let short = CallbackData { sf: 1, trace: trace_id.chars().take(200).collect(), fb, meta: BTreeMap::new() };
    serde_json::to_string(&short).unwrap_or_default()
}

pub(crate) fn decode_callback_data(data: Option<String>, event: &mut Event) {
    let Some(data) = data else { return };
    match serde_json::from_str::<CallbackData>(&data) {
        Ok(decoded) if decoded.sf == 1 => {
            event.trace_id = Some(decoded.trace).filter(|t| !t.is_empty());
            event.metadata = decoded.meta;
            // A report about an SMS fallback is reported under the RCS message it
            // replaces (as with provider-side failover); the SMS's own id stays in details.
            if let Some(original) = decoded.fb
                && let Some(own) = event.message_id.replace(original)
            {
                event.details.insert("fallback_message_id".into(), own);
            }
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

/// A delivery report (SMS v3, SMS legacy, RCS). The legacy SMS shape names the sender
/// `from` and the part count `smsCount`; both shapes are accepted (either name, or both).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryReport {
    message_id: String,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    sender: Option<String>,
    #[serde(default)]
    from: Option<String>,
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
    #[serde(default)]
    message_count: Option<u32>,
    #[serde(default)]
    sms_count: Option<u32>,
    #[serde(default)]
    mcc_mnc: Option<String>,
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
    to: Option<String>,
    #[serde(default)]
    seen_at: Option<String>,
}

/// Typing indicator and conversation-started events.
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

/// An RCS inbound message or user action, as MO_OTT_MSISDN / MO_RCS_JSON render it. The
/// user is `sender` in the current rendering and `from` in older OTT ones.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RcsInbound {
    #[serde(default)]
    sender: Option<String>,
    #[serde(default)]
    from: Option<String>,
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
    #[serde(default)]
    rcs_count: Option<u32>,
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

/// An inbound SMS as the `MO_JSON_2` renderer writes it.
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
    #[serde(default)]
    callback_data: Option<String>,
    #[serde(default)]
    price: Option<Price>,
}

/// Parses a webhook body result by result: one event per good result, in order (pending
/// delivery reports yield none), and the index and reason of each result that cannot be
/// read. `Err` only when the body is not `{"results": [...]}`.
pub fn parse_callback(config: &ProviderConfig, body: &[u8]) -> Result<ParsedCallback, CallbackError> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| CallbackError::Malformed(format!("expected {{\"results\": [...]}}: {e}")))?;
    Ok(ParsedCallback::collect(envelope.results.into_iter().map(|result| parse_result(config, result))))
}

fn parse_result(config: &ProviderConfig, result: serde_json::Value) -> Result<Option<Event>, CallbackError> {
    let malformed = |e: serde_json::Error| CallbackError::Malformed(e.to_string());
    if !result.is_object() {
        return Err(CallbackError::Malformed("a result must be an object".into()));
    }
    // One URL may receive every kind (JioCX posts reports and inbound messages to one
    // callback), so each result is told apart by its shape.
    if result.get("status").is_some_and(serde_json::Value::is_object) {
        return Ok(delivery_event(config, serde_json::from_value(result).map_err(malformed)?));
    }
    if result.get("seenAt").is_some() {
        return Ok(Some(seen_event(config, serde_json::from_value(result).map_err(malformed)?)));
    }
    if let Some(event) = result.get("event") {
        let kind = event.get("type").and_then(|t| t.as_str()).unwrap_or_default();
        return match kind {
            "TYPING_INDICATOR" | "CONVERSATION_STARTED" => {
                Ok(Some(rcs_event(config, serde_json::from_value(result).map_err(malformed)?)))
            }
            "" => Err(CallbackError::Malformed("event without a type".into())),
            other => Err(CallbackError::Unrecognised(format!("event type {}", clip(other)))),
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

/// Caller-supplied text in a 400 reason is cut short: reasons are logged.
fn clip(text: &str) -> String {
    text.chars().take(40).collect()
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
    event.sender = report.sender.or(report.from);
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
    event.outcome = super::outcome::delivery_outcome(
        kind,
        event.status.as_ref().map(|s| s.group_id),
        event.error.as_ref().map(|e| e.id),
    );
    let details = &mut event.details;
    insert(details, "bulk_id", report.bulk_id);
    insert(details, "message_count", report.message_count.or(report.sms_count).map(|c| c.to_string()));
    insert(details, "mcc_mnc", report.mcc_mnc);
    event.billing = billing(report.interaction_type, report.price, report.conversation);
    decode_callback_data(report.callback_data, &mut event);
    Some(event)
}

fn insert(details: &mut BTreeMap<String, String>, key: &str, value: Option<String>) {
    if let Some(value) = value.filter(|v| !v.is_empty()) {
        details.insert(key.to_owned(), value);
    }
}

/// Billing fields (traffic and interaction type, price, conversation); `None` when the
/// provider reported none.
fn billing(
    interaction_type: Option<String>,
    price: Option<Price>,
    conversation: Option<Conversation>,
) -> Option<Billing> {
    let mut billing = Billing { interaction_type: interaction_type.filter(|t| !t.is_empty()), ..Billing::default() };
    if let Some(price) = price {
        billing.traffic_type = price.traffic_type.filter(|t| !t.is_empty());
        billing.price_per_message = price.price_per_message;
        billing.currency = price.currency.filter(|c| !c.is_empty());
    }
    if let Some(conversation) = conversation {
        billing.conversation_id = conversation.id.filter(|i| !i.is_empty());
        billing.conversation_type = conversation.kind.filter(|k| !k.is_empty());
        billing.can_initiate = conversation.can_initiate;
        billing.conversation_start_ms = conversation.start_time.as_deref().and_then(parse_time_ms);
        billing.conversation_end_ms = conversation.end_time.as_deref().and_then(parse_time_ms);
    }
    (!billing.is_empty()).then_some(billing)
}

fn seen_event(config: &ProviderConfig, report: SeenReport) -> Event {
    let mut event = Event::new(EventKind::Seen, &config.id, config.channel());
    event.message_id = Some(report.message_id);
    // The spec's from/to are ambiguous for seen reports (correlate by message id); in
    // the examples `from` is the user and `to` the agent.
    event.to = report.from.as_deref().map(e164);
    event.sender = report.to;
    if let Some(at) = report.seen_at.as_deref().and_then(parse_time_ms) {
        event.at_ms = at;
    }
    event.outcome = Some(sendfleet_protocol::DeliveryOutcome::Seen);
    event
}

fn rcs_event(config: &ProviderConfig, report: RcsEventReport) -> Event {
    let kind = if report.event.kind == "TYPING_INDICATOR" { EventKind::Typing } else { EventKind::ConversationStarted };
    let mut event = Event::new(kind, &config.id, config.channel());
    // Typing comes from the user (`sender`); a conversation names the message (ours or
    // the user's) that opened it.
    event.to = report.sender.as_deref().map(e164);
    event.sender = report.to;
    event.message_id = report.message_id;
    if let Some(at) = report.received_at.as_deref().and_then(parse_time_ms) {
        event.at_ms = at;
    }
    let price = report.traffic_type.map(|t| Price { traffic_type: Some(t), price_per_message: None, currency: None });
    event.billing = billing(None, price, report.conversation);
    if kind == EventKind::ConversationStarted
        && let Some(start) = event.billing.as_ref().and_then(|b| b.conversation_start_ms)
    {
        event.at_ms = start;
    }
    event
}

fn rcs_inbound(config: &ProviderConfig, message: RcsInbound) -> Event {
    let mut event = Event::new(EventKind::Inbound, &config.id, config.channel());
    event.to = message.sender.or(message.from).as_deref().map(e164);
    event.sender = message.to;
    // The outbound message this answers, when Infobip paired it: our message id.
    event.message_id = message.paired_message_id.filter(|m| !m.is_empty());
    if let Some(at) = message.received_at.as_deref().and_then(parse_time_ms) {
        event.at_ms = at;
    }
    let body = message.message;
    event.inbound = Some(InboundMessage {
        kind: body.kind.to_ascii_lowercase(),
        provider_message_id: message.message_id,
        text: body.text,
        clean_text: None,
        keyword: message.keyword.filter(|k| !k.is_empty()),
        postback_data: body.postback_data,
        url: body.url,
        file_name: body.name,
        content_type: body.content_type,
        size_bytes: body.size,
        latitude: body.latitude,
        longitude: body.longitude,
        parts: message.rcs_count,
    });
    event.billing = billing(message.interaction_type, message.price, message.conversation);
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
    event.inbound = Some(InboundMessage {
        kind: "text".into(),
        provider_message_id: message.message_id,
        text: message.text,
        clean_text: message.clean_text,
        keyword: message.keyword.filter(|k| !k.is_empty()),
        parts: message.sms_count,
        ..InboundMessage::default()
    });
    event.billing = billing(None, message.price, None);
    decode_callback_data(message.callback_data, &mut event);
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

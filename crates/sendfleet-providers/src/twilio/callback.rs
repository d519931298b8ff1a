//! Twilio's callbacks: status callbacks (`MessageStatus`, `ErrorCode`) and incoming
//! messages, one per form-encoded POST. Our message id and trace id come back in the
//! query string of the `StatusCallback` URL the send gave.

use std::collections::BTreeMap;

use sendfleet_config::ProviderConfig;
use sendfleet_protocol::{
    Channel, DeliveryOutcome, Event, EventKind, InboundMessage, ProviderErrorInfo, ProviderStatus,
};

use super::provider_status;
use crate::{CallbackError, CallbackRequest, ParsedCallback};

/// Status groups, numbered like every provider's (see `docs/providers.md`).
const PENDING: (i32, &str) = (1, "PENDING");
const UNDELIVERABLE: (i32, &str) = (2, "UNDELIVERABLE");
const DELIVERED: (i32, &str) = (3, "DELIVERED");
const REJECTED: (i32, &str) = (5, "REJECTED");

/// A Twilio message status as a [`ProviderStatus`].
pub(crate) fn status_of(name: &str) -> ProviderStatus {
    let group = match name {
        "delivered" | "read" | "partially_delivered" => DELIVERED,
        "undelivered" => UNDELIVERABLE,
        "failed" | "canceled" => REJECTED,
        _ => PENDING,
    };
    provider_status(group, name)
}

/// Parses one callback (already authenticated): a status callback becomes at most one
/// event (intermediate statuses none), an incoming message an `inbound` event.
pub fn parse_callback(config: &ProviderConfig, request: &CallbackRequest<'_>) -> Result<ParsedCallback, CallbackError> {
    let params: BTreeMap<String, String> =
        form_urlencoded::parse(request.body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    if params.is_empty() {
        return Err(CallbackError::Malformed("expected a form-encoded Twilio callback (no parameters)".into()));
    }
    let query: BTreeMap<String, String> = request
        .path_and_query
        .split_once('?')
        .map(|(_, q)| form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default();
    let result = if let Some(status) = params.get("MessageStatus").filter(|s| !is_incoming(s)) {
        status_event(config, &params, &query, status)
    } else if params.contains_key("Body") || params.contains_key("NumMedia") {
        Ok(Some(inbound_event(config, &params)))
    } else {
        Err(CallbackError::Malformed("neither a status callback (MessageStatus) nor an incoming message (Body)".into()))
    };
    Ok(ParsedCallback::collect(std::iter::once(result)))
}

/// What a final Twilio status and error code mean, in neutral words. Error codes from
/// Twilio's error dictionary: 63106 "handset not RCS capable", 63036 "cannot be reached
/// by RCS at this time", 30036 "validity period expired", 30007 "filtered", 30004
/// "blocked".
fn outcome_of(status: &str, error: Option<i32>) -> DeliveryOutcome {
    match (status, error) {
        ("delivered" | "partially_delivered", _) => DeliveryOutcome::Delivered,
        ("read", _) => DeliveryOutcome::Seen,
        (_, Some(63106 | 63036)) => DeliveryOutcome::UndeliverableNotCapable,
        (_, Some(30036)) => DeliveryOutcome::Expired,
        (_, Some(30004)) => DeliveryOutcome::UndeliverableBlocked,
        ("failed" | "canceled", _) | (_, Some(30007)) => DeliveryOutcome::Rejected,
        _ => DeliveryOutcome::UndeliverableOther,
    }
}

fn is_incoming(status: &str) -> bool {
    matches!(status, "received" | "receiving")
}

fn status_event(
    config: &ProviderConfig,
    params: &BTreeMap<String, String>,
    query: &BTreeMap<String, String>,
    status: &str,
) -> Result<Option<Event>, CallbackError> {
    let kind = match status {
        "delivered" | "partially_delivered" => EventKind::Delivered,
        "read" => EventKind::Seen,
        "undelivered" | "failed" | "canceled" => EventKind::Undelivered,
        // Not final: the final status follows.
        "queued" | "accepted" | "scheduled" | "sending" | "sent" => return Ok(None),
        other => return Err(CallbackError::Unrecognised(format!("MessageStatus {other:?}"))),
    };
    let message_id = query.get("message_id").filter(|m| !m.is_empty()).ok_or_else(|| {
        CallbackError::Malformed(
            "no message_id in the callback URL's query: not the StatusCallback of a message sendfleet sent".into(),
        )
    })?;
    let mut event = Event::new(kind, &config.id, channel_of(config, params));
    event.message_id = Some(message_id.clone());
    event.trace_id = query.get("trace_id").filter(|t| !t.is_empty()).cloned();
    event.to = params.get("To").map(|to| to.trim_start_matches("rcs:").to_owned());
    event.sender = params.get("From").cloned();
    if kind != EventKind::Seen {
        event.status = Some(status_of(status));
    }
    if let Some(code) = params.get("ErrorCode").filter(|c| !c.is_empty() && *c != "0") {
        let id = code.parse().map_err(|_| CallbackError::Malformed(format!("ErrorCode {code:?} is not a number")))?;
        event.error = Some(ProviderErrorInfo {
            group_id: 0,
            id,
            name: Some(code.clone()),
            description: params.get("ErrorMessage").cloned(),
            permanent: kind == EventKind::Undelivered,
        });
    }
    event.outcome = Some(outcome_of(status, event.error.as_ref().map(|e| e.id)));
    if let Some(sid) = params.get("MessageSid").or(params.get("SmsSid")) {
        event.details.insert("vendor_message_id".into(), sid.clone());
    }
    if let Some(done) = params.get("RawDlrDoneDate") {
        event.details.insert("raw_dlr_done_date".into(), done.clone());
    }
    Ok(Some(event))
}

/// The channel a status is about. For RCS through a Messaging Service, `From` says which
/// channel Twilio used: `rcs:<SenderId>` for RCS, a number or sender id for its SMS
/// fallback. A destination of `rcs:+E164` never falls back.
fn channel_of(config: &ProviderConfig, params: &BTreeMap<String, String>) -> Channel {
    let rcs_prefixed = |key: &str| params.get(key).is_some_and(|v| v.starts_with("rcs:"));
    match config.channel() {
        Channel::Sms => Channel::Sms,
        Channel::Rcs if rcs_prefixed("From") || rcs_prefixed("To") => Channel::Rcs,
        // No From at all (some intermediate reports): nothing says it fell back.
        Channel::Rcs if !params.contains_key("From") => Channel::Rcs,
        Channel::Rcs => Channel::Sms,
    }
}

fn inbound_event(config: &ProviderConfig, params: &BTreeMap<String, String>) -> Event {
    let channel = if params.get("To").is_some_and(|to| to.starts_with("rcs:")) { Channel::Rcs } else { Channel::Sms };
    let mut event = Event::new(EventKind::Inbound, &config.id, channel);
    event.to = params.get("From").map(|from| from.trim_start_matches("rcs:").to_owned());
    event.sender = params.get("To").map(|to| to.trim_start_matches("rcs:").to_owned());
    let media = params.get("MediaUrl0").cloned();
    event.inbound = Some(InboundMessage {
        kind: if media.is_some() { "file".into() } else { "text".into() },
        provider_message_id: params.get("MessageSid").cloned(),
        text: params.get("Body").cloned().filter(|b| !b.is_empty()),
        url: media,
        content_type: params.get("MediaContentType0").cloned(),
        ..InboundMessage::default()
    });
    if let Some(sid) = params.get("MessageSid") {
        event.details.insert("vendor_message_id".into(), sid.clone());
    }
    event
}

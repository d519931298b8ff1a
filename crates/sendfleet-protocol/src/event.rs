//! Events: the outcome stream every upstream consumer reads.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Channel, Versioned};

/// What happened. Published to the events exchange with routing key
/// `<kind>.<channel>.<provider>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The provider accepted the message for delivery (not yet delivered).
    Accepted,
    /// The message will not be sent: permanent provider rejection, retries exhausted,
    /// or not RCS capable without a fallback.
    Failed,
    /// A transient failure; the job was scheduled for another attempt.
    Retrying,
    /// A delivery report says the message reached the handset (or operator).
    Delivered,
    /// A final delivery report says it did not (undeliverable, expired, rejected).
    Undelivered,
    /// The recipient opened the RCS message.
    Seen,
    /// The recipient sent a message or tapped a suggestion.
    Inbound,
    /// The recipient is typing (RCS).
    Typing,
    /// A billable RCS conversation started.
    ConversationStarted,
    /// An SMS fallback job was published for an RCS message.
    FallbackTriggered,
}

impl EventKind {
    /// The snake_case name used in routing keys and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Accepted => "accepted",
            EventKind::Failed => "failed",
            EventKind::Retrying => "retrying",
            EventKind::Delivered => "delivered",
            EventKind::Undelivered => "undelivered",
            EventKind::Seen => "seen",
            EventKind::Inbound => "inbound",
            EventKind::Typing => "typing",
            EventKind::ConversationStarted => "conversation_started",
            EventKind::FallbackTriggered => "fallback_triggered",
        }
    }
}

/// The schema of [`Event::kind`]: the known kinds, or any other snake_case name, because
/// `docs/protocol.md` promises consumers that new kinds may appear within a version.
fn open_event_kind(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let known = generator.subschema_for::<EventKind>();
    schemars::json_schema!({
        "anyOf": [
            known,
            {
                "description": "A kind added after this build; consumers must accept it.",
                "type": "string",
                "pattern": "^[a-z][a-z0-9_]*$"
            }
        ]
    })
}

/// Namespace of [`Event::outcome_id`] (a fixed random UUID).
const OUTCOME_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5e6d_f1ee_7a3c_4b7e_9d2a_1c0f_8e4b_6a21);

/// One normalised event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// Must be a version this build reads (currently 1); any other is refused with reason
    /// code `unsupported_version`.
    #[schemars(extend("const" = 1))]
    pub schema_version: u16,
    /// Id of this event, for consumers that de-duplicate: a UUIDv7; for a send outcome
    /// (`accepted`, `failed`, `fallback_triggered`) or a provider's report, a UUIDv5
    /// derived from what it says, so the same outcome or report published again carries
    /// the same id.
    pub event_id: String,
    /// What happened: one of the known kinds, or a kind added by a later build, which
    /// consumers must accept (and may ignore).
    #[schemars(schema_with = "open_event_kind")]
    pub kind: EventKind,
    /// Our message id (absent for inbound messages not paired to one of ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Provider id from the config.
    pub provider: String,
    /// The channel the event is about (for a provider-side failover report: the
    /// channel that finally delivered or failed).
    pub channel: Channel,
    /// The recipient (E.164 without formatting guarantees; as the provider sent it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The sender / agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// When it happened (provider time when known, else ours), ms since the epoch.
    pub at_ms: i64,
    /// Attempt number this event concerns (send outcomes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Provider status, as the provider reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ProviderStatus>,
    /// Provider error, as the provider reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ProviderErrorInfo>,
    /// What a delivery report means, the same words for every provider (`delivered`,
    /// `seen` and `undeliverable_*`/`expired`/`rejected` reports); the provider's own
    /// status and error stay in `status` and `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<DeliveryOutcome>,
    /// Human-readable reason (failures, retries, fallbacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Kind-specific details (inbound text, postback data, price, conversation id, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// The request's metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Trace id of the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// What the recipient sent (`inbound` events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<InboundMessage>,
    /// How the provider classifies and prices the message or conversation, as reported
    /// (RCS delivery reports, inbound messages, conversation events; SMS price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<Billing>,
}

impl Event {
    /// A new event with a fresh id and the current time; fill the rest with the
    /// struct-update syntax.
    pub fn new(kind: EventKind, provider: &str, channel: Channel) -> Event {
        Event {
            schema_version: crate::SCHEMA_VERSION,
            event_id: crate::new_id(),
            kind,
            message_id: None,
            provider: provider.to_owned(),
            channel,
            to: None,
            sender: None,
            at_ms: crate::now_ms(),
            attempt: None,
            status: None,
            error: None,
            outcome: None,
            reason: None,
            details: BTreeMap::new(),
            metadata: BTreeMap::new(),
            trace_id: None,
            inbound: None,
            billing: None,
        }
    }

    /// The id of a *terminal* outcome (`accepted`, `failed`) of a message: derived from
    /// the message id and the kind, so an outcome published again after a crash or
    /// redelivery carries the same `event_id` and consumers can drop the repeat.
    pub fn outcome_id(message_id: &str, kind: EventKind) -> String {
        let name = format!("{message_id}/{}", kind.as_str());
        uuid::Uuid::new_v5(&OUTCOME_NAMESPACE, name.as_bytes()).to_string()
    }

    /// The id of a provider's report about a message (delivery, seen, an inbound message
    /// by its provider id): derived from what the report says — kind, provider, channel,
    /// message id, status and error — so a report the provider posts again (after a 503,
    /// a timeout, a crash of callback-ingest) becomes an event with the same `event_id`.
    /// `None` for an event without a message id (typing, conversation started), which
    /// keeps its fresh id.
    pub fn report_id(&self) -> Option<String> {
        let message_id = self.message_id.as_deref()?;
        let status = self.status.as_ref().map_or((0, 0), |s| (s.group_id, s.id));
        let error = self.error.as_ref().map_or(0, |e| e.id);
        let name = format!(
            "report/{}/{}/{}/{message_id}/{}.{}/{error}",
            self.kind.as_str(),
            self.provider,
            self.channel,
            status.0,
            status.1
        );
        Some(uuid::Uuid::new_v5(&OUTCOME_NAMESPACE, name.as_bytes()).to_string())
    }

    /// The routing key on the events exchange: `<kind>.<channel>.<provider>`.
    pub fn routing_key(&self) -> String {
        format!("{}.{}.{}", self.kind.as_str(), self.channel, self.provider)
    }
}

impl Versioned for Event {
    fn schema_version(&self) -> u16 {
        self.schema_version
    }
}

/// What a provider's report says about a message, in vendor-neutral words. Each adapter
/// maps its vendor's statuses and error codes onto these; the SMS fallback rules key on
/// them. A bounded set; consumers must accept values added later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// Not final yet.
    Pending,
    /// Reached the handset (or the operator, for SMS).
    Delivered,
    /// Opened by the recipient.
    Seen,
    /// The device or network cannot receive RCS (or from this agent).
    UndeliverableNotCapable,
    /// The device cannot show this content or feature.
    UndeliverableUnsupportedContent,
    /// The recipient blocked the sender (consent): no other channel should try.
    UndeliverableBlocked,
    /// The request's template or its mapping is wrong: fix the request.
    UndeliverableBadTemplate,
    /// The provider throttled the channel (an agent's test quota, say).
    UndeliverableThrottled,
    /// The provider or its upstream failed or timed out.
    UndeliverableProviderError,
    /// A platform or sender configuration problem at the provider.
    UndeliverablePlatformError,
    /// Not delivered, for another or no given reason.
    UndeliverableOther,
    /// Not delivered within its validity period.
    Expired,
    /// Refused by the provider or operator.
    Rejected,
}

/// A provider's status object (Infobip: `status.groupId/groupName/id/name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderStatus {
    /// Status group id (Infobip: 1 pending, 2 undeliverable, 3 delivered, 4 expired, 5 rejected).
    pub group_id: i32,
    /// Status group name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// Status id.
    pub id: i32,
    /// Status name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A provider's error object (Infobip: `error.groupId/id/name/permanent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderErrorInfo {
    /// Error group id.
    pub group_id: i32,
    /// Error id (e.g. 7002 EC_UNKNOWN_USER).
    pub id: i32,
    /// Error name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether resending unchanged would fail the same way.
    #[serde(default)]
    pub permanent: bool,
}

/// What the recipient sent: an inbound (MO) SMS, an RCS message, or a tapped suggestion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InboundMessage {
    /// `text`, `file`, `location` or `suggestion` (another provider type arrives
    /// lowercased, as is).
    #[serde(rename = "type")]
    pub kind: String,
    /// The provider's id of the inbound message (RCS: what a read receipt refers to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// The text (`text`), or the suggestion's text (`suggestion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// SMS: the text without the keyword.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_text: Option<String>,
    /// The keyword the provider matched, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
    /// `suggestion`: the postback data of the tapped suggestion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postback_data: Option<String>,
    /// `file`: where to download it (the provider keeps it for a limited time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `file`: its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// `file`: its MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `file`: its size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// `location`: latitude in degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// `location`: longitude in degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    /// Parts the message arrived in (SMS `smsCount`, RCS `rcsCount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
}

/// Billing fields as the provider reported them. Enum-like values are kept as open
/// strings: the provider's lists differ between versions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Billing {
    /// Infobip `trafficType` (`BASIC`, `SINGLE`, `RICH`, `RICH_MEDIA`,
    /// `A2P_CONVERSATION`, `P2A_CONVERSATION`, `INTERACTIVE_SESSION`, …); absent when
    /// not chargeable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_type: Option<String>,
    /// Infobip `interactionType` (`BASIC_MESSAGE`, `SINGLE_MESSAGE`, `RICH_MESSAGE`,
    /// `RICH_MEDIA_MESSAGE`, `EVENT`): the message's structure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction_type: Option<String>,
    /// The conversation's id (matches across reports, inbound messages and
    /// `conversation_started`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// The conversation's type (`A2P`, `P2A`, `INTERACTIVE_SESSION`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_type: Option<String>,
    /// Whether the agent may start a conversation with the user now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_initiate: Option<bool>,
    /// When the conversation started, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_start_ms: Option<i64>,
    /// When the conversation ends, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_end_ms: Option<i64>,
    /// Price per message, in `currency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_message: Option<f64>,
    /// Currency of the price (ISO 4217).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

impl Billing {
    /// Whether nothing is set (then the event carries no `billing`).
    pub fn is_empty(&self) -> bool {
        *self == Billing::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(kind: EventKind, status_id: i32) -> Event {
        let mut event = Event::new(kind, "ib-rcs", Channel::Rcs);
        event.message_id = Some("m-1".into());
        event.status =
            Some(ProviderStatus { group_id: 3, group_name: None, id: status_id, name: None, description: None });
        event
    }

    #[test]
    fn a_report_posted_again_has_the_same_id_and_another_report_another() {
        let first = report(EventKind::Delivered, 5);
        let again = report(EventKind::Delivered, 5);
        assert_ne!(first.event_id, again.event_id, "fresh ids from Event::new");
        assert_eq!(first.report_id(), again.report_id());
        assert_ne!(first.report_id(), report(EventKind::Seen, 5).report_id());
        assert_ne!(first.report_id(), report(EventKind::Delivered, 6).report_id());
        let mut sms = report(EventKind::Delivered, 5);
        sms.channel = Channel::Sms;
        assert_ne!(first.report_id(), sms.report_id(), "the failover SMS's report is another report");
        assert_eq!(Event::new(EventKind::Typing, "ib-rcs", Channel::Rcs).report_id(), None);
    }
}

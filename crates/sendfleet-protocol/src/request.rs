//! The send request: what upstream publishes to the requests queue.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Channel, Content, Priority, Versioned};

/// A request to send one message to one recipient (`to`) or to many (`recipients`).
///
/// Exactly one of `content` or `template` must be present, and exactly one of `to` or
/// `recipients`. The dispatcher validates it, picks
/// the provider (explicit `provider`, else the channel's default) and publishes one
/// [`crate::SendJob`] per recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SendRequest {
    /// Must be a version this build reads (currently 1); any other is refused with reason
    /// code `unsupported_version`.
    #[schemars(extend("const" = 1))]
    pub schema_version: u16,
    /// Our message id for a single-recipient request; generated (UUIDv7) if absent.
    /// Also the id sent to the provider, so keep it ≤ 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// `rcs` or `sms`.
    pub channel: Channel,
    /// Provider id from the config; absent means the channel's default provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The lane: `high` (one-time passwords), `normal` (default) or `bulk` (campaigns).
    /// Higher lanes are sent first within the provider's rate and concurrency.
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
    /// Destination in E.164 (`+` and 8–15 digits). Required unless `recipients` is given
    /// (not both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Several destinations, each with its own personalisation variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<Recipient>,
    /// Sender id / RCS agent; absent means the provider's first configured sender id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Literal content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// A template from the dispatcher's config, rendered per recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
    /// Delivery options (validity, schedule, regional ids, …).
    #[serde(default, skip_serializing_if = "SendOptions::is_empty")]
    pub options: SendOptions,
    /// SMS to send instead if the RCS message cannot be delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<SmsFallback>,
    /// Free key/value pairs copied into every event about this message.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Trace id carried through jobs, retries, fallbacks and events; generated if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl Versioned for SendRequest {
    fn schema_version(&self) -> u16 {
        self.schema_version
    }
}

/// One recipient of a bulk request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Recipient {
    /// Destination in E.164.
    pub to: String,
    /// Message id for this recipient; generated if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Template personalisation variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Extra metadata merged over the request's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// A reference to a dispatcher-side template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TemplateRef {
    /// Template id from the config.
    pub id: String,
    /// Variables shared by all recipients (a recipient's own win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// Delivery options. All optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
pub struct SendOptions {
    /// How long the provider keeps trying, in seconds (Infobip caps it at 48 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_period_seconds: Option<u32>,
    /// Scheduled send time, RFC 3339 (≤ 180 days ahead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<String>,
    /// Only deliver inside this weekly window (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_time_window: Option<DeliveryTimeWindow>,
    /// Campaign reference echoed in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_reference_id: Option<String>,
    /// Regional compliance ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regional: Option<Regional>,
}

impl SendOptions {
    /// True when no option is set (then the field is omitted on the wire).
    pub fn is_empty(&self) -> bool {
        self == &SendOptions::default()
    }
}

/// Why a `send_at` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("send_at '{0}' is not an RFC 3339 time like 2026-03-01T09:00:00Z")]
pub struct SendAtError(pub String);

/// The one `send_at` rule, applied by the dispatcher when a request arrives and by the
/// adapters before they build a provider request: an RFC 3339 date-time. A time in the
/// past is allowed (the provider sends at once): a job may wait in a queue or a retry
/// tier past its schedule. How far ahead a provider accepts is the provider's rule.
pub fn check_send_at(send_at: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, SendAtError> {
    chrono::DateTime::parse_from_rfc3339(send_at).map_err(|_| SendAtError(send_at.to_owned()))
}

/// A weekly delivery window in UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryTimeWindow {
    /// Days, upper case English names (`MONDAY` … `SUNDAY`).
    pub days: Vec<String>,
    /// Window start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<TimeOfDay>,
    /// Window end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<TimeOfDay>,
}

/// A time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TimeOfDay {
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
}

/// Regional compliance ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct Regional {
    /// India DLT registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub india_dlt: Option<IndiaDlt>,
    /// Turkey IYS registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turkey_iys: Option<TurkeyIys>,
}

/// India DLT ids (required by Indian operators for A2P SMS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IndiaDlt {
    /// Principal entity id.
    pub principal_entity_id: String,
    /// Registered content template id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_template_id: Option<String>,
    /// Telemarketer id (aggregators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemarketer_id: Option<String>,
}

/// Turkey IYS ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TurkeyIys {
    /// `BIREYSEL` (individual) or `TACIR` (merchant).
    pub recipient_type: String,
    /// IYS brand code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_code: Option<u32>,
}

impl TurkeyIys {
    /// The recipient types IYS knows; anything else the provider answers with a 400.
    pub const RECIPIENT_TYPES: [&'static str; 2] = ["BIREYSEL", "TACIR"];

    /// True when `recipient_type` is one of [`TurkeyIys::RECIPIENT_TYPES`] (exact case).
    pub fn is_known_recipient_type(recipient_type: &str) -> bool {
        TurkeyIys::RECIPIENT_TYPES.contains(&recipient_type)
    }
}

/// The SMS sent when the RCS message cannot be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SmsFallback {
    /// SMS text.
    pub text: String,
    /// SMS sender id; absent means the SMS provider's first sender id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// SMS provider id; absent means the SMS default provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Regional ids for the SMS (India DLT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regional: Option<Regional>,
    /// SMS validity in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_period_seconds: Option<u32>,
}

//! The Generic RCS / Generic SMS API: what we send and what we accept back.
//! `docs/generic-api.md` documents every field; keep the two in step.

use std::collections::BTreeMap;

use sendfleet_protocol::{Channel, Content, DeliveryTimeWindow, Regional};
use serde::{Deserialize, Serialize};

/// The send request body (before body parameters are merged in at the top level).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SendRequest {
    /// Our message id: stable across retries, echoed in delivery reports. Vendors
    /// should treat a repeated id as the same message (idempotency key).
    pub message_id: String,
    /// `rcs` or `sms`.
    pub channel: Channel,
    /// Destination, E.164 with `+`.
    pub to: String,
    /// Sender id (SMS) or RCS agent id.
    pub sender: String,
    /// What the recipient sees (`type`: text, file, card, carousel, template).
    pub content: Content,
    /// 1 for the first attempt; higher when the send is retried after a transient failure.
    pub attempt: u32,
    /// Where to post delivery reports for this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Opaque string to echo back unchanged in every delivery report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_data: Option<String>,
    /// How long the vendor should keep trying, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_period_seconds: Option<u32>,
    /// Scheduled send time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<String>,
    /// Only deliver inside this weekly window (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_time_window: Option<DeliveryTimeWindow>,
    /// Campaign reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_reference_id: Option<String>,
    /// Regional compliance ids (India DLT, Turkey IYS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regional: Option<Regional>,
    /// For an SMS that replaces an undelivered RCS message: that message's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_for: Option<String>,
}

/// A delivery-report body: `{"results": [report, …]}`. A bare array of reports or a
/// single report object is accepted too.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CallbackBatch {
    /// The reports.
    pub results: Vec<DeliveryReport>,
}

/// One delivery report. Unknown fields are ignored.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct DeliveryReport {
    /// Our message id, from the send request.
    pub message_id: String,
    /// `DELIVERED`, `UNDELIVERED`, `EXPIRED`, `REJECTED`, `SEEN` (RCS read), or the
    /// intermediate `ACCEPTED`, `PENDING`, `SENT` (ignored). Case-insensitive.
    pub status: String,
    /// The recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The sender / agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// The channel that finally delivered or failed (`rcs`/`sms`); default: the provider's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// When it happened, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReportError>,
    /// The vendor's own id of the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_message_id: Option<String>,
    /// The request's `callback_data`, echoed unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_data: Option<String>,
    /// Free-form details (price, operator, …), copied into the event as strings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, serde_json::Value>,
}

/// Why a message failed.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ReportError {
    /// The vendor's error code (string or number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<serde_json::Value>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Whether resending unchanged would fail the same way (e.g. not RCS capable).
    #[serde(default)]
    pub permanent: bool,
}

/// The error body we recommend for non-2xx answers; any other body is quoted as text.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct ErrorBody {
    /// The error.
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

/// Error details of a non-2xx answer.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct ErrorDetail {
    /// Machine-readable code.
    #[serde(default)]
    pub code: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
}

/// An OAuth 2.0 token response (RFC 6749 §5.1).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<serde_json::Value>,
}

/// An OAuth 2.0 error response (RFC 6749 §5.2).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TokenError {
    pub error: String,
}

//! The send job: one message, one recipient, one provider.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Channel, Content, Priority, SendOptions, SmsFallback, Versioned};

/// What a sender-worker consumes from `jobs.<provider>` (and its `.high` / `.bulk` lanes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SendJob {
    /// Must be a version this build reads (currently 1); any other is refused with reason
    /// code `unsupported_version`.
    #[schemars(extend("const" = 1))]
    pub schema_version: u16,
    /// Our message id; also the provider's message id, and the key of duplicate
    /// suppression and the fallback store.
    pub message_id: String,
    /// Provider id from the config; the job sits on that provider's queue.
    pub provider: String,
    /// `rcs` or `sms`.
    pub channel: Channel,
    /// The lane (`high`, `normal`, `bulk`); the job sits on the provider's queue of that
    /// lane, and its retries and SMS fallback stay in it.
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
    /// Destination in E.164 (`+` and digits).
    pub to: String,
    /// Sender id / RCS agent resolved by the dispatcher.
    pub sender: String,
    /// Rendered content.
    pub content: Content,
    /// Delivery options.
    #[serde(default, skip_serializing_if = "SendOptions::is_empty")]
    pub options: SendOptions,
    /// SMS fallback for an RCS job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<SmsFallback>,
    /// Copied into every event.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Trace id carried through the whole life of the message.
    pub trace_id: String,
    /// Attempts already made (0 on the first delivery).
    #[serde(default)]
    pub attempts: u32,
    /// When the first attempt was made, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_attempt_at_ms: Option<i64>,
    /// When the dispatcher created the job, ms since the epoch.
    pub created_at_ms: i64,
    /// The RCS message this SMS replaces, when this job is a fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_for: Option<String>,
}

impl Versioned for SendJob {
    fn schema_version(&self) -> u16 {
        self.schema_version
    }
}

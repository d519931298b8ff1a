//! Wire types shared by every sendfleet process and by producers in other languages.
//!
//! Three documents travel through RabbitMQ:
//! - [`SendRequest`]: what upstream publishes (or posts to the dispatcher's HTTP API);
//! - [`SendJob`]: one message for one recipient on one provider, what workers consume;
//! - [`Event`]: everything that happened to a message (accepted, delivered, inbound, …).
//!
//! All three are MessagePack **maps with field names** (never positional arrays), so a
//! Python or Node producer can write them with a plain dict. Each carries
//! `schema_version`; see `docs/protocol.md` for every field and `docs/schema/` for the
//! JSON Schema of the same structure.

mod codec;
mod content;
mod event;
mod job;
mod rejected;
mod request;

pub use codec::{DecodeError, decode, encode};
pub use content::{
    Card, CardAlignment, CardOrientation, CardWidth, Content, Media, MediaHeight, Suggestion, UrlApplication,
    WebviewViewMode,
};
pub use event::{Billing, DeliveryOutcome, Event, EventKind, InboundMessage, ProviderErrorInfo, ProviderStatus};
pub use job::SendJob;
pub use rejected::RejectedRequest;
pub use request::{
    DeliveryTimeWindow, IndiaDlt, Recipient, Regional, SendAtError, SendOptions, SendRequest, SmsFallback, TemplateRef,
    TimeOfDay, TurkeyIys, check_send_at,
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The schema version this build writes. Readers accept every version in
/// [`SUPPORTED_SCHEMA_VERSIONS`]; fields added within a version are optional.
pub const SCHEMA_VERSION: u16 = 1;

/// Versions this build can read.
pub const SUPPORTED_SCHEMA_VERSIONS: std::ops::RangeInclusive<u16> = 1..=1;

/// The channel a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Rich Communication Services (RCS Business Messaging).
    Rcs,
    /// Plain SMS.
    Sms,
}

impl Channel {
    /// The lowercase name used in routing keys, metrics labels and config.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Rcs => "rcs",
            Channel::Sms => "sms",
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message's lane. Each provider's jobs wait in one queue per lane and are sent high
/// first, then normal, then bulk, within the provider's one rate and concurrency; the
/// lower lanes keep a configured minimum share, so they slow down but never stop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// One-time passwords and other messages a person is waiting for.
    High,
    /// Transactional messages (the default).
    #[default]
    Normal,
    /// Campaigns and other large sends that may wait.
    Bulk,
}

impl Priority {
    /// Every lane, highest first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Bulk];

    /// The lowercase name used in requests, routing keys, queue names and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Bulk => "bulk",
        }
    }

    /// True for the default lane (left out of documents).
    pub fn is_normal(&self) -> bool {
        *self == Priority::Normal
    }

    /// Position in [`Priority::ALL`]: 0 for `high`.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A document that carries a schema version, so the codec can check it.
pub trait Versioned {
    /// The `schema_version` field of the decoded document.
    fn schema_version(&self) -> u16;
}

/// Milliseconds since the Unix epoch, the timestamp unit of every document.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// A fresh message or event id: a UUIDv7, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_is_left_out_when_normal_and_read_by_name() {
        let normal = encode(&text_job());
        let high = encode(&SendJob { priority: Priority::High, ..text_job() });
        assert!(high.len() > normal.len(), "a normal job carries no priority field");
        assert_eq!(decode::<SendJob>(&normal).unwrap().priority, Priority::Normal);
        assert_eq!(decode::<SendJob>(&high).unwrap().priority, Priority::High);
        let json = |p: &str| serde_json::from_value::<Priority>(serde_json::Value::String(p.into()));
        assert_eq!(json("bulk").unwrap(), Priority::Bulk);
        assert!(json("urgent").is_err(), "an unknown lane is refused");
        assert_eq!(Priority::ALL.map(Priority::index), [0, 1, 2]);
    }

    fn text_job() -> SendJob {
        SendJob {
            priority: Default::default(),
            schema_version: SCHEMA_VERSION,
            message_id: "m-1".into(),
            provider: "infobip-sms".into(),
            channel: Channel::Sms,
            to: "+919876543210".into(),
            sender: "ACMEIN".into(),
            content: Content::Text { text: "hello".into(), suggestions: vec![] },
            options: SendOptions::default(),
            fallback: None,
            metadata: Default::default(),
            trace_id: "t-1".into(),
            attempts: 0,
            first_attempt_at_ms: None,
            created_at_ms: 1,
            fallback_for: None,
        }
    }

    #[test]
    fn jobs_encode_as_maps_with_field_names() {
        let bytes = encode(&text_job());
        let value: rmpv::Value = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        let map = value.as_map().expect("top level must be a map");
        let keys: Vec<&str> = map.iter().filter_map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"schema_version"));
        assert!(keys.contains(&"message_id"));
        let content = map.iter().find(|(k, _)| k.as_str() == Some("content")).unwrap();
        let content_type = content.1.as_map().unwrap().iter().find(|(k, _)| k.as_str() == Some("type"));
        assert_eq!(content_type.unwrap().1.as_str(), Some("text"));
        assert!(!keys.contains(&"fallback"), "absent options are omitted");
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let mut job = text_job();
        job.content = Content::Carousel {
            card_width: CardWidth::Medium,
            cards: vec![Card { title: Some("a".into()), ..Card::default() }; 2],
            suggestions: vec![Suggestion::OpenUrl {
                text: "Go".into(),
                postback_data: "go".into(),
                url: "https://example.com".into(),
                application: Some(UrlApplication::Webview),
                webview_view_mode: Some(WebviewViewMode::Tall),
            }],
        };
        job.fallback = Some(SmsFallback {
            text: "sms".into(),
            sender: None,
            provider: Some("infobip-sms".into()),
            regional: None,
            validity_period_seconds: Some(60),
        });
        let decoded: SendJob = decode(&encode(&job)).unwrap();
        assert_eq!(decoded, job);
    }

    #[test]
    fn a_dict_written_by_hand_decodes() {
        // What a Python producer writes: only the required fields, as a map.
        let value = rmpv::Value::Map(vec![
            ("schema_version".into(), 1.into()),
            ("channel".into(), "sms".into()),
            ("to".into(), "+15551234567".into()),
            ("content".into(), rmpv::Value::Map(vec![("type".into(), "text".into()), ("text".into(), "hi".into())])),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();
        let request: SendRequest = decode(&bytes).unwrap();
        assert_eq!(request.to.as_deref(), Some("+15551234567"));
        assert_eq!(request.content, Some(Content::Text { text: "hi".into(), suggestions: vec![] }));
    }

    #[test]
    fn garbage_is_malformed_and_names_the_problem() {
        let err = decode::<SendJob>(b"\xc1not msgpack").unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)));
        let missing = rmpv::Value::Map(vec![("schema_version".into(), 1.into())]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &missing).unwrap();
        let err = decode::<SendJob>(&bytes).unwrap_err();
        assert!(err.to_string().contains("message_id"), "{err}");
    }

    #[test]
    fn unknown_schema_version_is_reported_as_such() {
        let mut job = text_job();
        job.schema_version = 9;
        let err = decode::<SendJob>(&encode(&job)).unwrap_err();
        assert_eq!(err, DecodeError::UnsupportedVersion { found: 9, min: 1, max: 1 });
        let probe_only = rmpv::Value::Map(vec![("schema_version".into(), 7.into())]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &probe_only).unwrap();
        assert_eq!(decode::<SendJob>(&bytes).unwrap_err().label(), "unsupported_version");
    }

    #[test]
    fn event_routing_key_names_kind_channel_and_provider() {
        let event = Event::new(EventKind::ConversationStarted, "jio", Channel::Rcs);
        assert_eq!(event.routing_key(), "conversation_started.rcs.jio");
    }
}

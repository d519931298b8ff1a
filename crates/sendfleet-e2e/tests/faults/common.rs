//! What the crash tests share: the fleet's providers, requests, and the invariants.

use std::collections::{BTreeMap, HashMap, HashSet};

use sendfleet_protocol::{Channel, Content, EventKind, SendRequest, SmsFallback, encode};
use sendfleet_test_support::ProcessFleet;

/// `crash-sms` (SMS default) and `crash-rcs` (RCS default, SMS fallback through the
/// fleet), both on the mock, with a short request timeout so claims of a killed worker
/// run out within the tests' time.
pub fn providers() -> String {
    r#"
[[providers]]
id = "crash-sms"
kind = "infobip_sms"
base_url = "{mock}"
api_key_env = "TEST_API_KEY"
sender_ids = ["ACMEIN"]
default_for_channel = true
rate_per_second = 4600
concurrency = 32
request_timeout_ms = 1000
callback_token_env = "TEST_CALLBACK_TOKEN"
retry = { max_attempts = 10, initial_delay_ms = 200, max_delay_ms = 1000, max_age_seconds = 600 }

[[providers]]
id = "crash-rcs"
kind = "infobip_rcs"
base_url = "{mock}"
api_key_env = "TEST_API_KEY"
sender_ids = ["AcmeAgent"]
default_for_channel = true
rate_per_second = 4600
concurrency = 32
request_timeout_ms = 1000
callback_token_env = "TEST_CALLBACK_TOKEN"
retry = { max_attempts = 10, initial_delay_ms = 200, max_delay_ms = 1000, max_age_seconds = 600 }
"#
    .to_owned()
}

/// The provider ids of [`providers`].
pub const PROVIDER_IDS: [&str; 2] = ["crash-sms", "crash-rcs"];

/// An SMS request to number `i`, without a message id (the dispatcher derives it).
pub fn sms_request(i: usize) -> SendRequest {
    SendRequest {
        priority: Default::default(),
        schema_version: 1,
        message_id: None,
        channel: Channel::Sms,
        provider: None,
        to: Some(format!("+1555{i:07}")),
        recipients: vec![],
        sender: None,
        content: Some(Content::Text { text: format!("crash test {i}"), suggestions: vec![] }),
        template: None,
        options: Default::default(),
        fallback: None,
        metadata: Default::default(),
        trace_id: None,
    }
}

/// An RCS request to number `i` with an SMS fallback, without a message id.
pub fn rcs_request(i: usize) -> SendRequest {
    SendRequest {
        priority: Default::default(),
        channel: Channel::Rcs,
        to: Some(format!("+4477{i:08}")),
        fallback: Some(SmsFallback {
            text: format!("crash test {i} (SMS)"),
            sender: None,
            provider: None,
            regional: None,
            validity_period_seconds: None,
        }),
        ..sms_request(i)
    }
}

/// Publishes `requests` concurrently (confirmed).
pub async fn publish_all(fleet: &ProcessFleet, requests: &[SendRequest]) {
    use futures_util::{StreamExt, stream};
    let exchange = fleet.ns.topology().requests_exchange();
    let bodies: Vec<Vec<u8>> = requests.iter().map(encode).collect();
    let mut confirms = stream::iter(bodies.iter())
        .map(|body| fleet.publisher().publish(sendfleet_broker::Outgoing::new(&exchange, "", body)))
        .buffer_unordered(256);
    while let Some(result) = confirms.next().await {
        result.expect("publish request");
    }
}

/// What the events say happened to each message (by message id).
#[derive(Debug, Default)]
pub struct Outcomes {
    /// Terminal outcome event ids by message id, per kind.
    pub terminal: HashMap<String, HashSet<(EventKind, String)>>,
    /// `fallback_triggered` event ids by RCS message id.
    pub fallbacks: HashMap<String, HashSet<String>>,
    /// Delivery-report events by message id and kind (`delivered`, `undeliverable`, …).
    pub reports: BTreeMap<String, HashSet<EventKind>>,
}

impl Outcomes {
    /// Reads the collector.
    pub fn of(fleet: &ProcessFleet) -> Outcomes {
        let mut outcomes = Outcomes::default();
        for event in fleet.events.events() {
            let Some(id) = event.message_id.clone() else { continue };
            match event.kind {
                EventKind::Accepted | EventKind::Failed => {
                    // An SMS fallback's outcome is about the RCS message it replaces; keep
                    // it apart by its own id.
                    let key = event.details.get("fallback_message_id").cloned().unwrap_or(id);
                    outcomes.terminal.entry(key).or_default().insert((event.kind, event.event_id.clone()));
                }
                EventKind::FallbackTriggered => {
                    outcomes.fallbacks.entry(id).or_default().insert(event.event_id.clone());
                }
                kind => {
                    outcomes.reports.entry(id).or_default().insert(kind);
                }
            }
        }
        outcomes
    }

    /// Messages with at least one terminal outcome.
    pub fn finished(&self) -> usize {
        self.terminal.len()
    }

    /// Messages whose terminal outcomes disagree (two kinds, or one kind under two event
    /// ids): each message must end exactly once; repeats carry the same event id.
    pub fn ambiguous(&self) -> Vec<String> {
        self.terminal.iter().filter(|(_, outcomes)| outcomes.len() > 1).map(|(id, o)| format!("{id}: {o:?}")).collect()
    }
}

//! One message of the dead-letter or rejected queue, read without removing it, and the
//! filters that choose messages.

use std::{collections::BTreeMap, time::Duration};

use sendfleet_broker::{
    REASON_CODE_HEADER, REASON_HEADER, TRACE_HEADER, Topology,
    lapin::{
        message::Delivery,
        types::{AMQPValue, FieldTable},
    },
};
use sendfleet_config::Config;
use sendfleet_dispatcher::RejectedRequest;
use sendfleet_protocol::{Channel, SendJob, SendRequest, decode};
use serde::Serialize;

use crate::FilterArgs;

/// Which queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `<prefix>.dead-letter`: jobs.
    DeadLetters,
    /// `<prefix>.requests.rejected`: requests.
    Rejected,
}

impl Source {
    /// The queue's name.
    pub fn queue(self, config: &Config) -> String {
        let topology = Topology::new(&config.broker);
        match self {
            Source::DeadLetters => topology.dead_letter_queue(),
            Source::Rejected => topology.rejected_queue(),
        }
    }

    /// What a replay publishes to.
    pub fn target(self, config: &Config) -> String {
        let topology = Topology::new(&config.broker);
        match self {
            Source::DeadLetters => topology.jobs_exchange(),
            Source::Rejected => topology.requests_exchange(),
        }
    }

    /// How a message of it is called in output.
    pub fn noun(self) -> &'static str {
        match self {
            Source::DeadLetters => "dead letters",
            Source::Rejected => "rejected requests",
        }
    }
}

/// What a replay of an entry publishes.
#[derive(Debug, Clone)]
pub(crate) enum Republish {
    /// A dead-lettered job: published to `<prefix>.jobs` with attempts and age reset.
    Job(Box<SendJob>),
    /// A request as received: published to `<prefix>.requests` with the AMQP
    /// `message_id` and `timestamp` given, so every replay of this message (a replay
    /// killed after the publish and run again) plans the same message ids.
    Request { bytes: Vec<u8>, message_id: Option<String>, timestamp: Option<u64> },
    /// Not replayable (undecodable job bytes).
    Not,
}

/// A message as `list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The message id; for a message without one, `r-` and a hash of its bytes.
    pub id: String,
    /// The provider, when known.
    pub provider: Option<String>,
    /// The channel, when known.
    pub channel: Option<Channel>,
    /// `x-sendfleet-reason-code`; `broker:<reason>` for a message RabbitMQ
    /// dead-lettered (expired, rejected, maxlen, delivery_limit).
    pub reason_code: String,
    /// The reason, for a human.
    pub reason: Option<String>,
    /// When it was dead-lettered or rejected, ms since the epoch.
    pub at_ms: Option<i64>,
    /// Seconds since then.
    pub age_seconds: Option<u64>,
    /// Attempts made (dead-lettered jobs).
    pub attempts: Option<u32>,
    /// Trace id.
    pub trace_id: Option<String>,
    /// Whether it can be replayed (undecodable job bytes cannot).
    pub replayable: bool,
    /// The broker delivered it before (an earlier `list`, `show` or an interrupted
    /// `replay` hands messages back, which sets this).
    pub redelivered: bool,
    /// Quorum queues: deliveries so far (`x-delivery-count`).
    pub delivery_count: Option<i64>,
    /// Every string header.
    #[serde(skip)]
    pub headers: BTreeMap<String, String>,
    /// The job or request as JSON (`show`).
    #[serde(skip)]
    pub body: serde_json::Value,
    #[serde(skip)]
    pub(crate) republish: Republish,
}

impl Entry {
    /// Reads a delivered message of `source`.
    pub(crate) fn read(source: Source, delivery: &Delivery, now_ms: i64) -> Entry {
        let table = delivery.properties.headers().clone().unwrap_or_default();
        let headers = string_headers(&table);
        let death = first_death(&table);
        let reason_code = headers
            .get(REASON_CODE_HEADER)
            .cloned()
            .or_else(|| death.as_ref().map(|d| format!("broker:{}", d.reason)))
            .unwrap_or_else(|| "unknown".into());
        let reason = headers
            .get(REASON_HEADER)
            .cloned()
            .or_else(|| death.as_ref().map(|d| format!("dead-lettered by RabbitMQ from {} ({})", d.queue, d.reason)));
        let at_ms = death
            .as_ref()
            .and_then(|d| d.time)
            .or(*delivery.properties.timestamp())
            .and_then(|s| i64::try_from(s).ok())
            .map(|s| s * 1_000);
        let amqp_id = delivery.properties.message_id().as_ref().map(|id| id.to_string());
        let mut entry = Entry {
            id: String::new(),
            provider: None,
            channel: None,
            reason_code,
            reason,
            at_ms,
            age_seconds: at_ms.map(|at| u64::try_from(now_ms - at).unwrap_or(0) / 1_000),
            attempts: None,
            trace_id: headers.get(TRACE_HEADER).cloned(),
            replayable: false,
            redelivered: delivery.redelivered,
            delivery_count: table.inner().get("x-delivery-count").and_then(integer),
            headers,
            body: serde_json::Value::Null,
            republish: Republish::Not,
        };
        match source {
            Source::DeadLetters => entry.read_job(&delivery.data, amqp_id),
            Source::Rejected => {
                let sendfleet_rejection = entry.headers.contains_key(REASON_CODE_HEADER);
                let rejected = sendfleet_rejection.then(|| decode::<RejectedRequest>(&delivery.data).ok()).flatten();
                match rejected {
                    Some(rejected) => entry.read_request(rejected.original, None, *delivery.properties.timestamp()),
                    // Dead-lettered by RabbitMQ: the raw request with its own properties.
                    None => entry.read_request(delivery.data.clone(), amqp_id, *delivery.properties.timestamp()),
                }
            }
        }
        entry
    }

    fn read_job(&mut self, data: &[u8], amqp_id: Option<String>) {
        match decode::<SendJob>(data) {
            Ok(job) => {
                self.id = job.message_id.clone();
                self.provider = Some(job.provider.clone());
                self.channel = Some(job.channel);
                self.attempts = Some(job.attempts);
                self.trace_id.get_or_insert_with(|| job.trace_id.clone());
                self.body = serde_json::to_value(&job).unwrap_or_default();
                self.replayable = true;
                self.republish = Republish::Job(Box::new(job));
            }
            Err(err) => {
                self.id = amqp_id.unwrap_or_else(|| hashed_id(data));
                // `<provider>` or `<tier>.<provider>`; provider ids have no dots.
                self.provider = self
                    .headers
                    .get("x-sendfleet-original-routing-key")
                    .and_then(|key| key.rsplit('.').next())
                    .map(str::to_owned);
                self.body = serde_json::json!({ "undecodable": err.to_string(), "bytes": data.len() });
                self.republish = Republish::Not;
            }
        }
    }

    fn read_request(&mut self, bytes: Vec<u8>, message_id: Option<String>, timestamp: Option<u64>) {
        match decode::<SendRequest>(&bytes) {
            Ok(request) => {
                self.id = request.message_id.clone().unwrap_or_else(|| hashed_id(&bytes));
                self.provider = request.provider.clone();
                self.channel = Some(request.channel);
                self.body = serde_json::to_value(&request).unwrap_or_default();
            }
            Err(err) => {
                self.id = hashed_id(&bytes);
                self.body = serde_json::json!({ "undecodable": err.to_string(), "bytes": bytes.len() });
            }
        }
        // Even an undecodable request is replayed as it was: the dispatcher rejects it
        // again, with the reason, if nothing changed.
        self.replayable = true;
        self.republish = Republish::Request { bytes, message_id, timestamp };
    }
}

/// `r-` and 12 hex digits of a UUIDv5 of the bytes: stable across reads.
fn hashed_id(bytes: &[u8]) -> String {
    let hash = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, bytes).simple().to_string();
    format!("r-{}", &hash[..12])
}

fn string_headers(table: &FieldTable) -> BTreeMap<String, String> {
    table
        .inner()
        .iter()
        .filter_map(|(name, value)| {
            let text = match value {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.to_string(),
                _ => return None,
            };
            Some((name.to_string(), text))
        })
        .collect()
}

fn integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

/// The latest `x-death` entry RabbitMQ added when it dead-lettered the message.
struct Death {
    reason: String,
    queue: String,
    time: Option<u64>,
}

fn first_death(table: &FieldTable) -> Option<Death> {
    let AMQPValue::FieldArray(deaths) = table.inner().get("x-death")? else { return None };
    let AMQPValue::FieldTable(death) = deaths.as_slice().first()? else { return None };
    let text = |name: &str| string_headers(death).remove(name).unwrap_or_default();
    let time = match death.inner().get("time") {
        Some(AMQPValue::Timestamp(t)) => Some(*t),
        _ => None,
    };
    Some(Death { reason: text("reason"), queue: text("queue"), time })
}

/// Which messages a command works on.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Any of these providers (empty: all).
    pub providers: Vec<String>,
    /// Any of these reason codes (empty: all).
    pub reasons: Vec<String>,
    /// Dead-lettered / rejected longer ago than this.
    pub older_than: Option<Duration>,
    /// … more recently than this.
    pub newer_than: Option<Duration>,
    /// Only the message with this id.
    pub id: Option<String>,
}

impl Filters {
    /// The filters of the command line.
    pub fn from_args(args: FilterArgs) -> Filters {
        Filters {
            providers: args.providers,
            reasons: args.reasons,
            older_than: args.older_than,
            newer_than: args.newer_than,
            id: None,
        }
    }

    /// Whether `entry` is chosen. An age filter skips messages whose age is unknown.
    pub fn matches(&self, entry: &Entry) -> bool {
        let provider_ok =
            self.providers.is_empty() || entry.provider.as_ref().is_some_and(|p| self.providers.contains(p));
        let reason_ok = self.reasons.is_empty() || self.reasons.contains(&entry.reason_code);
        let age = entry.age_seconds.map(Duration::from_secs);
        let older_ok = self.older_than.is_none_or(|min| age.is_some_and(|age| age >= min));
        let newer_ok = self.newer_than.is_none_or(|max| age.is_some_and(|age| age <= max));
        let id_ok = self.id.as_ref().is_none_or(|id| *id == entry.id);
        provider_ok && reason_ok && older_ok && newer_ok && id_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(provider: &str, reason: &str, age: Option<u64>) -> Entry {
        Entry {
            id: "m-1".into(),
            provider: Some(provider.into()),
            channel: None,
            reason_code: reason.into(),
            reason: None,
            at_ms: None,
            age_seconds: age,
            attempts: None,
            trace_id: None,
            replayable: true,
            redelivered: false,
            delivery_count: None,
            headers: BTreeMap::new(),
            body: serde_json::Value::Null,
            republish: Republish::Not,
        }
    }

    #[test]
    fn filters_choose_by_provider_reason_age_and_id() {
        let all = Filters::default();
        assert!(all.matches(&entry("a", "max_age", None)));
        let some = Filters {
            providers: vec!["a".into(), "b".into()],
            reasons: vec!["retries_exhausted".into()],
            older_than: Some(Duration::from_secs(60)),
            newer_than: Some(Duration::from_secs(3_600)),
            id: None,
        };
        assert!(some.matches(&entry("b", "retries_exhausted", Some(600))));
        assert!(!some.matches(&entry("c", "retries_exhausted", Some(600))), "provider");
        assert!(!some.matches(&entry("a", "max_age", Some(600))), "reason");
        assert!(!some.matches(&entry("a", "retries_exhausted", Some(30))), "too new");
        assert!(!some.matches(&entry("a", "retries_exhausted", Some(7_200))), "too old");
        assert!(!some.matches(&entry("a", "retries_exhausted", None)), "unknown age");
        let one = Filters { id: Some("m-2".into()), ..Filters::default() };
        assert!(!one.matches(&entry("a", "max_age", None)));
        assert_eq!(hashed_id(b"abc"), hashed_id(b"abc"));
        assert_ne!(hashed_id(b"abc"), hashed_id(b"abd"));
    }
}

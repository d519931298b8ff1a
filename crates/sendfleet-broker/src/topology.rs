//! Exchange and queue names and their declaration.
//!
//! ```text
//! <p>.requests  (fanout) ──► queue <p>.requests                       dispatcher consumes
//! <p>.jobs      (topic)  ──► queue <p>.jobs.<provider>  keys <provider>, *.<provider>          (normal lane)
//!                        ──► queue <p>.jobs.<provider>.high  key *.high.<provider>   (high lane)
//!                        ──► queue <p>.jobs.<provider>.bulk  key *.bulk.<provider>   (bulk lane)
//! <p>.retry     (topic)  ──► queue <p>.retry.<tier>     key  <tier>.#   (TTL, dead-letters to <p>.jobs)
//! <p>.events    (topic)  ──► queue <p>.events           key  #          kind.channel.provider (bounded, optional)
//! <p>.dead      (direct) ──► queue <p>.requests.rejected key rejected
//!                        ──► queue <p>.dead-letter       key dead-letter
//! ```
//! Every process declares the whole topology at start (declarations are idempotent),
//! so start order does not matter. A queue that already exists with other arguments
//! (bounds, queue type) is refused by the broker: [`BrokerError::QueueMismatch`] names
//! the config key that differs.

use lapin::{
    Channel, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use sendfleet_config::{BrokerConfig, EventsQueueConfig, QueueType};
use sendfleet_protocol::Priority;

use crate::BrokerError;

/// A retry tier: a queue whose messages wait `delay_ms`, then go back to the jobs exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryTier {
    /// Tier name, used in the queue name and routing key.
    pub name: &'static str,
    /// How long a message waits in the tier.
    pub delay_ms: u64,
}

/// The retry tiers, shortest first. A retry goes to the shortest tier whose delay is at
/// least the backoff delay (the last tier for anything longer).
pub const RETRY_TIERS: &[RetryTier] = &[
    RetryTier { name: "1s", delay_ms: 1_000 },
    RetryTier { name: "5s", delay_ms: 5_000 },
    RetryTier { name: "30s", delay_ms: 30_000 },
    RetryTier { name: "2m", delay_ms: 120_000 },
    RetryTier { name: "10m", delay_ms: 600_000 },
    RetryTier { name: "1h", delay_ms: 3_600_000 },
];

impl RetryTier {
    /// The tier for a wanted delay.
    pub fn for_delay_ms(delay_ms: u64) -> RetryTier {
        RETRY_TIERS.iter().copied().find(|tier| tier.delay_ms >= delay_ms).unwrap_or(RETRY_TIERS[RETRY_TIERS.len() - 1])
    }
}

/// Names of everything sendfleet declares, under one prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    queue_type: QueueType,
    quorum_replicas: u8,
    delivery_limit: u32,
    events: EventsQueueConfig,
}

/// The delivery limit of quorum queues without a dead-letter target (events, dead
/// letters, rejected requests): RabbitMQ 4.x would drop their messages after 20
/// deliveries; this many is never reached by a consumer that works at all.
const UNBOUNDED_DELIVERIES: i64 = 1_000_000;

const DEAD_LETTER_KEY: &str = "dead-letter";
const REJECTED_KEY: &str = "rejected";
/// AMQP reply code of a declaration that contradicts the existing object.
const PRECONDITION_FAILED: u16 = 406;

impl Topology {
    /// The topology of a broker config.
    pub fn new(config: &BrokerConfig) -> Topology {
        Topology {
            prefix: config.prefix.clone(),
            queue_type: config.queue_type,
            quorum_replicas: config.quorum_replicas,
            delivery_limit: config.delivery_limit,
            events: config.events_queue.clone(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Fanout exchange upstream publishes send requests to (any routing key).
    pub fn requests_exchange(&self) -> String {
        format!("{}.requests", self.prefix)
    }
    /// Queue the dispatcher consumes.
    pub fn requests_queue(&self) -> String {
        format!("{}.requests", self.prefix)
    }
    /// Queue of rejected requests (reason in header and body).
    pub fn rejected_queue(&self) -> String {
        format!("{}.requests.rejected", self.prefix)
    }
    /// Topic exchange of send jobs.
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.prefix)
    }
    /// A provider's job queue of the normal lane (the name it had before lanes).
    pub fn jobs_queue(&self, provider: &str) -> String {
        format!("{}.jobs.{provider}", self.prefix)
    }
    /// A provider's job queue of a lane: `jobs.<provider>` for `normal`,
    /// `jobs.<provider>.<lane>` for the others.
    pub fn lane_queue(&self, provider: &str, lane: Priority) -> String {
        match lane {
            Priority::Normal => self.jobs_queue(provider),
            lane => format!("{}.jobs.{provider}.{lane}", self.prefix),
        }
    }
    /// Routing key of a fresh job for a provider's lane. Normal jobs keep the one-word
    /// key `<provider>`; the other lanes use three words (`now.<lane>.<provider>`), which
    /// no binding of the normal lane (one or two words) can match.
    pub fn job_routing_key(provider: &str, lane: Priority) -> String {
        match lane {
            Priority::Normal => provider.to_owned(),
            lane => format!("now.{lane}.{provider}"),
        }
    }
    /// Topic exchange of retry tiers.
    pub fn retry_exchange(&self) -> String {
        format!("{}.retry", self.prefix)
    }
    /// A retry tier's queue.
    pub fn retry_queue(&self, tier: RetryTier) -> String {
        format!("{}.retry.{}", self.prefix, tier.name)
    }
    /// Routing key of a retry: the tier, then the lane (except `normal`), then the
    /// provider. After the TTL the message is dead-lettered with this key to the jobs
    /// exchange, where `*.<provider>` (normal) or `*.<lane>.<provider>` routes it back to
    /// the queue it came from.
    pub fn retry_routing_key(tier: RetryTier, provider: &str, lane: Priority) -> String {
        match lane {
            Priority::Normal => format!("{}.{provider}", tier.name),
            lane => format!("{}.{lane}.{provider}", tier.name),
        }
    }
    /// Topic exchange of events (`<kind>.<channel>.<provider>`).
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }
    /// The default events queue (bound to every event; declared only when
    /// `broker.events_queue.declare` is on).
    pub fn events_queue(&self) -> String {
        format!("{}.events", self.prefix)
    }
    /// Direct exchange of dead letters and rejections.
    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }
    /// Queue of dead-lettered jobs.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead-letter", self.prefix)
    }
    /// Routing key of dead-lettered jobs on the dead exchange.
    pub fn dead_letter_key() -> &'static str {
        DEAD_LETTER_KEY
    }
    /// Routing key of rejected requests on the dead exchange.
    pub fn rejected_key() -> &'static str {
        REJECTED_KEY
    }

    /// Every queue name (for tooling and test clean-up).
    pub fn all_queues<'a>(&self, providers: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut queues =
            vec![self.requests_queue(), self.rejected_queue(), self.events_queue(), self.dead_letter_queue()];
        for provider in providers {
            queues.extend(Priority::ALL.map(|lane| self.lane_queue(provider, lane)));
        }
        queues.extend(RETRY_TIERS.iter().map(|t| self.retry_queue(*t)));
        queues
    }

    /// Every exchange name.
    pub fn all_exchanges(&self) -> Vec<String> {
        vec![
            self.requests_exchange(),
            self.jobs_exchange(),
            self.retry_exchange(),
            self.events_exchange(),
            self.dead_exchange(),
        ]
    }

    /// Declares every exchange, queue and binding for these providers.
    pub async fn declare(&self, channel: &Channel, providers: &[String]) -> Result<(), BrokerError> {
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        for (name, kind) in [
            (self.requests_exchange(), ExchangeKind::Fanout),
            (self.jobs_exchange(), ExchangeKind::Topic),
            (self.retry_exchange(), ExchangeKind::Topic),
            (self.events_exchange(), ExchangeKind::Topic),
            (self.dead_exchange(), ExchangeKind::Direct),
        ] {
            channel.exchange_declare(name.into(), kind, durable, FieldTable::default()).await?;
        }

        let dead = self.dead_exchange();
        let plain = FieldTable::default;
        self.queue(channel, &self.requests_queue(), Some((&dead, REJECTED_KEY)), plain()).await?;
        self.bind(channel, &self.requests_queue(), &self.requests_exchange(), "").await?;
        self.queue(channel, &self.rejected_queue(), None, plain()).await?;
        self.bind(channel, &self.rejected_queue(), &dead, REJECTED_KEY).await?;
        self.queue(channel, &self.dead_letter_queue(), None, plain()).await?;
        self.bind(channel, &self.dead_letter_queue(), &dead, DEAD_LETTER_KEY).await?;
        if self.events.declare {
            self.queue(channel, &self.events_queue(), None, self.events_queue_arguments()).await?;
            self.bind(channel, &self.events_queue(), &self.events_exchange(), "#").await?;
        }

        for provider in providers {
            let provider = provider.as_str();
            for lane in Priority::ALL {
                let queue = self.lane_queue(provider, lane);
                self.queue(channel, &queue, Some((&dead, DEAD_LETTER_KEY)), plain()).await?;
                if lane == Priority::Normal {
                    self.bind(channel, &queue, &self.jobs_exchange(), provider).await?;
                    self.bind(channel, &queue, &self.jobs_exchange(), &format!("*.{provider}")).await?;
                } else {
                    self.bind(channel, &queue, &self.jobs_exchange(), &format!("*.{lane}.{provider}")).await?;
                }
            }
        }
        let jobs = self.jobs_exchange();
        for tier in RETRY_TIERS {
            let queue = self.retry_queue(*tier);
            // Dead-lettering keeps the routing key (`<tier>.<provider>`), which the jobs
            // exchange routes back to the provider's queue.
            let mut ttl = FieldTable::default();
            ttl.insert("x-message-ttl".into(), AMQPValue::LongLongInt(tier.delay_ms as i64));
            self.queue(channel, &queue, Some((&jobs, "")), ttl).await?;
            // `#`: the lanes' keys have three words (`<tier>.<lane>.<provider>`).
            self.bind(channel, &queue, &self.retry_exchange(), &format!("{}.#", tier.name)).await?;
        }
        Ok(())
    }

    /// The bounds of the events queue as queue arguments (a bound of 0 is left out).
    fn events_queue_arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        let events = &self.events;
        let bounded =
            |value: u64| (value > 0).then(|| AMQPValue::LongLongInt(i64::try_from(value).unwrap_or(i64::MAX)));
        if let Some(max) = bounded(events.max_length) {
            args.insert("x-max-length".into(), max);
        }
        if let Some(max) = bounded(events.max_length_bytes) {
            args.insert("x-max-length-bytes".into(), max);
        }
        if let Some(ttl) = bounded(events.message_ttl_seconds.saturating_mul(1_000)) {
            args.insert("x-message-ttl".into(), ttl);
        }
        if events.max_length > 0 || events.max_length_bytes > 0 {
            args.insert("x-overflow".into(), long_string(events.overflow.as_str()));
        }
        args
    }

    /// Declares a durable queue of the configured type with `args` added.
    async fn queue(
        &self,
        channel: &Channel,
        name: &str,
        dead_letter: Option<(&str, &str)>,
        mut args: FieldTable,
    ) -> Result<(), BrokerError> {
        let queue_type = match self.queue_type {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        };
        args.insert("x-queue-type".into(), long_string(queue_type));
        if let Some((exchange, key)) = dead_letter {
            args.insert("x-dead-letter-exchange".into(), long_string(exchange));
            if !key.is_empty() {
                args.insert("x-dead-letter-routing-key".into(), long_string(key));
            }
            if self.queue_type == QueueType::Quorum {
                // At-least-once dead-lettering: a quorum queue keeps the message until the
                // dead-letter target confirms it.
                args.insert("x-dead-letter-strategy".into(), long_string("at-least-once"));
                args.insert("x-overflow".into(), long_string("reject-publish"));
            }
        }
        if self.queue_type == QueueType::Quorum {
            args.insert("x-quorum-initial-group-size".into(), AMQPValue::LongLongInt(i64::from(self.quorum_replicas)));
            // Explicit on every quorum queue, so 3.10 (no limit by default) and 4.x (20 by
            // default, dropping without a dead-letter target) behave alike.
            let limit = if dead_letter.is_some() { i64::from(self.delivery_limit) } else { UNBOUNDED_DELIVERIES };
            args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(limit));
        }
        let options = QueueDeclareOptions { durable: true, ..Default::default() };
        match channel.queue_declare(ShortString::from(name), options, args).await {
            Ok(_) => Ok(()),
            Err(err) => Err(self.mismatch(name, &err).unwrap_or(BrokerError::Amqp(err))),
        }
    }

    /// A declaration refused because the queue exists with other arguments, as the
    /// config key that sets the argument in question.
    fn mismatch(&self, queue: &str, err: &lapin::Error) -> Option<BrokerError> {
        let lapin::ErrorKind::ProtocolError(amqp) = err.kind() else { return None };
        if amqp.get_id() != PRECONDITION_FAILED {
            return None;
        }
        let broker_message = amqp.get_message().as_str().to_owned();
        // "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue …"
        let argument = broker_message.split("inequivalent arg '").nth(1).and_then(|rest| rest.split('\'').next());
        let events = queue == self.events_queue();
        let config_key = match argument {
            Some("x-queue-type") => Some("broker.queue_type"),
            Some("x-max-length") if events => Some("broker.events_queue.max_length"),
            Some("x-max-length-bytes") if events => Some("broker.events_queue.max_length_bytes"),
            Some("x-message-ttl") if events => Some("broker.events_queue.message_ttl_seconds"),
            Some("x-overflow") if events => Some("broker.events_queue.overflow"),
            Some("x-overflow") => Some("broker.queue_type"),
            Some("x-quorum-initial-group-size") => Some("broker.quorum_replicas"),
            Some("x-delivery-limit") => Some("broker.delivery_limit"),
            _ => None,
        };
        Some(BrokerError::QueueMismatch { queue: queue.to_owned(), config_key, broker_message })
    }

    async fn bind(&self, channel: &Channel, queue: &str, exchange: &str, key: &str) -> Result<(), BrokerError> {
        channel
            .queue_bind(queue.into(), exchange.into(), key.into(), QueueBindOptions::default(), FieldTable::default())
            .await?;
        Ok(())
    }
}

pub(crate) fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_tier_is_the_shortest_that_covers_the_delay() {
        assert_eq!(RetryTier::for_delay_ms(0).name, "1s");
        assert_eq!(RetryTier::for_delay_ms(1_000).name, "1s");
        assert_eq!(RetryTier::for_delay_ms(1_001).name, "5s");
        assert_eq!(RetryTier::for_delay_ms(45_000).name, "2m");
        assert_eq!(RetryTier::for_delay_ms(10 * 3_600_000).name, "1h");
    }

    #[test]
    fn the_events_queue_arguments_are_its_configured_bounds() {
        let arguments = |events: EventsQueueConfig| -> Vec<(String, AMQPValue)> {
            let topology = Topology::new(&BrokerConfig { events_queue: events, ..Default::default() });
            topology.events_queue_arguments().inner().iter().map(|(k, v)| (k.as_str().to_owned(), v.clone())).collect()
        };
        let bounded = arguments(EventsQueueConfig::default());
        assert_eq!(
            bounded,
            [
                ("x-max-length".to_owned(), AMQPValue::LongLongInt(250_000)),
                ("x-max-length-bytes".to_owned(), AMQPValue::LongLongInt(128 << 20)),
                ("x-message-ttl".to_owned(), AMQPValue::LongLongInt(86_400_000)),
                ("x-overflow".to_owned(), long_string("drop-head")),
            ]
        );
        let unbounded =
            EventsQueueConfig { max_length: 0, max_length_bytes: 0, message_ttl_seconds: 0, ..Default::default() };
        assert!(arguments(unbounded).is_empty(), "0 leaves a bound out, and no bound means no overflow policy");
    }

    #[test]
    fn names_live_under_the_prefix() {
        let topology = Topology::new(&BrokerConfig { prefix: "px".into(), ..Default::default() });
        assert_eq!(topology.jobs_queue("ib"), "px.jobs.ib");
        assert_eq!(topology.lane_queue("ib", Priority::Normal), "px.jobs.ib");
        assert_eq!(topology.lane_queue("ib", Priority::High), "px.jobs.ib.high");
        assert_eq!(Topology::job_routing_key("ib", Priority::Normal), "ib");
        assert_eq!(Topology::job_routing_key("ib", Priority::Bulk), "now.bulk.ib");
        assert_eq!(Topology::retry_routing_key(RETRY_TIERS[0], "ib", Priority::High), "1s.high.ib");
        assert_eq!(Topology::retry_routing_key(RETRY_TIERS[1], "ib", Priority::Normal), "5s.ib");
        assert!(topology.all_queues(["ib"]).iter().all(|q| q.starts_with("px.")));
        assert!(topology.all_exchanges().iter().all(|q| q.starts_with("px.")));
    }
}

//! The events queue's bounds on the real RabbitMQ (`[broker.events_queue]`): what each
//! bound does, that the queue can be left undeclared, and that a process whose bounds
//! differ from the existing queue's stops with an error naming the config key.

mod common;

use std::time::Duration;

use futures_util::future::BoxFuture;
use sendfleet_broker::{
    BrokerError, Outgoing, Publisher, ServiceOptions, Session, Topology,
    lapin::{
        Channel, Connection,
        options::{BasicGetOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions},
        types::FieldTable,
    },
};
use sendfleet_config::{BrokerConfig, EventsQueueConfig, Overflow, QueueType, RedactedUrl};
use sendfleet_telemetry::Readiness;
use tokio_util::sync::CancellationToken;

/// A unique prefix on the test broker, with the events queue configured as given.
struct Fleet {
    broker: BrokerConfig,
    connection: Connection,
    channel: Channel,
}

impl Fleet {
    async fn new(what: &str, events_queue: EventsQueueConfig) -> Fleet {
        let broker = BrokerConfig {
            url: RedactedUrl::new(common::amqp_url()).into(),
            prefix: format!("sft-{what}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            events_queue,
            ..BrokerConfig::default()
        };
        let connection = common::connect().await;
        let channel = connection.create_channel().await.expect("channel");
        Fleet { broker, connection, channel }
    }

    fn topology(&self) -> Topology {
        Topology::new(&self.broker)
    }

    /// The same prefix with other events queue settings (another process's config).
    fn with_events(&self, events_queue: EventsQueueConfig) -> BrokerConfig {
        BrokerConfig { events_queue, ..self.broker.clone() }
    }

    async fn declare(&self) {
        self.topology().declare(&self.channel, &[]).await.expect("declare");
    }

    /// Publishes `n` events numbered from 0 with confirms; the outcome of each (a nack
    /// at once, not tried again).
    async fn publish_events(&self, n: usize) -> Vec<Result<(), BrokerError>> {
        let publisher =
            Publisher::open(&self.connection).await.expect("publisher").retrying_nacks_for(std::time::Duration::ZERO);
        let exchange = self.topology().events_exchange();
        let mut outcomes = Vec::new();
        for i in 0..n {
            let body = format!("event-{i}");
            let message = Outgoing::new(&exchange, "accepted.sms.p", body.as_bytes()).optional();
            outcomes.push(publisher.publish(message).await);
        }
        outcomes
    }

    /// The events queue's depth, `None` when it does not exist.
    async fn events_depth(&self) -> Option<u32> {
        let probe = self.connection.create_channel().await.expect("channel");
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        let queue = self.topology().events_queue();
        let depth = probe.queue_declare(queue.as_str().into(), passive, FieldTable::default()).await.ok();
        drop(probe.close(200, "".into()).await);
        depth.map(|q| q.message_count())
    }

    async fn first_event(&self) -> Option<String> {
        let queue = self.topology().events_queue();
        let got = self.channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.expect("get");
        got.map(|m| String::from_utf8_lossy(&m.delivery.data).into_owned())
    }

    async fn cleanup(self) {
        let topology = self.topology();
        let channel = self.connection.create_channel().await.expect("channel");
        for queue in topology.all_queues([]) {
            drop(channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await);
        }
        for exchange in topology.all_exchanges() {
            drop(channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await);
        }
        drop(self.connection.close(200, "".into()).await);
    }
}

fn bounded(max_length: u64, overflow: Overflow) -> EventsQueueConfig {
    EventsQueueConfig { max_length, overflow, ..EventsQueueConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_events_queue_drops_its_oldest_events_with_drop_head() {
    let fleet = Fleet::new("ev-drop", bounded(3, Overflow::DropHead)).await;
    fleet.declare().await;
    assert!(fleet.publish_events(5).await.iter().all(Result::is_ok), "drop-head never refuses a publish");
    assert_eq!(fleet.events_depth().await, Some(3), "the queue holds max_length events");
    assert_eq!(fleet.first_event().await.as_deref(), Some("event-2"), "the two oldest were dropped");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_events_queue_refuses_new_events_with_reject_publish() {
    let fleet = Fleet::new("ev-reject", bounded(2, Overflow::RejectPublish)).await;
    fleet.declare().await;
    let outcomes = fleet.publish_events(3).await;
    assert!(outcomes[0].is_ok() && outcomes[1].is_ok(), "{outcomes:?}");
    assert!(matches!(outcomes[2], Err(BrokerError::Nacked { .. })), "the third is nacked: {:?}", outcomes[2]);
    assert_eq!(fleet.first_event().await.as_deref(), Some("event-0"), "nothing already queued was dropped");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_the_ttl_are_dropped() {
    let events = EventsQueueConfig { message_ttl_seconds: 1, ..EventsQueueConfig::default() };
    let fleet = Fleet::new("ev-ttl", events).await;
    fleet.declare().await;
    assert!(fleet.publish_events(2).await.iter().all(Result::is_ok));
    assert_eq!(fleet.events_depth().await, Some(2));
    let mut depth = Some(2);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        depth = fleet.events_depth().await;
        if depth == Some(0) {
            break;
        }
    }
    assert_eq!(depth, Some(0), "expired within 5 s of a 1 s TTL");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_events_queue_is_declared_when_declare_is_off() {
    let fleet = Fleet::new("ev-none", EventsQueueConfig { declare: false, ..EventsQueueConfig::default() }).await;
    fleet.declare().await;
    assert_eq!(fleet.events_depth().await, None, "no <prefix>.events queue");
    // The exchange is there: events go to whatever queues consumers bound themselves.
    assert!(fleet.publish_events(1).await[0].is_ok(), "an unrouted optional event is not an error");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_events_queue_bounds_than_the_existing_queue_name_the_config_key() {
    let fleet = Fleet::new("ev-mismatch", bounded(100, Overflow::DropHead)).await;
    fleet.declare().await;
    let cases = [
        (bounded(200, Overflow::DropHead), "broker.events_queue.max_length"),
        (bounded(100, Overflow::RejectPublish), "broker.events_queue.overflow"),
        (
            EventsQueueConfig { message_ttl_seconds: 60, ..bounded(100, Overflow::DropHead) },
            "broker.events_queue.message_ttl_seconds",
        ),
    ];
    for (events, key) in cases {
        let other = Topology::new(&fleet.with_events(events));
        // A refused declaration closes the channel: one per attempt.
        let channel = fleet.connection.create_channel().await.expect("channel");
        let err = other.declare(&channel, &[]).await.expect_err("the broker refuses other arguments");
        let BrokerError::QueueMismatch { queue, config_key, .. } = &err else { panic!("{err:?}") };
        assert_eq!(queue, &fleet.topology().events_queue());
        assert_eq!(*config_key, Some(key), "{err}");
        let message = err.to_string();
        assert!(message.contains(key) && message.contains(queue.as_str()), "{message}");
        assert!(err.is_fatal(), "retrying cannot help");
    }
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_queue_type_than_the_existing_queues_names_broker_queue_type() {
    let fleet = Fleet::new("qt-mismatch", EventsQueueConfig::default()).await;
    fleet.declare().await;
    let quorum = Topology::new(&BrokerConfig { queue_type: QueueType::Quorum, ..fleet.broker.clone() });
    let channel = fleet.connection.create_channel().await.expect("channel");
    let err = quorum.declare(&channel, &[]).await.expect_err("classic queues exist");
    assert!(matches!(&err, BrokerError::QueueMismatch { config_key: Some("broker.queue_type"), .. }), "{err:?}");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_stops_on_a_queue_mismatch_instead_of_reconnecting_forever() {
    let fleet = Fleet::new("ev-stop", bounded(100, Overflow::DropHead)).await;
    fleet.declare().await;
    let broker = fleet.with_events(bounded(50, Overflow::DropHead));
    let shutdown = CancellationToken::new();
    let readiness = Readiness::default();
    let options = ServiceOptions {
        broker: &broker,
        service: "topology-test",
        readiness: readiness.clone(),
        shutdown: shutdown.clone(),
        grace: Duration::from_secs(1),
    };
    let setup = |connection: Connection| -> BoxFuture<'static, Result<Session, BrokerError>> {
        let topology = Topology::new(&broker);
        Box::pin(async move {
            let channel = connection.create_channel().await?;
            topology.declare(&channel, &[]).await?;
            Ok(Session { connection, consumers: Vec::new(), publishers: Vec::new() })
        })
    };
    let ended = tokio::time::timeout(Duration::from_secs(20), sendfleet_broker::run_sessions(options, setup)).await;
    shutdown.cancel();
    let result = ended.expect("run_sessions returned instead of retrying");
    let err = result.expect_err("the mismatch is returned");
    assert!(err.to_string().contains("broker.events_queue.max_length"), "{err}");
    assert!(!readiness.is_ready());
    fleet.cleanup().await;
}

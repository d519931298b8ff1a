//! Collecting events from a namespace's events queue.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use parking_lot::Mutex;
use sendfleet_broker::lapin::{
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions},
    types::FieldTable,
};
use sendfleet_protocol::{Event, EventKind, decode};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::namespace::connect_any;

/// Every event published in a namespace, in arrival order. An event redelivered after a
/// lost connection (acked too late) appears twice; it keeps its `event_id`.
#[derive(Clone)]
pub struct EventCollector {
    events: Arc<Mutex<Vec<Event>>>,
    undecodable: Arc<Mutex<u64>>,
    stop: CancellationToken,
    _stop_on_drop: Arc<DropGuard>,
}

impl EventCollector {
    /// Starts consuming `queue` (the namespace's events queue, which must exist) on the
    /// test broker.
    pub async fn start(queue: &str) -> EventCollector {
        EventCollector::start_on(&[crate::amqp_url()], queue).await
    }

    /// Starts consuming `queue` on the first of the broker's nodes `urls` that answers.
    /// When the connection is lost (a node stopped), it consumes again from the next
    /// node, until the last clone of the collector is dropped.
    pub async fn start_on(urls: &[String], queue: &str) -> EventCollector {
        let events = Arc::new(Mutex::new(Vec::new()));
        let undecodable = Arc::new(Mutex::new(0));
        let stop = CancellationToken::new();
        let consumer = Consumer {
            urls: urls.to_vec(),
            queue: queue.to_owned(),
            events: events.clone(),
            undecodable: undecodable.clone(),
        };
        let first = consumer.subscribe(0).await.expect("consume events");
        tokio::spawn(consumer.run(first, stop.clone()));
        EventCollector { events, undecodable, stop: stop.clone(), _stop_on_drop: Arc::new(stop.drop_guard()) }
    }

    /// Stops consuming (before the queue is deleted: it would try to consume it again).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().clone()
    }

    /// How many events of `kind` so far.
    pub fn count(&self, kind: EventKind) -> usize {
        self.events.lock().iter().filter(|e| e.kind == kind).count()
    }

    /// Messages on the events queue that were not events.
    pub fn undecodable(&self) -> u64 {
        *self.undecodable.lock()
    }

    /// Waits (bounded) until there are at least `n` events of `kind`; returns the count.
    pub async fn wait_for(&self, kind: EventKind, n: usize, timeout: Duration) -> usize {
        crate::wait_until(timeout, || self.count(kind) >= n).await;
        self.count(kind)
    }
}

/// The consuming side of a collector.
struct Consumer {
    urls: Vec<String>,
    queue: String,
    events: Arc<Mutex<Vec<Event>>>,
    undecodable: Arc<Mutex<u64>>,
}

/// How long a subscription may receive nothing while events wait before it is replaced
/// (and how often the queue is asked while nothing arrives).
const STALL_AFTER: Duration = Duration::from_secs(5);

type Subscription = (sendfleet_broker::lapin::Connection, sendfleet_broker::lapin::Consumer);

impl Consumer {
    /// Connects (trying the nodes from `first` on) and starts consuming. Bounded: a node
    /// that is shutting down or booting may accept the connection and never answer.
    async fn subscribe(&self, first: usize) -> Option<Subscription> {
        let mut order = self.urls.clone();
        order.rotate_left(first % self.urls.len().max(1));
        let subscribing = async {
            let connection = connect_any(&order).await?;
            let channel = connection.create_channel().await.ok()?;
            channel.basic_qos(1_000, BasicQosOptions::default()).await.ok()?;
            let consumer = channel
                .basic_consume(
                    self.queue.as_str().into(),
                    "test-collector".into(),
                    BasicConsumeOptions::default(),
                    Default::default(),
                )
                .await
                .ok()?;
            Some((connection, consumer))
        };
        tokio::time::timeout(Duration::from_secs(10), subscribing).await.ok().flatten()
    }

    /// Events ready in the queue, as the node `connection` leads to sees it (0 when it
    /// cannot say).
    async fn waiting(&self, connection: &sendfleet_broker::lapin::Connection) -> u32 {
        let probe = async {
            let channel = connection.create_channel().await.ok()?;
            let passive = QueueDeclareOptions { passive: true, ..Default::default() };
            let queue = channel.queue_declare(self.queue.as_str().into(), passive, FieldTable::default()).await.ok();
            drop(channel.close(200, "".into()).await);
            queue.map(|q| q.message_count())
        };
        tokio::time::timeout(Duration::from_secs(2), probe).await.ok().flatten().unwrap_or(0)
    }

    async fn run(self, first: Subscription, stop: CancellationToken) {
        let mut subscription = Some(first);
        let mut attempt = 0;
        while !stop.is_cancelled() {
            let Some((connection, mut consumer)) = subscription.take() else {
                attempt += 1;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                subscription = self.subscribe(attempt).await;
                continue;
            };
            let mut check = tokio::time::interval(Duration::from_millis(500));
            // Since the last delivery, or the last probe that found nothing waiting.
            let mut silent_since = tokio::time::Instant::now();
            loop {
                let delivery = tokio::select! {
                    () = stop.cancelled() => break,
                    next = consumer.next() => next,
                    // A connection closed by the node (a graceful stop) may leave the
                    // consumer's stream open and silent.
                    _ = check.tick() => {
                        if !connection.status().connected() { break }
                        if silent_since.elapsed() <= STALL_AFTER { continue }
                        if self.waiting(&connection).await == 0 {
                            silent_since = tokio::time::Instant::now();
                            continue;
                        }
                        // A safeguard like the services' stall watch: whatever left
                        // this subscription silent, a new one reads the events.
                        tracing::warn!(queue = %self.queue, "events wait but none arrive; consuming again");
                        break;
                    }
                };
                let Some(Ok(delivery)) = delivery else { break };
                silent_since = tokio::time::Instant::now();
                match decode::<Event>(&delivery.data) {
                    Ok(event) => self.events.lock().push(event),
                    Err(_) => *self.undecodable.lock() += 1,
                }
                // Bounded: an ack sent as the node dies may never be answered (lapin
                // resolves it when the frame is written), the likely way the collector
                // once stopped for good after a kill -9 (15,076 events left queued).
                let acked =
                    tokio::time::timeout(Duration::from_secs(2), delivery.acker.ack(BasicAckOptions::default()));
                if !matches!(acked.await, Ok(Ok(true))) {
                    break;
                }
            }
            drop(tokio::time::timeout(Duration::from_secs(2), connection.close(200, "".into())).await);
        }
    }
}

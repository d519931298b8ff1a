//! Collecting events from a namespace's events queue.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use parking_lot::Mutex;
use sendfleet_broker::lapin::{
    Connection, ConnectionProperties,
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
};
use sendfleet_protocol::{Event, EventKind, decode};

/// Every event published in a namespace, in arrival order.
#[derive(Clone)]
pub struct EventCollector {
    events: Arc<Mutex<Vec<Event>>>,
    undecodable: Arc<Mutex<u64>>,
    _connection: Arc<Connection>,
}

impl EventCollector {
    /// Starts consuming `queue` (the namespace's events queue, which must exist).
    pub async fn start(queue: &str) -> EventCollector {
        let connection =
            Connection::connect(&crate::amqp_url(), ConnectionProperties::default()).await.expect("connect for events");
        let channel = connection.create_channel().await.expect("channel");
        channel.basic_qos(1_000, BasicQosOptions::default()).await.expect("qos");
        let mut consumer = channel
            .basic_consume(queue.into(), "test-collector".into(), BasicConsumeOptions::default(), Default::default())
            .await
            .expect("consume events");
        let events = Arc::new(Mutex::new(Vec::new()));
        let undecodable = Arc::new(Mutex::new(0));
        let (sink, bad) = (events.clone(), undecodable.clone());
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                match decode::<Event>(&delivery.data) {
                    Ok(event) => sink.lock().push(event),
                    Err(_) => *bad.lock() += 1,
                }
                drop(delivery.acker.ack(BasicAckOptions::default()).await);
            }
        });
        EventCollector { events, undecodable, _connection: Arc::new(connection) }
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

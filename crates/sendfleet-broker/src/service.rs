//! The life of a consuming service: connect, set up, consume; on connection loss start
//! over with backoff; on shutdown stop consuming and drain in-flight work.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{StreamExt, future::BoxFuture};
use lapin::{
    Connection,
    options::{BasicCancelOptions, QueueDeclareOptions},
    types::FieldTable,
};
use sendfleet_config::BrokerConfig;
use sendfleet_telemetry::Readiness;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{AckBatcher, BrokerError, Inbound, Publisher, publisher::close_channel};

/// Handles one delivery; must settle it (ack, or republish then ack, or requeue).
pub type Handler = Arc<dyn Fn(Inbound) -> BoxFuture<'static, ()> + Send + Sync>;

/// A queue to consume during a session.
pub struct ConsumerSpec {
    /// Queue name.
    pub queue: String,
    /// Unacked messages at most (the bound on in-flight work).
    pub prefetch: u16,
    /// Called for each delivery, in its own task.
    pub handler: Handler,
}

/// What [`run_sessions`]' set-up gives a session to run: its connection, the queues to
/// consume, and the publishers it opened. On shutdown the consumers' channels and the
/// publishers are closed before the connection, so no channel is still closing when
/// the connection goes (lapin logs that as a connection ERROR).
pub struct Session {
    /// The connection.
    pub connection: Connection,
    /// Queues to consume.
    pub consumers: Vec<ConsumerSpec>,
    /// Publishers opened on `connection`.
    pub publishers: Vec<Publisher>,
}

/// How a service runs its sessions.
pub struct ServiceOptions<'a> {
    /// Broker config.
    pub broker: &'a BrokerConfig,
    /// Service name (connection name, consumer tags, logs).
    pub service: &'a str,
    /// Set while consuming.
    pub readiness: Readiness,
    /// Stops the service.
    pub shutdown: CancellationToken,
    /// How long in-flight work may take after shutdown.
    pub grace: Duration,
}

/// Runs sessions until shutdown. `setup` is called on every new connection (declare
/// topology, open publishers) and returns the [`Session`] to run. Returns an error only
/// when reconnecting cannot help ([`BrokerError::is_fatal`], e.g. a queue declared with
/// other arguments): the service must stop.
pub async fn run_sessions<F, Fut>(options: ServiceOptions<'_>, setup: F) -> Result<(), BrokerError>
where
    F: Fn(Connection) -> Fut,
    Fut: Future<Output = Result<Session, BrokerError>>,
{
    // Exported from the start (at 0), so dashboards and alerts see the series.
    metrics::counter!(sendfleet_telemetry::metrics::BROKER_SESSION_STALLS_TOTAL, "service" => options.service.to_owned())
        .increment(0);
    let mut policy = crate::Reconnect::new();
    while !options.shutdown.is_cancelled() {
        let started = tokio::time::Instant::now();
        match session(&options, &setup).await {
            Ok(()) => break,
            Err(err) if err.is_fatal() => {
                options.readiness.set(false);
                tracing::error!(service = options.service, error = %err, "cannot run against this broker; stopping");
                return Err(err);
            }
            Err(err) => {
                options.readiness.set(false);
                // A session that ran a while was a working connection: start over.
                if started.elapsed() > Duration::from_secs(30) {
                    policy.reset();
                }
                tracing::warn!(service = options.service, error = %err, "broker session ended; reconnecting");
            }
        }
        if !policy.wait(&options.shutdown).await {
            break;
        }
    }
    options.readiness.set(false);
    Ok(())
}

async fn session<F, Fut>(options: &ServiceOptions<'_>, setup: &F) -> Result<(), BrokerError>
where
    F: Fn(Connection) -> Fut,
    Fut: Future<Output = Result<Session, BrokerError>>,
{
    let connection = crate::connect(options.broker, options.service, &options.shutdown).await?;
    let Session { connection, consumers: specs, publishers } = setup(connection).await?;
    let tracker = TaskTracker::new();
    let lost = CancellationToken::new();
    // Handed to every delivery: cancelled when the session's connection is gone (or
    // about to be closed), so tasks still waiting to send stop instead of sending jobs
    // the broker redelivers elsewhere.
    let session = CancellationToken::new();
    let mut consumers = Vec::new();
    let mut activities = Vec::new();
    for spec in specs {
        let channel = connection.create_channel().await?;
        let tag = format!("{}-{}-{}", options.service, std::process::id(), spec.queue);
        let consumer = crate::consume(&channel, &spec.queue, spec.prefetch, &tag).await?;
        let acks = AckBatcher::start(channel.clone());
        consumers.push((channel, tag, acks.clone()));
        let activity = Arc::new(Activity::new(spec.queue.clone(), spec.prefetch));
        activities.push(activity.clone());
        let looping = ConsumeLoop { handler: spec.handler, acks, tracker: tracker.clone(), activity };
        tokio::spawn(looping.run(consumer, lost.clone(), session.clone()));
    }
    let probe = connection.create_channel().await?;
    let watch = StallWatch { probe, activities, publishers: publishers.clone(), service: options.service.to_owned() };
    tokio::spawn(watch.run(lost.clone(), session.clone()));
    options.readiness.set(true);
    tracing::info!(service = options.service, queues = consumers.len(), "consuming");

    tokio::select! {
        () = options.shutdown.cancelled() => {}
        () = lost.cancelled() => {
            session.cancel();
            options.readiness.set(false);
            // Unacked messages return to their queues when the connection closes; tasks
            // still running find their acks failing and end.
            drop(connection.close(320, "consumer lost".into()).await);
            return Err(BrokerError::ConnectionLost);
        }
    }
    options.readiness.set(false);
    for (channel, tag, _) in &consumers {
        drop(channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await);
    }
    tracker.close();
    let in_flight = tracker.len();
    if tokio::time::timeout(options.grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            service = options.service,
            in_flight = tracker.len(),
            "grace period over; unfinished messages will be redelivered"
        );
    } else {
        tracing::info!(service = options.service, drained = in_flight, "in-flight work finished");
    }
    for (_, _, acks) in &consumers {
        drop(acks.flush(Duration::ZERO).await);
    }
    session.cancel();
    futures_util::future::join_all(consumers.iter().map(|(channel, _, _)| close_channel(channel))).await;
    futures_util::future::join_all(publishers.iter().map(Publisher::close)).await;
    drop(connection.close(200, "shutdown".into()).await);
    Ok(())
}

/// What a consumer has been doing, for the stall watch.
struct Activity {
    queue: String,
    prefetch: usize,
    /// Deliveries whose handler has not finished.
    in_flight: AtomicUsize,
    /// When the consumer started: the origin of `last_delivery_ms`.
    started: Instant,
    /// When the last delivery arrived, ms after `started` (an atomic: it is written for
    /// every delivery).
    last_delivery_ms: AtomicU64,
}

impl Activity {
    fn new(queue: String, prefetch: u16) -> Activity {
        Activity {
            queue,
            prefetch: usize::from(prefetch),
            in_flight: AtomicUsize::new(0),
            started: Instant::now(),
            last_delivery_ms: AtomicU64::new(0),
        }
    }

    /// Records a delivery that arrived now.
    fn delivered(&self) {
        let since_start = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_delivery_ms.store(since_start, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether the consumer has room for more and received nothing for [`STALL_AFTER`]:
    /// worth asking the broker whether messages wait.
    fn is_idle_with_room(&self, now: Instant) -> bool {
        let last = self.started + Duration::from_millis(self.last_delivery_ms.load(Ordering::Relaxed));
        self.in_flight.load(Ordering::Acquire) < self.prefetch && now.saturating_duration_since(last) > STALL_AFTER
    }

    /// Whether this consumer looks stalled, given the messages ready in its queue: it
    /// has room for more, messages wait, and none arrived for [`STALL_AFTER`].
    fn is_stalled(&self, ready: u32, now: Instant) -> bool {
        ready > 0 && self.is_idle_with_room(now)
    }
}

/// How long a consumer with room may receive nothing while its queue holds ready
/// messages before the session starts over. RabbitMQ 3.10 left a consumer subscribed and
/// silent once in the cluster tests after the node leading its quorum queue was killed
/// (1,827 jobs waiting, no error on the connection); a new session consumes them.
pub const STALL_AFTER: Duration = Duration::from_secs(15);

/// How often the stall watch looks.
const STALL_CHECK: Duration = Duration::from_secs(5);

/// What a session's stall watch looks at.
struct StallWatch {
    probe: lapin::Channel,
    activities: Vec<Arc<Activity>>,
    publishers: Vec<Publisher>,
    service: String,
}

impl StallWatch {
    /// Ends the session (as a lost connection would) when one of its consumers looks
    /// stalled, or when the broker kept nacking one of its publishers' messages for a
    /// whole retry window; a probe that cannot get an answer proves nothing and is
    /// skipped.
    async fn run(self, lost: CancellationToken, session: CancellationToken) {
        loop {
            tokio::select! {
                () = session.cancelled() => break,
                () = lost.cancelled() => break,
                () = tokio::time::sleep(STALL_CHECK) => {}
            }
            if let Some(why) = self.stalled().await {
                tracing::warn!(service = self.service, "{why}; starting a new session");
                metrics::counter!(sendfleet_telemetry::metrics::BROKER_SESSION_STALLS_TOTAL, "service" => self.service.clone())
                    .increment(1);
                lost.cancel();
                break;
            }
        }
        if self.probe.status().connected() {
            close_channel(&self.probe).await;
        }
    }

    /// Why the session looks stalled, if it does.
    async fn stalled(&self) -> Option<String> {
        if self.publishers.iter().any(Publisher::refused_throughout_a_window) {
            return Some(format!(
                "the broker nacked a publish for {} s on end",
                crate::publisher::NACK_RETRY_WINDOW.as_secs()
            ));
        }
        let now = Instant::now();
        for activity in &self.activities {
            if !activity.is_idle_with_room(now) {
                continue;
            }
            let Some(ready) = ready_messages(&self.probe, &activity.queue).await else { continue };
            if activity.is_stalled(ready, now) {
                return Some(format!(
                    "consumer of {} received nothing for {} s while {ready} messages wait",
                    activity.queue,
                    STALL_AFTER.as_secs()
                ));
            }
        }
        None
    }
}

/// Messages ready in `queue` (a passive declare on the session's probe channel), or
/// `None` when the broker does not answer within 5 s.
async fn ready_messages(probe: &lapin::Channel, queue: &str) -> Option<u32> {
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let asking = async {
        probe.queue_declare(queue.into(), passive, FieldTable::default()).await.ok().map(|q| q.message_count())
    };
    tokio::time::timeout(Duration::from_secs(5), asking).await.ok().flatten()
}

/// One consumer's loop: each delivery is handled in its own task.
struct ConsumeLoop {
    handler: Handler,
    acks: Arc<AckBatcher>,
    tracker: TaskTracker,
    activity: Arc<Activity>,
}

impl ConsumeLoop {
    async fn run(self, mut consumer: lapin::Consumer, lost: CancellationToken, session: CancellationToken) {
        while let Some(delivery) = consumer.next().await {
            match delivery {
                Ok(delivery) => {
                    self.activity.delivered();
                    let handling =
                        (self.handler)(Inbound::batched(delivery, self.acks.clone()).in_session(session.clone()));
                    let activity = self.activity.clone();
                    self.tracker.spawn(async move {
                        handling.await;
                        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
                    });
                }
                Err(err) => {
                    tracing::warn!(queue = %consumer.queue(), error = %err, "consumer failed");
                    break;
                }
            }
        }
        // Ended on purpose (shutdown cancelled it) or lost; the session tells which.
        lost.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_is_stalled_only_with_room_messages_waiting_and_nothing_for_a_while() {
        let activity = Activity::new("q".into(), 2);
        let start = activity.started;
        let later = start + STALL_AFTER + Duration::from_secs(1);
        assert!(activity.is_stalled(5, later), "room, messages, silence");
        assert!(!activity.is_stalled(0, later), "nothing waits");
        assert!(!activity.is_stalled(5, start + STALL_AFTER / 2), "not silent long enough");
        activity.in_flight.store(2, Ordering::Release);
        assert!(!activity.is_stalled(5, later), "busy: its prefetch is full");
    }
}

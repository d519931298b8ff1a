//! The life of a consuming service: connect, set up, consume; on connection loss start
//! over with backoff; on shutdown stop consuming and drain in-flight work.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::{StreamExt, future::BoxFuture};
use lapin::{Connection, options::BasicCancelOptions};
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
    for spec in specs {
        let channel = connection.create_channel().await?;
        let tag = format!("{}-{}-{}", options.service, std::process::id(), spec.queue);
        let consumer = crate::consume(&channel, &spec.queue, spec.prefetch, &tag).await?;
        let acks = AckBatcher::start(channel.clone());
        consumers.push((channel, tag, acks.clone()));
        tokio::spawn(consume_loop(consumer, spec.handler, acks, tracker.clone(), lost.clone(), session.clone()));
    }
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

async fn consume_loop(
    mut consumer: lapin::Consumer,
    handler: Handler,
    acks: Arc<AckBatcher>,
    tracker: TaskTracker,
    lost: CancellationToken,
    session: CancellationToken,
) {
    while let Some(delivery) = consumer.next().await {
        match delivery {
            Ok(delivery) => {
                tracker.spawn(handler(Inbound::batched(delivery, acks.clone()).in_session(session.clone())));
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

//! Keeping a confirmed publisher available to the handlers.

use std::{sync::Arc, time::Duration};

use parking_lot::RwLock;
use sendfleet_broker::{BrokerError, Publisher, Topology};
use sendfleet_config::{BrokerConfig, Config};
use sendfleet_protocol::Event;
use sendfleet_telemetry::Readiness;
use tokio_util::sync::CancellationToken;

use crate::IngestState;

/// How long a callback waits for its confirms before answering 503.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the broker has blocked a connection (`connection.blocked`, sent on a memory
/// or disk alarm). While it is blocked lapin queues every publish in memory, unbounded,
/// and no confirm comes back; callbacks are refused at once instead.
pub(crate) trait Blocking: Send + Sync {
    /// True between the broker's `connection.blocked` and `connection.unblocked`.
    fn blocked(&self) -> bool;
}

impl Blocking for sendfleet_broker::lapin::ConnectionStatus {
    fn blocked(&self) -> bool {
        sendfleet_broker::lapin::ConnectionStatus::blocked(self)
    }
}

/// A live connection as the handlers use it.
#[derive(Clone)]
pub(crate) struct Connected {
    /// The confirmed publisher.
    pub publisher: Publisher,
    /// The connection's blocked state.
    pub status: Arc<dyn Blocking>,
}

/// The current publisher and connection status, if connected.
pub(crate) struct BrokerSlot {
    connected: RwLock<Option<Connected>>,
    topology: Topology,
}

impl BrokerSlot {
    pub fn new(config: &BrokerConfig) -> BrokerSlot {
        BrokerSlot { connected: RwLock::new(None), topology: Topology::new(config) }
    }

    /// Whether the broker has blocked the current connection: callbacks are answered 503
    /// at once. Not connected is not blocked (publishing then fails fast by itself).
    pub fn blocked(&self) -> bool {
        self.connected.read().as_ref().is_some_and(|c| c.status.blocked())
    }

    /// Publishes events with confirms, all concurrently. `Err` when not connected or
    /// any publish failed: the caller answers 503 and the provider retries.
    pub async fn publish_events(&self, events: &[Event]) -> Result<(), BrokerError> {
        let publisher = self.publisher().ok_or(BrokerError::ConnectionLost)?;
        let publishes = events.iter().map(|event| publisher.publish_event(&self.topology, event));
        // A broker that stops answering (not closed, just silent) must not hold the
        // provider's request open forever: give up and let it retry.
        match tokio::time::timeout(PUBLISH_TIMEOUT, futures_util::future::try_join_all(publishes)).await {
            Ok(result) => result.map(|_| ())?,
            Err(_) => return Err(BrokerError::ConnectionLost),
        }
        Ok(())
    }

    /// The current publisher, if connected.
    pub fn publisher(&self) -> Option<Publisher> {
        self.connected.read().as_ref().map(|c| c.publisher.clone())
    }

    /// Sets (or clears) the live connection.
    pub fn set(&self, connected: Option<Connected>) {
        *self.connected.write() = connected;
    }
}

/// Connects, declares the topology and publishes the publisher; watches the connection
/// and reconnects when it drops. Ends on shutdown, or with an error when reconnecting
/// cannot help ([`BrokerError::is_fatal`]: a queue declared with other arguments).
pub(crate) async fn keep_connected(
    state: Arc<IngestState>,
    config: Arc<Config>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), BrokerError> {
    let mut policy = sendfleet_broker::Reconnect::new();
    loop {
        let connection = match sendfleet_broker::connect(&config.broker, "callback-ingest", &shutdown).await {
            Ok(connection) => connection,
            Err(_) => break,
        };
        match set_up(&connection, &config).await {
            Ok(publisher) => {
                let status = connection.status().clone();
                state.broker.set(Some(Connected { publisher: publisher.clone(), status: Arc::new(status.clone()) }));
                readiness.set(true);
                policy.reset();
                tracing::info!("callback-ingest connected to the broker");
                let mut was_blocked = false;
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                    if !status.connected() {
                        break;
                    }
                    // Readiness stays: every replica is blocked by the same alarm, and
                    // 503 with Retry-After is the answer providers retry on.
                    let blocked = status.blocked();
                    if blocked != was_blocked {
                        if blocked {
                            tracing::warn!(
                                "the broker blocked the connection (memory or disk alarm); answering callbacks 503"
                            );
                        } else {
                            tracing::info!("the broker unblocked the connection");
                        }
                        was_blocked = blocked;
                    }
                }
                readiness.set(false);
                state.broker.set(None);
                if shutdown.is_cancelled() {
                    // Its channels first: one still open as the connection closes is
                    // closed by lapin then, and logged as a connection ERROR.
                    publisher.close().await;
                }
            }
            Err(err) if err.is_fatal() => {
                tracing::error!(error = %err, "cannot run against this broker; stopping");
                drop(connection.close(200, "stopping".into()).await);
                return Err(err);
            }
            Err(err) => tracing::warn!(error = %err, "broker set-up failed"),
        }
        if shutdown.is_cancelled() {
            drop(connection.close(200, "shutdown".into()).await);
            break;
        }
        tracing::warn!("broker connection lost; reconnecting");
        if !policy.wait(&shutdown).await {
            break;
        }
    }
    Ok(())
}

async fn set_up(connection: &sendfleet_broker::lapin::Connection, config: &Config) -> Result<Publisher, BrokerError> {
    let channel = connection.create_channel().await?;
    Topology::new(&config.broker).declare(&channel, &config.provider_ids()).await?;
    Publisher::open(connection).await
}

//! Publishing with publisher confirms.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::Poll,
    time::Duration,
};

use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, ShortString},
};

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::{BrokerError, CONTENT_TYPE, topology::long_string};

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// Exchange.
    pub exchange: &'a str,
    /// Routing key.
    pub routing_key: &'a str,
    /// Body (MessagePack).
    pub payload: &'a [u8],
    /// Headers (`x-sendfleet-*`).
    pub headers: Vec<(&'a str, String)>,
    /// True when losing the message would lose work (jobs, retries, dead letters): an
    /// unroutable mandatory message is an error instead of being dropped.
    pub mandatory: bool,
    /// AMQP message id (our message id, for tooling).
    pub message_id: Option<&'a str>,
    /// AMQP timestamp, seconds since the epoch; `None`: the time of publishing.
    pub timestamp: Option<u64>,
}

impl<'a> Outgoing<'a> {
    /// A mandatory message with no headers.
    pub fn new(exchange: &'a str, routing_key: &'a str, payload: &'a [u8]) -> Outgoing<'a> {
        Outgoing {
            exchange,
            routing_key,
            payload,
            headers: Vec::new(),
            mandatory: true,
            message_id: None,
            timestamp: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Outgoing<'a> {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the AMQP message id.
    pub fn message_id(mut self, id: &'a str) -> Outgoing<'a> {
        self.message_id = Some(id);
        self
    }

    /// Sets the AMQP timestamp (seconds) instead of the time of publishing: a message
    /// put back in a queue keeps the one it had, since the dispatcher derives the ids of
    /// a request from its bytes, `message_id` and `timestamp`.
    pub fn timestamp(mut self, seconds: u64) -> Outgoing<'a> {
        self.timestamp = Some(seconds);
        self
    }

    /// Marks the message as droppable when nothing is bound (events).
    pub fn optional(mut self) -> Outgoing<'a> {
        self.mandatory = false;
        self
    }
}

/// How many confirm channels carry mandatory publishes, each with at most one message
/// awaiting its confirm (see [`Publisher`]). The bound on concurrent mandatory publishes
/// per process: at a quorum queue's confirm latency of a few milliseconds, 64 channels
/// carry well over 10,000 mandatory messages per second.
pub const MANDATORY_CHANNELS: usize = 64;

/// Publishes with publisher confirms. Cheap to clone; many tasks publish concurrently and
/// each awaits only its own outcome.
///
/// Every caller must get *its own* outcome, and lapin 4 cannot guarantee that on a
/// shared channel (`tests/publisher.rs` shows it):
/// - `basic_publish` takes the delivery tag and queues the frames under two different
///   locks, so two publishes racing on two threads can reach the wire in the opposite
///   order of their tags, and the broker's nack for one is reported to the other;
/// - a `basic.return` (unroutable mandatory message) carries no delivery tag: lapin hands
///   it to whichever confirm it resolves next, and one `multiple` ack resolves many.
///
/// So optional messages (events: nothing is returned) share one pipelined channel whose
/// tag assignment and frame queueing happen together under a lock, and mandatory
/// messages each take a channel of their own from a pool of [`MANDATORY_CHANNELS`] for
/// the time of their publish: the only confirm pending on that channel is theirs, so a
/// return or a nack can only be theirs.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
    /// How long a nacked publish is tried again before the nack reaches the caller.
    nack_retry: Duration,
}

/// How long [`Publisher::publish`] keeps trying a message the broker nacked. A quorum
/// queue whose leader was lost nacks publishes until its followers have elected a new
/// one (20 s measured on a loaded two-core machine); a caller that requeued its input at
/// the first nack would burn a delivery of it (`broker.delivery_limit`) on every try.
/// Not longer: a publisher still nacked when its window ends has its session started
/// over (see [`Publisher::refused_throughout_a_window`]), and with a 30-s window a
/// dispatcher whose channels stayed nacked left the workers without jobs for 14.6 s.
pub const NACK_RETRY_WINDOW: Duration = Duration::from_secs(10);

struct Inner {
    /// Optional messages, pipelined.
    shared: Channel,
    /// Held while a publish on `shared` takes its tag and queues its frames.
    order: tokio::sync::Mutex<()>,
    /// Idle channels for mandatory messages; a permit of `idle_permits` per channel.
    idle: Mutex<Vec<Channel>>,
    idle_permits: Semaphore,
    /// Pool channels not yet failed.
    live: AtomicUsize,
    /// Set when a publish was still nacked at the end of its retry window.
    refused_throughout: AtomicBool,
}

impl Publisher {
    /// Opens the confirm channels on `connection`.
    pub async fn open(connection: &Connection) -> Result<Publisher, BrokerError> {
        let shared = confirm_channel(connection).await?;
        let opened =
            futures_util::future::try_join_all((0..MANDATORY_CHANNELS).map(|_| confirm_channel(connection))).await?;
        Ok(Publisher {
            inner: Arc::new(Inner {
                shared,
                order: tokio::sync::Mutex::new(()),
                idle: Mutex::new(opened),
                idle_permits: Semaphore::new(MANDATORY_CHANNELS),
                live: AtomicUsize::new(MANDATORY_CHANNELS),
                refused_throughout: AtomicBool::new(false),
            }),
            nack_retry: NACK_RETRY_WINDOW,
        })
    }

    /// This publisher with nacked publishes tried again for `window` instead of
    /// [`NACK_RETRY_WINDOW`] (`Duration::ZERO`: a nack is returned at once).
    pub fn retrying_nacks_for(mut self, window: Duration) -> Publisher {
        self.nack_retry = window;
        self
    }

    /// Publishes a persistent message and waits until the broker confirms it: `Ok` only
    /// when the broker took responsibility for it (and, if mandatory, routed it). A
    /// nacked message is published again, with the reconnect backoff between tries, for
    /// up to [`NACK_RETRY_WINDOW`] (or the window set by [`Publisher::retrying_nacks_for`]);
    /// then the nack is the caller's. Other failures (a
    /// lost channel, an unroutable message) return at once.
    pub async fn publish(&self, message: Outgoing<'_>) -> Result<(), BrokerError> {
        let started = tokio::time::Instant::now();
        let mut backoff = crate::Reconnect::new();
        loop {
            match self.publish_once(&message).await {
                Err(BrokerError::Nacked { .. }) if started.elapsed() < self.nack_retry => {
                    tracing::debug!(
                        exchange = message.exchange,
                        routing_key = message.routing_key,
                        "publish nacked; trying again"
                    );
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(nacked @ BrokerError::Nacked { .. }) => {
                    if !self.nack_retry.is_zero() {
                        self.inner.refused_throughout.store(true, Ordering::Release);
                    }
                    return Err(nacked);
                }
                outcome => return outcome,
            }
        }
    }

    /// Whether a publish was still nacked at the end of its retry window. Seen after a
    /// cluster node's `kill -9`: a dispatcher's publishes to a queue with a live, elected
    /// leader were nacked for minutes; a service whose publisher says so starts a new
    /// session with fresh channels ([`crate::run_sessions`]).
    pub fn refused_throughout_a_window(&self) -> bool {
        self.inner.refused_throughout.load(Ordering::Acquire)
    }

    /// One publish and its confirm.
    async fn publish_once(&self, message: &Outgoing<'_>) -> Result<(), BrokerError> {
        let properties = properties(message);
        let options = BasicPublishOptions { mandatory: message.mandatory, ..Default::default() };
        let confirmation = if message.mandatory {
            self.publish_alone(message, options, properties).await?
        } else {
            self.publish_pipelined(message, options, properties).await?
        };
        match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_returned)) => Err(BrokerError::Unroutable {
                exchange: message.exchange.to_owned(),
                routing_key: message.routing_key.to_owned(),
            }),
            Confirmation::Nack(_) => Err(BrokerError::Nacked {
                exchange: message.exchange.to_owned(),
                routing_key: message.routing_key.to_owned(),
            }),
        }
    }

    /// On a pool channel with no other confirm pending. The publish runs in a task of
    /// its own, so a caller that gives up (a timeout, a dropped request) does not leave a
    /// channel with an orphaned confirm behind: the task finishes and returns the channel.
    async fn publish_alone(
        &self,
        message: &Outgoing<'_>,
        options: BasicPublishOptions,
        properties: BasicProperties,
    ) -> Result<Confirmation, BrokerError> {
        let inner = self.inner.clone();
        let (exchange, routing_key) = (message.exchange.to_owned(), message.routing_key.to_owned());
        let payload = message.payload.to_vec();
        let task = tokio::spawn(async move {
            // Closed when the last pool channel is gone: the connection is lost.
            let permit = inner.idle_permits.acquire().await.map_err(|_| BrokerError::ConnectionLost)?;
            let channel = inner.idle.lock().pop().ok_or(BrokerError::ConnectionLost)?;
            let result = async {
                let confirm =
                    channel.basic_publish(exchange.into(), routing_key.into(), options, &payload, properties).await?;
                confirm.await
            }
            .await;
            if result.is_ok() && channel.status().connected() {
                inner.idle.lock().push(channel);
                drop(permit);
            } else {
                // A failed channel leaves the pool for good; the session's next
                // connection opens a new publisher.
                permit.forget();
                if inner.live.fetch_sub(1, Ordering::AcqRel) == 1 {
                    inner.idle_permits.close();
                }
            }
            Ok(result?)
        });
        task.await.map_err(|_| BrokerError::ConnectionLost)?
    }

    /// On the shared channel, pipelined with every other optional publish.
    async fn publish_pipelined(
        &self,
        message: &Outgoing<'_>,
        options: BasicPublishOptions,
        properties: BasicProperties,
    ) -> Result<Confirmation, BrokerError> {
        let mut publish = std::pin::pin!(self.inner.shared.basic_publish(
            message.exchange.into(),
            message.routing_key.into(),
            options,
            message.payload,
            properties
        ));
        // lapin's first poll of `basic_publish` takes the delivery tag and queues the
        // frames without yielding in between; done under the lock, tags reach the wire
        // in order, so the broker's ack or nack for a tag is this message's.
        let first = {
            let _order = self.inner.order.lock().await;
            futures_util::poll!(publish.as_mut())
        };
        let confirm = match first {
            Poll::Ready(confirm) => confirm?,
            Poll::Pending => publish.await?,
        };
        Ok(confirm.await?)
    }

    /// The shared channel (for declarations).
    pub fn channel(&self) -> &Channel {
        &self.inner.shared
    }

    /// Closes every channel of this publisher, for a clean shutdown: waits (at most
    /// [`CLOSE_WAIT`]) for mandatory publishes in flight to give their channels back,
    /// then closes them all; later publishes fail with [`BrokerError::ConnectionLost`].
    /// Call it before closing the connection: a channel still open then is closed by
    /// lapin while the connection closes, which it logs as a connection ERROR.
    pub async fn close(&self) {
        let live = u32::try_from(self.inner.live.load(Ordering::Acquire)).unwrap_or(u32::MAX);
        let all_idle = tokio::time::timeout(CLOSE_WAIT, self.inner.idle_permits.acquire_many(live)).await;
        self.inner.idle_permits.close();
        let pool = std::mem::take(&mut *self.inner.idle.lock());
        let closing = pool.iter().chain([&self.inner.shared]).filter(|c| c.status().connected()).map(close_channel);
        futures_util::future::join_all(closing).await;
        drop(all_idle);
    }
}

/// How long [`Publisher::close`] waits for publishes in flight.
pub const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Closes `channel` as part of a clean shutdown; a channel the broker already closed is
/// not an error then.
pub(crate) async fn close_channel(channel: &Channel) {
    drop(channel.close(lapin::protocol::constants::REPLY_SUCCESS, "shutdown".into()).await);
}

async fn confirm_channel(connection: &Connection) -> Result<Channel, BrokerError> {
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(channel)
}

fn properties(message: &Outgoing<'_>) -> BasicProperties {
    let mut properties =
        BasicProperties::default().with_delivery_mode(2).with_content_type(CONTENT_TYPE.into()).with_timestamp(
            message.timestamp.unwrap_or_else(|| u64::try_from(sendfleet_protocol::now_ms() / 1000).unwrap_or(0)),
        );
    if !message.headers.is_empty() {
        let mut headers = FieldTable::default();
        for (name, value) in &message.headers {
            headers.insert(ShortString::from(*name), long_string(value));
        }
        properties = properties.with_headers(headers);
    }
    if let Some(id) = message.message_id {
        properties = properties.with_message_id(id.into());
    }
    properties
}

/// Reads a string header of a consumed message.
pub(crate) fn header_str(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

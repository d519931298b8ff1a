//! Consumed messages and their exits.

use lapin::{
    Channel, Consumer,
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::FieldTable,
};

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::{
    BrokerError, Outgoing, Publisher, REASON_CODE_HEADER, REASON_HEADER, TRACE_HEADER, acks::AckBatcher,
    publisher::header_str,
};

/// Starts consuming `queue` on `channel` with `prefetch` unacknowledged messages at most.
/// The prefetch is the structural bound on work in progress in this process.
pub async fn consume(
    channel: &Channel,
    queue: &str,
    prefetch: u16,
    consumer_tag: &str,
) -> Result<Consumer, BrokerError> {
    channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let consumer = channel
        .basic_consume(queue.into(), consumer_tag.into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    Ok(consumer)
}

/// A consumed message. Its exits all consume it, so a message is settled exactly once:
/// [`Inbound::ack`] after its consequences are confirmed, [`Inbound::dead_letter`] /
/// [`Inbound::republish_then_ack`] (confirmed copy, then ack), or [`Inbound::requeue`].
/// Dropped without an exit (an error path, an abandoned task) it is requeued, so an
/// unsettled delivery never holds a prefetch slot or the ack batcher's run forever.
pub struct Inbound {
    delivery: Delivery,
    acks: Option<Arc<AckBatcher>>,
    settled: bool,
    /// Cancelled when the broker session that delivered this message is lost.
    lost: Option<CancellationToken>,
}

/// How long a delivery dropped without an exit waits before it is requeued.
const REQUEUE_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

impl Drop for Inbound {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let tag = self.delivery.delivery_tag;
        let acks = self.acks.clone();
        let acker = self.delivery.acker.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // Not at once: whatever failed (a dead-letter publish refused, say) would
                // fail again on the redelivery, in a tight loop.
                tokio::time::sleep(REQUEUE_DELAY).await;
                // Fails only when the channel is gone, and then the broker requeues it.
                drop(acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await);
                // Only now: a `multiple` ack over this tag before the nack went out would
                // ack (and lose) the message instead.
                if let Some(acks) = acks {
                    acks.settle(tag, true);
                }
            });
        }
    }
}

impl From<Delivery> for Inbound {
    fn from(delivery: Delivery) -> Self {
        Inbound { delivery, acks: None, settled: false, lost: None }
    }
}

impl Inbound {
    /// The body.
    pub fn data(&self) -> &[u8] {
        &self.delivery.data
    }

    /// True if the broker delivered this message before (to us or another consumer).
    pub fn redelivered(&self) -> bool {
        self.delivery.redelivered
    }

    /// A string header.
    pub fn header(&self, name: &str) -> Option<String> {
        header_str(self.delivery.properties.headers().as_ref(), name)
    }

    /// The AMQP `message_id` property, if the producer set one.
    pub fn amqp_message_id(&self) -> Option<&str> {
        self.delivery.properties.message_id().as_ref().map(|id| id.as_str())
    }

    /// The AMQP `timestamp` property, if the producer set one.
    pub fn amqp_timestamp(&self) -> Option<u64> {
        *self.delivery.properties.timestamp()
    }

    /// The trace id header, if any.
    pub fn trace_id(&self) -> Option<String> {
        self.header(TRACE_HEADER)
    }

    /// A delivery whose ack goes through `acks` (one `multiple` ack for many jobs).
    pub fn batched(delivery: Delivery, acks: Arc<AckBatcher>) -> Inbound {
        Inbound { delivery, acks: Some(acks), settled: false, lost: None }
    }

    /// Ties the delivery to its broker session: `lost` is cancelled when the session's
    /// connection is gone (see [`Inbound::session_lost`]).
    pub fn in_session(mut self, lost: CancellationToken) -> Inbound {
        self.lost = Some(lost);
        self
    }

    /// Whether the session that delivered this message is gone. Its delivery tag died
    /// with the channel: the broker redelivers the message (maybe to another process),
    /// so work on it must stop rather than act a second time.
    pub fn is_session_lost(&self) -> bool {
        self.lost.as_ref().is_some_and(CancellationToken::is_cancelled)
    }

    /// The token cancelled when the session that delivered this message is lost (`None`
    /// for a delivery outside a session).
    pub fn session(&self) -> Option<&CancellationToken> {
        self.lost.as_ref()
    }

    /// Resolves when the session that delivered this message is lost (never, for a
    /// delivery outside a session).
    pub async fn session_lost(&self) {
        match &self.lost {
            Some(lost) => lost.cancelled().await,
            None => std::future::pending().await,
        }
    }

    /// Acknowledges: the broker forgets the message (batched when consumed through a
    /// batcher; call only once its consequences are confirmed).
    pub async fn ack(mut self) -> Result<(), BrokerError> {
        self.settled = true;
        match &self.acks {
            Some(acks) => acks.settle(self.delivery.delivery_tag, false),
            None => {
                self.delivery.acker.ack(BasicAckOptions::default()).await?;
            }
        }
        Ok(())
    }

    /// Gives the message back to the queue (shutdown before it was handled).
    pub async fn requeue(mut self) -> Result<(), BrokerError> {
        self.settled = true;
        let result = self.delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
        if let Some(acks) = &self.acks {
            acks.settle(self.delivery.delivery_tag, true);
        }
        result?;
        Ok(())
    }

    /// Publishes the original body to the dead exchange with the reason in headers,
    /// waits for the confirm, then acks. On error nothing is acked, so the broker
    /// redelivers and nothing is lost.
    pub async fn dead_letter(
        self,
        publisher: &Publisher,
        exchange: &str,
        routing_key: &str,
        reason_code: &str,
        reason: &str,
    ) -> Result<(), BrokerError> {
        let mut outgoing = Outgoing::new(exchange, routing_key, &self.delivery.data)
            .header(REASON_CODE_HEADER, reason_code)
            .header(REASON_HEADER, reason)
            .header("x-sendfleet-original-routing-key", self.delivery.routing_key.as_str());
        let trace = self.trace_id();
        if let Some(trace) = &trace {
            outgoing = outgoing.header(TRACE_HEADER, trace.clone());
        }
        publisher.publish(outgoing).await?;
        self.ack().await
    }

    /// Publishes `outgoing` (a rejection, a retry copy, …), waits for the confirm, then acks.
    pub async fn republish_then_ack(self, publisher: &Publisher, outgoing: Outgoing<'_>) -> Result<(), BrokerError> {
        publisher.publish(outgoing).await?;
        self.ack().await
    }
}

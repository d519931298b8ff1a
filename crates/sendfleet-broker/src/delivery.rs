//! Consumed messages and their exits.

use lapin::{
    Channel, Consumer,
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::FieldTable,
};

use std::sync::Arc;

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
pub struct Inbound {
    delivery: Delivery,
    acks: Option<Arc<AckBatcher>>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").field("delivery_tag", &self.delivery.delivery_tag).finish_non_exhaustive()
    }
}

impl From<Delivery> for Inbound {
    fn from(delivery: Delivery) -> Self {
        Inbound { delivery, acks: None }
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

    /// The trace id header, if any.
    pub fn trace_id(&self) -> Option<String> {
        self.header(TRACE_HEADER)
    }

    /// A delivery whose ack goes through `acks` (one `multiple` ack for many jobs).
    pub fn batched(delivery: Delivery, acks: Arc<AckBatcher>) -> Inbound {
        Inbound { delivery, acks: Some(acks) }
    }

    /// Acknowledges: the broker forgets the message (batched when consumed through a
    /// batcher; call only once its consequences are confirmed).
    pub async fn ack(self) -> Result<(), BrokerError> {
        match &self.acks {
            Some(acks) => acks.settle(self.delivery.delivery_tag, false),
            None => {
                self.delivery.acker.ack(BasicAckOptions::default()).await?;
            }
        }
        Ok(())
    }

    /// Gives the message back to the queue (shutdown before it was handled).
    pub async fn requeue(self) -> Result<(), BrokerError> {
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

//! Publishing with publisher confirms.

use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, ShortString},
};

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
}

impl<'a> Outgoing<'a> {
    /// A mandatory message with no headers.
    pub fn new(exchange: &'a str, routing_key: &'a str, payload: &'a [u8]) -> Outgoing<'a> {
        Outgoing { exchange, routing_key, payload, headers: Vec::new(), mandatory: true, message_id: None }
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

    /// Marks the message as droppable when nothing is bound (events).
    pub fn optional(mut self) -> Outgoing<'a> {
        self.mandatory = false;
        self
    }
}

/// A channel in confirm mode. Cheap to clone; many tasks publish concurrently on one
/// channel and each awaits only its own confirm, so confirms are pipelined rather than
/// one blocking round-trip at a time.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    /// Opens a channel on `connection` and enables publisher confirms.
    pub async fn open(connection: &Connection) -> Result<Publisher, BrokerError> {
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Publisher { channel })
    }

    /// Publishes a persistent message and waits until the broker confirms it.
    pub async fn publish(&self, message: Outgoing<'_>) -> Result<(), BrokerError> {
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(CONTENT_TYPE.into())
            .with_timestamp(u64::try_from(sendfleet_protocol::now_ms() / 1000).unwrap_or(0));
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
        let options = BasicPublishOptions { mandatory: message.mandatory, ..Default::default() };
        let confirm = self
            .channel
            .basic_publish(message.exchange.into(), message.routing_key.into(), options, message.payload, properties)
            .await?;
        match confirm.await? {
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

    /// The underlying channel (for declarations).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

/// Reads a string header of a consumed message.
pub(crate) fn header_str(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

//! What the broker tests share: a scratch exchange and queue on the real RabbitMQ.

#![allow(dead_code, reason = "each test binary uses part of it")]

use sendfleet_broker::lapin::{
    Channel, Connection, ConnectionProperties, ExchangeKind,
    options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::FieldTable,
};

/// The broker tests use: `SENDFLEET_TEST_AMQP_URL` or the local default.
pub fn amqp_url() -> String {
    std::env::var("SENDFLEET_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A connection to the test broker.
pub async fn connect() -> Connection {
    Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ must run on 127.0.0.1:5672 for the tests")
}

/// An exchange and a queue of the same unique name, bound with `key`.
pub struct Scratch {
    pub connection: Connection,
    pub channel: Channel,
    pub name: String,
}

impl Scratch {
    /// Declares `sft-<what>-<uuid>` as an exchange of `kind` and a queue with `args`.
    pub async fn new(
        what: &str,
        kind: ExchangeKind,
        queue: QueueDeclareOptions,
        args: FieldTable,
        key: &str,
    ) -> Scratch {
        let connection = connect().await;
        let channel = connection.create_channel().await.expect("channel");
        let name = format!("sft-{what}-{}", uuid::Uuid::new_v4().simple());
        channel
            .exchange_declare(name.as_str().into(), kind, ExchangeDeclareOptions::default(), FieldTable::default())
            .await
            .expect("declare exchange");
        channel.queue_declare(name.as_str().into(), queue, args).await.expect("declare queue");
        channel
            .queue_bind(
                name.as_str().into(),
                name.as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        Scratch { connection, channel, name }
    }

    /// Messages ready in the queue.
    pub async fn depth(&self) -> u32 {
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        self.channel
            .queue_declare(self.name.as_str().into(), passive, FieldTable::default())
            .await
            .expect("depth")
            .message_count()
    }

    /// Deletes the queue and the exchange and closes the connection.
    pub async fn cleanup(self) {
        drop(self.channel.queue_delete(self.name.as_str().into(), QueueDeleteOptions::default()).await);
        drop(self.channel.exchange_delete(self.name.as_str().into(), ExchangeDeleteOptions::default()).await);
        drop(self.connection.close(200, "".into()).await);
    }
}

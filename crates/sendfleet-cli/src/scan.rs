//! Reading a queue without taking anything out of it.
//!
//! Messages are fetched one by one with `basic.get` and **not acknowledged**: each stays
//! the broker's, invisible to other consumers while this command holds it, and
//! `basic.get` returns the next one. When the command ends, or dies, the channel
//! closes and the broker puts every message it did not ack back where it was (classic
//! queues keep the order; the messages come back marked `redelivered`, and quorum
//! queues count the delivery in `x-delivery-count`). Only `replay` acks, and only the
//! messages whose copy the broker confirmed.

use sendfleet_broker::lapin::{
    Channel, Connection,
    message::Delivery,
    options::{BasicGetOptions, QueueDeclareOptions},
    types::FieldTable,
};
use sendfleet_config::Config;
use sendfleet_protocol::now_ms;

use crate::{CliError, Entry, Filters, Source};

/// A queue being read.
pub(crate) struct Scan {
    /// The connection (also the publisher's, for replays).
    pub connection: Connection,
    channel: Channel,
    queue: String,
    source: Source,
    /// Messages in the queue when the scan started (ready ones).
    pub depth: u32,
}

impl Scan {
    /// Connects and checks the queue exists (a passive declare).
    pub async fn open(config: &Config, source: Source) -> Result<Scan, CliError> {
        let connection = sendfleet_broker::connect_once(&config.broker, "cli").await?;
        let channel = connection.create_channel().await?;
        let queue = source.queue(config);
        let declared = channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(|err| {
                CliError::Usage(format!(
                    "queue {queue} cannot be read ({err}); is broker.prefix right, and has a service declared it?"
                ))
            })?;
        Ok(Scan { connection, channel, queue, source, depth: declared.message_count() })
    }

    /// The next message, held unacknowledged; `None` when every message left is held.
    pub async fn next(&mut self) -> Result<Option<(Entry, Delivery)>, CliError> {
        let got = self.channel.basic_get(self.queue.as_str().into(), BasicGetOptions::default()).await?;
        Ok(got.map(|message| (Entry::read(self.source, &message.delivery, now_ms()), message.delivery)))
    }

    /// Hands every message not acked back to the queue (closing the channel) and
    /// closes the connection.
    pub async fn close(self) {
        drop(self.channel.close(200, "done".into()).await);
        drop(self.connection.close(200, "done".into()).await);
    }
}

/// The first `limit` messages of `source` that `filters` chooses, in queue order;
/// nothing is taken out of the queue.
pub(crate) async fn list(
    config: &Config,
    source: Source,
    filters: &Filters,
    limit: usize,
) -> Result<Vec<Entry>, CliError> {
    let mut scan = Scan::open(config, source).await?;
    let mut entries = Vec::new();
    let result = async {
        while entries.len() < limit {
            let Some((entry, _held)) = scan.next().await? else { break };
            if filters.matches(&entry) {
                entries.push(entry);
            }
        }
        Ok::<(), CliError>(())
    }
    .await;
    scan.close().await;
    result.map(|()| entries)
}

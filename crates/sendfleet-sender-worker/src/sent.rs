//! The record of sent messages, for duplicate suppression.
//!
//! Once a provider accepts a message, its id is written to Redis with a TTL. A job that
//! comes back (redelivered after a crash or a lost connection, or a retry after a
//! timeout whose outcome was unknown) is first looked up: if recorded, it is not sent
//! again. Writes from many concurrent jobs are pipelined into one round trip.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("sent-message store: {0}")]
pub(crate) struct SentStoreError(String);

type Write = (String, oneshot::Sender<Result<(), String>>);

/// Handle to the record; cheap to clone.
#[derive(Clone)]
pub(crate) struct SentLog {
    pool: deadpool_redis::Pool,
    prefix: String,
    writes: mpsc::Sender<Write>,
}

const MAX_BATCH: usize = 512;

impl SentLog {
    /// Starts the batching writer. Keys are `<prefix>:sent:<message id>`.
    pub fn start(pool: deadpool_redis::Pool, prefix: &str, ttl: Duration) -> SentLog {
        let (writes, receiver) = mpsc::channel(8_192);
        tokio::spawn(write_batches(pool.clone(), receiver, ttl));
        SentLog { pool, prefix: format!("{prefix}:sent:"), writes }
    }

    /// Whether the provider already accepted this message.
    pub async fn was_sent(&self, message_id: &str) -> Result<bool, SentStoreError> {
        let mut connection = self.pool.get().await.map_err(|e| SentStoreError(e.to_string()))?;
        redis::cmd("EXISTS")
            .arg(format!("{}{message_id}", self.prefix))
            .query_async::<bool>(&mut *connection)
            .await
            .map_err(|e| SentStoreError(e.to_string()))
    }

    /// Records that the provider accepted this message (batched with concurrent writes).
    pub async fn record(&self, message_id: &str) -> Result<(), SentStoreError> {
        let (done, wait) = oneshot::channel();
        self.writes
            .send((format!("{}{message_id}", self.prefix), done))
            .await
            .map_err(|_| SentStoreError("writer stopped".into()))?;
        wait.await.map_err(|_| SentStoreError("writer stopped".into()))?.map_err(SentStoreError)
    }
}

async fn write_batches(pool: deadpool_redis::Pool, mut receiver: mpsc::Receiver<Write>, ttl: Duration) {
    let ttl = ttl.as_secs().max(1);
    let mut batch: Vec<Write> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.recv().await {
        batch.push(first);
        // Whatever queued up while the last batch was in flight goes in this one.
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let result = write(&pool, &batch, ttl).await;
        for (_, done) in batch.drain(..) {
            drop(done.send(result.clone()));
        }
    }
}

async fn write(pool: &deadpool_redis::Pool, batch: &[Write], ttl: u64) -> Result<(), String> {
    let mut connection = pool.get().await.map_err(|e| e.to_string())?;
    let mut pipe = redis::pipe();
    for (key, _) in batch {
        pipe.cmd("SET").arg(key).arg(1).arg("EX").arg(ttl).ignore();
    }
    pipe.query_async::<()>(&mut *connection).await.map_err(|e| e.to_string())
}

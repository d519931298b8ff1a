//! The record of sent messages: a claim before each send, the sent mark after it.
//!
//! One key per message id, `<prefix>:sent:<message id>`:
//! - `c:<token>` (TTL: the longest a send can take): a worker is sending it now;
//! - `1` (TTL `worker.sent_record_ttl_seconds`): the provider accepted it.
//!
//! Every job **claims** its id (`SET … NX`) right before it asks for a rate slot. Only the
//! claimant sends; a job that finds the id claimed by another (the same job dispatched
//! twice, a redelivered copy while the first is still in flight, a fallback SMS fired
//! twice) waits in a retry tier and, coming back, finds it sent. Once the provider
//! accepts, the claim becomes the sent mark; any other answer releases it (only if it is
//! still ours), so a retry can claim again. A worker that dies holding claims leaves them
//! to expire: its in-flight jobs are redelivered and sent once the claims run out — the
//! one window in which a message can reach the provider twice (if it had accepted it
//! before the crash).
//!
//! Claims, marks and releases of concurrent jobs are pipelined: one round trip carries
//! everything queued while the previous one was in flight.

use std::{sync::Arc, time::Duration};

use redis::Value;
use sendfleet_telemetry::metrics::RedisStore;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("sent-message store: {0}")]
pub(crate) struct SentStoreError(String);

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Ours: send, then [`SentLog::record`] or [`SentLog::release`].
    Mine(ClaimToken),
    /// The provider accepted this message before: do not send it again.
    AlreadySent,
    /// Another worker (or an earlier delivery of this job) is sending it now.
    HeldElsewhere,
}

/// Proof of a claim, needed to release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimToken(String);

enum Op {
    Claim { key: String, token: String, ttl_ms: u64 },
    Record { key: String },
    Release { key: String, token: String },
}

enum Reply {
    Claimed(bool),
    Done,
}

type Request = (Op, oneshot::Sender<Result<Reply, String>>);

/// Handle to the record; cheap to clone.
#[derive(Clone)]
pub(crate) struct SentLog {
    pool: sendfleet_redis::RedisPool,
    prefix: String,
    ops: mpsc::Sender<Request>,
    /// Unique per process: claim tokens are `c:<instance>:<n>`.
    instance: Arc<str>,
    next_token: Arc<std::sync::atomic::AtomicU64>,
}

const MAX_BATCH: usize = 512;
/// Round trips in flight at once (each on its own pooled connection).
const CONCURRENT_BATCHES: usize = 4;
const SENT: &str = "1";
const CLAIM_PREFIX: &str = "c:";

/// Extends a claim only if it is still the caller's.
const LUA_RENEW: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";

/// Deletes a claim only if it is still the caller's.
const LUA_RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

impl SentLog {
    /// Starts the batching writer. Keys are `<prefix>:sent:<message id>`; sent marks live `ttl`.
    pub fn start(pool: sendfleet_redis::RedisPool, prefix: &str, ttl: Duration) -> SentLog {
        let (ops, receiver) = mpsc::channel(8_192);
        tokio::spawn(run_batches(pool.clone(), receiver, ttl));
        SentLog {
            pool,
            prefix: format!("{prefix}:sent:"),
            ops,
            instance: uuid::Uuid::new_v4().simple().to_string().into(),
            next_token: Arc::default(),
        }
    }

    fn key(&self, message_id: &str) -> String {
        format!("{}{message_id}", self.prefix)
    }

    /// Whether the provider already accepted this message.
    pub async fn was_sent(&self, message_id: &str) -> Result<bool, SentStoreError> {
        let mut connection = self.pool.get().await.map_err(store_error)?;
        let value: Option<String> =
            redis::cmd("GET").arg(self.key(message_id)).query_async(&mut *connection).await.map_err(store_error)?;
        Ok(value.is_some_and(|v| !v.starts_with(CLAIM_PREFIX)))
    }

    /// Claims `message_id` for one send lasting at most `ttl`.
    pub async fn claim(&self, message_id: &str, ttl: Duration) -> Result<Claim, SentStoreError> {
        let n = self.next_token.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = format!("{CLAIM_PREFIX}{}:{n}", self.instance);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let key = self.key(message_id);
        match self.submit(Op::Claim { key: key.clone(), token: token.clone(), ttl_ms }).await? {
            Reply::Claimed(true) => Ok(Claim::Mine(ClaimToken(token))),
            _ => {
                // Taken: by a sent mark, or by a claim (maybe expired just now, which the
                // next delivery will find).
                let mut connection = self.pool.get().await.map_err(store_error)?;
                let value: Option<String> =
                    redis::cmd("GET").arg(&key).query_async(&mut *connection).await.map_err(store_error)?;
                Ok(match value {
                    Some(v) if !v.starts_with(CLAIM_PREFIX) => Claim::AlreadySent,
                    _ => Claim::HeldElsewhere,
                })
            }
        }
    }

    /// Gives a claim another `ttl` if it is still the caller's; `false` when it lapsed
    /// (and may be someone else's now). Not batched: only a job that waited long for its
    /// concurrency permit asks.
    pub async fn renew(&self, message_id: &str, token: &ClaimToken, ttl: Duration) -> Result<bool, SentStoreError> {
        let mut connection = self.pool.get().await.map_err(store_error)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let renewed: i64 = redis::cmd("EVAL")
            .arg(LUA_RENEW)
            .arg(1)
            .arg(self.key(message_id))
            .arg(&token.0)
            .arg(ttl_ms)
            .query_async(&mut *connection)
            .await
            .map_err(store_error)?;
        Ok(renewed == 1)
    }

    /// Records that the provider accepted this message (replaces the claim).
    pub async fn record(&self, message_id: &str) -> Result<(), SentStoreError> {
        self.submit(Op::Record { key: self.key(message_id) }).await.map(drop)
    }

    /// Gives a claim back (the send did not go through), unless it expired and is
    /// someone else's now.
    pub async fn release(&self, message_id: &str, token: ClaimToken) -> Result<(), SentStoreError> {
        self.submit(Op::Release { key: self.key(message_id), token: token.0 }).await.map(drop)
    }

    async fn submit(&self, op: Op) -> Result<Reply, SentStoreError> {
        let (done, wait) = oneshot::channel();
        self.ops.send((op, done)).await.map_err(|_| SentStoreError("writer stopped".into()))?;
        wait.await.map_err(|_| SentStoreError("writer stopped".into()))?.map_err(SentStoreError)
    }
}

/// A failed Redis call of the record, counted for the Redis-unreachable alert.
fn store_error(err: impl std::fmt::Display) -> SentStoreError {
    RedisStore::SentRecord.failed(1);
    SentStoreError(err.to_string())
}

async fn run_batches(pool: sendfleet_redis::RedisPool, mut receiver: mpsc::Receiver<Request>, ttl: Duration) {
    let ttl = ttl.as_secs().max(1);
    let in_flight = Arc::new(Semaphore::new(CONCURRENT_BATCHES));
    while let Some(first) = receiver.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
        batch.push(first);
        // Whatever queued up while the last batch was in flight goes in this one.
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            let result = run_batch(&pool, &batch, ttl).await;
            match result {
                Ok(replies) => {
                    for ((_, done), reply) in batch.into_iter().zip(replies) {
                        drop(done.send(Ok(reply)));
                    }
                }
                Err(err) => {
                    RedisStore::SentRecord.failed(1);
                    for (_, done) in batch {
                        drop(done.send(Err(err.clone())));
                    }
                }
            }
            drop(permit);
        });
    }
}

async fn run_batch(pool: &sendfleet_redis::RedisPool, batch: &[Request], ttl: u64) -> Result<Vec<Reply>, String> {
    let mut connection = pool.get().await.map_err(|e| e.to_string())?;
    let mut pipe = redis::pipe();
    for (op, _) in batch {
        match op {
            Op::Claim { key, token, ttl_ms } => {
                pipe.cmd("SET").arg(key).arg(token).arg("NX").arg("PX").arg(*ttl_ms);
            }
            Op::Record { key } => {
                pipe.cmd("SET").arg(key).arg(SENT).arg("EX").arg(ttl);
            }
            Op::Release { key, token } => {
                pipe.cmd("EVAL").arg(LUA_RELEASE).arg(1).arg(key).arg(token);
            }
        }
    }
    let values: Vec<Value> = pipe.query_async(&mut *connection).await.map_err(|e| e.to_string())?;
    Ok(batch
        .iter()
        .zip(values)
        .map(|((op, _), value)| match op {
            Op::Claim { .. } => Reply::Claimed(matches!(value, Value::Okay)),
            _ => Reply::Done,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(prefix: &str) -> SentLog {
        let pool = sendfleet_redis::RedisPool::from(
            deadpool_redis::Config::from_url(sendfleet_test_support::redis_url())
                .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                .expect("pool"),
        );
        SentLog::start(pool, prefix, Duration::from_secs(60))
    }

    const TTL: Duration = Duration::from_secs(30);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_of_many_concurrent_claimants_sends_and_the_others_see_why_not() {
        let prefix = format!("sft-sent-{}", uuid::Uuid::new_v4().simple());
        let (a, b) = (log(&prefix), log(&prefix));
        let claims = futures_util::future::join_all((0..40).map(|i| {
            let log = if i % 2 == 0 { a.clone() } else { b.clone() };
            async move { log.claim("m-1", TTL).await.unwrap() }
        }))
        .await;
        let mine: Vec<&Claim> = claims.iter().filter(|c| matches!(c, Claim::Mine(_))).collect();
        assert_eq!(mine.len(), 1, "{claims:?}");
        assert!(claims.iter().filter(|c| !matches!(c, Claim::Mine(_))).all(|c| *c == Claim::HeldElsewhere));
        assert!(!a.was_sent("m-1").await.unwrap(), "a claim is not a send");

        a.record("m-1").await.unwrap();
        assert!(b.was_sent("m-1").await.unwrap());
        assert_eq!(b.claim("m-1", TTL).await.unwrap(), Claim::AlreadySent);
        cleanup(&prefix).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_released_claim_can_be_taken_again_but_a_stale_release_frees_nothing() {
        let prefix = format!("sft-sent-{}", uuid::Uuid::new_v4().simple());
        let (a, b) = (log(&prefix), log(&prefix));
        let Claim::Mine(first) = a.claim("m-2", TTL).await.unwrap() else { panic!("first claim") };
        a.release("m-2", first.clone()).await.unwrap();
        let Claim::Mine(second) = b.claim("m-2", TTL).await.unwrap() else { panic!("claim after release") };
        // The first claimant releasing again (its claim long gone) must not free b's.
        a.release("m-2", first).await.unwrap();
        assert_eq!(a.claim("m-2", TTL).await.unwrap(), Claim::HeldElsewhere);
        b.release("m-2", second).await.unwrap();
        // A claim is renewed only by its holder.
        let Claim::Mine(held) = b.claim("m-4", TTL).await.unwrap() else { panic!("claim") };
        assert!(b.renew("m-4", &held, TTL).await.unwrap());
        assert!(!a.renew("m-4", &ClaimToken("c:other:1".into()), TTL).await.unwrap());
        b.release("m-4", held).await.unwrap();
        // An expired claim frees the id by itself.
        let Claim::Mine(_) = a.claim("m-3", Duration::from_millis(50)).await.unwrap() else { panic!("claim") };
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(matches!(b.claim("m-3", TTL).await.unwrap(), Claim::Mine(_)));
        cleanup(&prefix).await;
    }

    async fn cleanup(prefix: &str) {
        sendfleet_test_support::delete_redis_keys(prefix).await;
    }
}

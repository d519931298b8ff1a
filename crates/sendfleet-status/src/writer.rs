//! Writing updates off the hot path: a bounded queue drained into Redis pipelines.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use metrics::Counter;
use sendfleet_config::Config;
use sendfleet_protocol::{Event, now_ms};
use sendfleet_telemetry::metrics::STATUS_UPDATES_TOTAL;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{StatusError, StatusUpdate, apply_script, record_key};

/// Scripts per pipeline.
const MAX_BATCH: usize = 512;
/// Pipelines in flight at once (each on its own pooled connection).
const CONCURRENT_BATCHES: u32 = 2;
/// At most one warning per this long when Redis refuses updates.
const WARN_EVERY_MS: i64 = 10_000;

enum Item {
    Update(Box<StatusUpdate>),
    /// Answered once every update queued before it has been tried.
    Flush(oneshot::Sender<()>),
}

/// Hands status updates to Redis without making the caller wait. Cheap to clone; a
/// disabled writer (`status.enabled = false`) takes updates and drops them uncounted.
#[derive(Clone)]
pub struct StatusWriter {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    queue: mpsc::Sender<Item>,
    dropped: Counter,
}

/// The outcome counters of `sendfleet_status_updates_total`.
struct Counters {
    written: Counter,
    stale: Counter,
    failed: Counter,
    last_warning_ms: AtomicI64,
}

impl StatusWriter {
    /// A writer that writes nothing.
    pub fn disabled() -> StatusWriter {
        StatusWriter { inner: None }
    }

    /// Starts the writer for `config` (disabled when `status.enabled` is false) with a
    /// Redis pool of its own. Must be called inside a tokio runtime (it spawns the
    /// writing task); fails only on a Redis URL that cannot be used.
    pub fn start(config: &Config) -> Result<StatusWriter, StatusError> {
        if !config.status.enabled {
            return Ok(StatusWriter::disabled());
        }
        let pool = crate::pool(config, CONCURRENT_BATCHES as usize)?;
        let (queue, receiver) = mpsc::channel(config.status.queue_capacity.max(1));
        let counter = |outcome: &'static str| {
            let counter = metrics::counter!(STATUS_UPDATES_TOTAL, "outcome" => outcome);
            // Registered at zero: rates and alerts work from the first scrape.
            counter.absolute(0);
            counter
        };
        let counters = Arc::new(Counters {
            written: counter("written"),
            stale: counter("stale"),
            failed: counter("failed"),
            last_warning_ms: AtomicI64::new(0),
        });
        let dropped = counter("dropped");
        let prefix = config.redis.key_prefix.clone();
        tokio::spawn(run(pool, receiver, prefix, config.status.ttl_seconds.max(1), counters));
        Ok(StatusWriter { inner: Some(Arc::new(Inner { queue, dropped })) })
    }

    /// Whether updates are written at all.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues an update; never waits. A full queue drops it (counted as `dropped`).
    pub fn record(&self, update: StatusUpdate) {
        let Some(inner) = &self.inner else { return };
        if inner.queue.try_send(Item::Update(Box::new(update))).is_err() {
            inner.dropped.increment(1);
        }
    }

    /// Queues the update an event stands for, if any ([`StatusUpdate::from_event`]).
    pub fn record_event(&self, event: &Event) {
        if self.inner.is_some()
            && let Some(update) = StatusUpdate::from_event(event)
        {
            self.record(update);
        }
    }

    /// Waits (at most `timeout`) until every update queued so far has been tried; for
    /// shutdown, so a stopping process writes what it has. `false` on timeout.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let Some(inner) = &self.inner else { return true };
        let (done, wait) = oneshot::channel();
        let flushed = async { inner.queue.send(Item::Flush(done)).await.is_ok() && wait.await.is_ok() };
        tokio::time::timeout(timeout, flushed).await.unwrap_or(false)
    }
}

/// Drains the queue: everything queued while the previous pipelines were in flight
/// goes into the next one.
async fn run(
    pool: sendfleet_redis::RedisPool,
    mut receiver: mpsc::Receiver<Item>,
    prefix: String,
    ttl_seconds: u64,
    counters: Arc<Counters>,
) {
    let script = Arc::new(apply_script());
    let in_flight = Arc::new(Semaphore::new(CONCURRENT_BATCHES as usize));
    while let Some(first) = receiver.recv().await {
        let mut batch = Vec::with_capacity(64);
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Item::Update(update) => batch.push(*update),
                Item::Flush(done) => flushes.push(done),
            }
            if batch.len() < MAX_BATCH {
                next = receiver.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
            let (pool, script, counters, prefix) = (pool.clone(), script.clone(), counters.clone(), prefix.clone());
            tokio::spawn(async move {
                write_batch(&pool, &script, &prefix, ttl_seconds, &batch, &counters).await;
                drop(permit);
            });
        }
        if !flushes.is_empty() {
            // Every pipeline started so far has ended once all permits are free.
            if let Ok(all) = in_flight.acquire_many(CONCURRENT_BATCHES).await {
                drop(all);
            }
            for done in flushes {
                let _ = done.send(());
            }
        }
    }
}

/// One pipeline of scripts. A Redis that lost its script cache (restarted, flushed)
/// answers NOSCRIPT: the script is loaded and those updates are sent once more.
async fn write_batch(
    pool: &sendfleet_redis::RedisPool,
    script: &redis::Script,
    prefix: &str,
    ttl_seconds: u64,
    batch: &[StatusUpdate],
    counters: &Counters,
) {
    let result = async {
        let mut connection = pool.get().await.map_err(|e| e.to_string())?;
        let mut pending: Vec<&StatusUpdate> = batch.iter().collect();
        for round in 0..2 {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for update in &pending {
                push_apply(&mut pipe, script, prefix, ttl_seconds, update);
            }
            let replies: Vec<redis::RedisResult<i64>> =
                pipe.query_async(&mut *connection).await.map_err(|e| e.to_string())?;
            let mut missing_script = Vec::new();
            for (update, reply) in pending.iter().zip(replies) {
                match reply {
                    Ok(1) => counters.written.increment(1),
                    Ok(_) => counters.stale.increment(1),
                    Err(err)
                        if round == 0 && err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        missing_script.push(*update);
                    }
                    Err(err) => {
                        counters.failed.increment(1);
                        warn(counters, &err.to_string());
                    }
                }
            }
            if missing_script.is_empty() {
                break;
            }
            script.prepare_invoke().load_async(&mut *connection).await.map_err(|e| e.to_string())?;
            pending = missing_script;
        }
        Ok::<(), String>(())
    }
    .await;
    if let Err(err) = result {
        // The whole pipeline is lost; how many were written before the error is unknown.
        counters.failed.increment(batch.len() as u64);
        warn(counters, &err);
    }
}

/// `EVALSHA` of the apply script for one update (argument layout: see `APPLY_LUA`).
fn push_apply(pipe: &mut redis::Pipeline, script: &redis::Script, prefix: &str, ttl: u64, update: &StatusUpdate) {
    let command = pipe
        .cmd("EVALSHA")
        .arg(script.get_hash())
        .arg(1)
        .arg(record_key(prefix, &update.message_id))
        .arg(update.state.as_str())
        .arg(update.at_ms)
        .arg(ttl)
        .arg(update.attempts);
    let sticky = [
        ("channel", update.channel.map(|c| c.as_str())),
        ("provider", update.provider.as_deref()),
        ("fallback_for", update.fallback_for.as_deref()),
    ];
    let always =
        [("sms_leg", update.sms_leg.as_deref()), ("provider_message_id", update.provider_message_id.as_deref())];
    let winner = [
        ("reason_code", update.reason_code.as_deref()),
        ("reason", update.reason.as_deref()),
        ("status", update.provider_status.as_deref()),
        ("error", update.provider_error.as_deref()),
    ];
    for group in [&sticky[..], &always[..], &winner[..]] {
        command.arg(group.iter().filter(|(_, value)| value.is_some()).count());
        for (field, value) in group {
            if let Some(value) = value {
                command.arg(*field).arg(*value);
            }
        }
    }
}

/// Logs a failure, at most once per [`WARN_EVERY_MS`] (a Redis outage would otherwise
/// log once per pipeline).
fn warn(counters: &Counters, error: &str) {
    let now = now_ms();
    let last = counters.last_warning_ms.load(Ordering::Relaxed);
    if now - last >= WARN_EVERY_MS
        && counters.last_warning_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    {
        tracing::warn!(
            error,
            "message status updates not written (sendfleet_status_updates_total{{outcome=\"failed\"}})"
        );
    }
}

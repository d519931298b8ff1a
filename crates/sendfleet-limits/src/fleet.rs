//! A worker's side of the fleet-wide rate: lease slots in small batches, hand them to
//! sending tasks one by one, each waiting for its slot's time.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::gcra::{LUA_LEASE, Lease, SlotParams};

/// Why no slot could be had.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The lease store (Redis) did not answer. The limiter fails closed: nothing is sent
    /// without a slot.
    #[error("rate lease store unavailable: {0}")]
    Unavailable(String),
}

/// Where leases come from. The production source is [`RedisLeases`]; tests of the
/// local scheduling use an in-process [`crate::gcra::Gcra`].
pub trait LeaseSource: Send + Sync {
    /// Leases up to `wanted` slots.
    fn lease(&self, wanted: u32) -> BoxFuture<'_, Result<Lease, LimitError>>;
}

/// Leases from the GCRA script in Redis, one key per provider.
pub struct RedisLeases {
    pool: sendfleet_redis::RedisPool,
    key: String,
    params: SlotParams,
    script: redis::Script,
}

impl RedisLeases {
    /// A source for the provider whose TAT lives at `key`.
    pub fn new(pool: sendfleet_redis::RedisPool, key: String, params: SlotParams) -> RedisLeases {
        RedisLeases { pool, key, params, script: redis::Script::new(LUA_LEASE) }
    }
}

impl LeaseSource for RedisLeases {
    fn lease(&self, wanted: u32) -> BoxFuture<'_, Result<Lease, LimitError>> {
        Box::pin(async move {
            let mut connection = self.pool.get().await.map_err(|e| LimitError::Unavailable(e.to_string()))?;
            let (granted, start_us, now_us): (i64, i64, i64) = self
                .script
                .key(&self.key)
                .arg(self.params.interval_us)
                .arg(self.params.tolerance_us)
                .arg(wanted)
                .arg(self.params.horizon_us)
                .invoke_async(&mut *connection)
                .await
                .map_err(|e| LimitError::Unavailable(e.to_string()))?;
            if granted > 0 {
                // A lease a failover could lose would be granted again, above the cap.
                self.pool
                    .wait_for_replica(&mut connection)
                    .await
                    .map_err(|e| LimitError::Unavailable(e.to_string()))?;
            }
            Ok(Lease { granted: granted.max(0) as u32, start_us, interval_us: self.params.interval_us, now_us })
        })
    }
}

/// Slots leased but not yet used, in server time, with the local clock mapping.
struct Slots {
    queue: VecDeque<i64>,
    /// Time of the last slot leased (server clock, µs).
    leased_until: i64,
    /// Server time ↔ local instant: the most certain of the leases' readings.
    anchor: Option<Anchor>,
}

/// One reading of the lease store's clock: it read `server_us` somewhere within a round
/// trip of `rtt_us` centred on the local instant `at`.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    at: Instant,
    server_us: i64,
    rtt_us: i64,
}

/// The most two clocks are assumed to drift apart, in parts per million (NTP slews a
/// clock by at most 500 ppm).
const MAX_DRIFT_PPM: i64 = 500;

impl Anchor {
    /// How far off this reading may be at `now`: half its round trip, plus drift since.
    fn uncertainty_us(&self, now: Instant) -> i64 {
        self.rtt_us / 2 + signed_micros(now, self.at).max(0) * MAX_DRIFT_PPM / 1_000_000
    }
}

impl Slots {
    fn server_now(&self, local: Instant) -> Option<i64> {
        let anchor = self.anchor?;
        Some(anchor.server_us + signed_micros(local, anchor.at))
    }

    fn local_time(&self, server_us: i64) -> Instant {
        match self.anchor {
            Some(Anchor { at, server_us: server, .. }) if server_us >= server => {
                at + Duration::from_micros((server_us - server) as u64)
            }
            Some(Anchor { at, server_us: server, .. }) => {
                at.checked_sub(Duration::from_micros((server - server_us) as u64)).unwrap_or(at)
            }
            None => Instant::now(),
        }
    }
}

fn signed_micros(a: Instant, b: Instant) -> i64 {
    if a >= b { (a - b).as_micros() as i64 } else { -((b - a).as_micros() as i64) }
}

/// A slot taken: the time (server clock, µs) it was granted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    /// The slot's time, µs on the lease store's clock.
    pub slot_us: i64,
}

/// One provider's fleet-wide rate, as seen by one worker.
pub struct FleetLimiter {
    source: Arc<dyn LeaseSource>,
    params: SlotParams,
    batch: u32,
    slots: Mutex<Slots>,
    fetch: tokio::sync::Mutex<()>,
    granted: AtomicU64,
    expired: AtomicU64,
    lease_errors: AtomicU64,
    recent: Mutex<VecDeque<(Instant, u32)>>,
}

impl FleetLimiter {
    /// A limiter leasing `batch` slots at a time from `source`.
    pub fn new(source: Arc<dyn LeaseSource>, params: SlotParams, batch: u32) -> FleetLimiter {
        FleetLimiter {
            source,
            params,
            batch: batch.max(1),
            slots: Mutex::new(Slots { queue: VecDeque::new(), leased_until: 0, anchor: None }),
            fetch: tokio::sync::Mutex::new(()),
            granted: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            lease_errors: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// The lease batch for a rate: about 20 ms of slots, 1–100. At 4,600/s that is
    /// 92 slots, about 50 Redis calls/s for a worker running at the full cap.
    pub fn batch_for(rate_per_second: u32) -> u32 {
        (rate_per_second / 50).clamp(1, 100)
    }

    /// Waits for this task's slot. Fails closed: while the store is unavailable it keeps
    /// retrying for up to `give_up_after`, then returns an error (the caller retries the
    /// job later) — it never sends without a slot.
    pub async fn acquire(&self, give_up_after: Duration) -> Result<Permit, LimitError> {
        let deadline = Instant::now() + give_up_after;
        let mut backoff = Duration::from_millis(50);
        loop {
            if let Some((slot, at)) = self.take_slot() {
                tokio::time::sleep_until(at).await;
                // A task woken late (a stalled process) must not send on a stale slot:
                // that is how sends would bunch above the cap.
                if Instant::now() <= at + self.max_lateness() {
                    return Ok(Permit { slot_us: slot });
                }
                self.expired.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let guard = self.fetch.lock().await;
            if !self.slots.lock().queue.is_empty() {
                continue;
            }
            // Slots already leased reach far enough ahead: asking now would get only a
            // sliver of the horizon. Wait until half of it has passed, then lease a
            // full batch (this keeps Redis calls near rate/batch per second).
            if let Some(wait_until) = self.next_lease_time() {
                tokio::time::sleep_until(wait_until).await;
            }
            let asked_at = Instant::now();
            let result = self.source.lease(self.batch).await;
            match result {
                Ok(lease) => {
                    self.store(lease, asked_at, Instant::now());
                    if lease.granted == 0 {
                        let wait = Duration::from_micros(lease.retry_after_us(self.params.horizon_us) as u64);
                        drop(guard);
                        tokio::time::sleep(wait.min(Duration::from_millis(100))).await;
                    }
                    backoff = Duration::from_millis(50);
                }
                Err(err) => {
                    drop(guard);
                    self.lease_errors.fetch_add(1, Ordering::Relaxed);
                    if Instant::now() + backoff > deadline {
                        return Err(err);
                    }
                    tracing::warn!(error = %err, "cannot lease send slots; holding sends");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    fn next_lease_time(&self) -> Option<Instant> {
        let slots = self.slots.lock();
        let server_now = slots.server_now(Instant::now())?;
        let ahead = slots.leased_until - server_now;
        (ahead > self.params.horizon_us / 2).then(|| slots.local_time(slots.leased_until - self.params.horizon_us / 2))
    }

    /// How late after its time a slot may still be used (later, it could bunch sends
    /// above the cap): the GCRA tolerance plus a grace.
    pub fn max_lateness(&self) -> Duration {
        Duration::from_micros((self.params.tolerance_us + self.params.grace_us) as u64)
    }

    fn take_slot(&self) -> Option<(i64, Instant)> {
        let mut slots = self.slots.lock();
        let now = Instant::now();
        let server_now = slots.server_now(now)?;
        // A slot too far in the past would let uses bunch up beyond the burst: drop it.
        let oldest_usable = server_now - self.params.tolerance_us - self.params.grace_us;
        while let Some(&front) = slots.queue.front() {
            if front >= oldest_usable {
                break;
            }
            slots.queue.pop_front();
            self.expired.fetch_add(1, Ordering::Relaxed);
        }
        let slot = slots.queue.pop_front()?;
        Some((slot, slots.local_time(slot)))
    }

    fn store(&self, lease: Lease, asked_at: Instant, answered_at: Instant) {
        let mut slots = self.slots.lock();
        // The server read its clock somewhere during the round trip; the midpoint is
        // the best local estimate (error ≤ half the round trip). On a busy host most
        // round trips are stretched by our own scheduling, by milliseconds, so a new
        // reading replaces the anchor only when it is more certain: the mapping stays
        // as good as the fastest recent round trip (as NTP picks its samples).
        let midpoint = asked_at + (answered_at - asked_at) / 2;
        let reading =
            Anchor { at: midpoint, server_us: lease.now_us, rtt_us: (answered_at - asked_at).as_micros() as i64 };
        if slots.anchor.is_none_or(|anchor| reading.uncertainty_us(midpoint) <= anchor.uncertainty_us(midpoint)) {
            slots.anchor = Some(reading);
        }
        for k in 0..i64::from(lease.granted) {
            slots.queue.push_back(lease.start_us + k * lease.interval_us);
        }
        if lease.granted > 0 {
            slots.leased_until = lease.start_us + (i64::from(lease.granted) - 1) * lease.interval_us;
        }
        drop(slots);
        self.granted.fetch_add(u64::from(lease.granted), Ordering::Relaxed);
        let mut recent = self.recent.lock();
        recent.push_back((answered_at, lease.granted));
        while recent.front().is_some_and(|(at, _)| answered_at.duration_since(*at) > Duration::from_secs(1)) {
            recent.pop_front();
        }
    }

    /// Slots leased by this worker in the last second: its current share of the rate.
    pub fn share_per_second(&self) -> u32 {
        let now = Instant::now();
        self.recent
            .lock()
            .iter()
            .filter(|(at, _)| now.duration_since(*at) <= Duration::from_secs(1))
            .map(|(_, n)| n)
            .sum()
    }

    /// Slots leased so far.
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }

    /// Slots that expired unused (capacity lost, never overshoot).
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    /// Lease calls the store failed (Redis unreachable or refusing).
    pub fn lease_errors(&self) -> u64 {
        self.lease_errors.load(Ordering::Relaxed)
    }

    /// The slot parameters.
    pub fn params(&self) -> SlotParams {
        self.params
    }
}

#[cfg(test)]
mod tests;

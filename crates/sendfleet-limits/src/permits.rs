//! A provider's concurrency for the **whole fleet**: requests in flight to it, summed
//! over every worker, never above its `concurrency`.
//!
//! Each worker holds a number of permits recorded in Redis (a hash of holder → held,
//! with an expiry per holder) and hands them to its sending tasks locally, so a request
//! costs no Redis call. A sync task tells Redis what the worker wants (its tasks in
//! flight plus those waiting) every [`PermitSettings::period`], and at once when tasks
//! wait and it could grow. One Lua script, atomically:
//!
//! - drops holders whose lease expired (a crashed worker's permits come back after
//!   [`PermitSettings::lease_ttl`], the provider's request timeout plus 1.5 s);
//! - shares the limit by water-filling over the live holders' demands (each gets its
//!   demand, up to an equal level), so a joining worker gets its share as the others
//!   shrink to theirs;
//! - grows the caller only into free permits (the sum of held permits never exceeds
//!   the limit), and shrinks it towards its share, never below what it has in flight.
//!
//! The bound holds because a worker only uses a permit it holds (`in_use ≤ held`) and
//! the held permits of all live holders sum to at most the limit. A worker that cannot
//! renew (Redis down) stops starting requests once too little of its lease is left for a
//! request to finish inside it, so its permits cannot be handed out while its requests
//! are still in flight (fail closed, like the rate).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::LimitError;

/// The lease script. KEYS: held hash, expiry zset, demand hash. ARGV: holder, limit,
/// demand, in use, lease TTL (ms; 0 = leave). Returns `{held, allowed}`.
pub const LUA_PERMITS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, h in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('HDEL', KEYS[1], h)
  redis.call('HDEL', KEYS[3], h)
  redis.call('ZREM', KEYS[2], h)
end
local holder = ARGV[1]
local limit = tonumber(ARGV[2])
local demand = tonumber(ARGV[3])
local in_use = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
if ttl == 0 then
  redis.call('HDEL', KEYS[1], holder)
  redis.call('HDEL', KEYS[3], holder)
  redis.call('ZREM', KEYS[2], holder)
  return {0, 0}
end
redis.call('ZADD', KEYS[2], now + ttl, holder)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
redis.call('HSET', KEYS[3], holder, demand)
redis.call('PEXPIRE', KEYS[3], ttl * 2)
-- Water-filling: each holder gets its demand up to a level; the level's remainder goes
-- one each to the largest unsatisfied demands (ties by name), so no permit is left idle.
local entries = redis.call('HGETALL', KEYS[3])
local demands = {}
for i = 1, #entries, 2 do demands[#demands + 1] = {entries[i], tonumber(entries[i + 1])} end
table.sort(demands, function(a, b)
  if a[2] == b[2] then return a[1] < b[1] end
  return a[2] < b[2]
end)
local remaining = limit
local n = #demands
local allowed = demand
for i = 1, n do
  local d = demands[i][2]
  local unsatisfied = n - i + 1
  if d * unsatisfied > remaining then
    local level = math.floor(remaining / unsatisfied)
    local extra = remaining - level * unsatisfied
    local share = level
    for j = i, n do
      if demands[j][1] == holder and (j - i + 1) > unsatisfied - extra then share = level + 1 end
    end
    allowed = math.min(demand, share)
    break
  end
  remaining = remaining - d
end
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end
local mine = tonumber(redis.call('HGET', KEYS[1], holder) or '0')
local held = mine
if allowed > mine then
  held = mine + math.max(0, math.min(allowed - mine, limit - total))
elseif allowed < mine then
  held = math.max(allowed, in_use)
end
redis.call('HSET', KEYS[1], holder, held)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return {held, allowed}
";

/// What the store answered to one sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holding {
    /// Permits this holder now holds.
    pub held: u32,
    /// Its share of the limit for its demand (it grows towards it as permits free up).
    pub allowed: u32,
}

/// Where permits are held: Redis in production ([`RedisPermits`]).
pub trait PermitStore: Send + Sync {
    /// Reports `demand` and `in_use` for `holder`, renews its lease for `ttl` (zero:
    /// leave), and returns what it holds now.
    fn sync(&self, holder: &str, demand: u32, in_use: u32, ttl: Duration)
    -> BoxFuture<'_, Result<Holding, LimitError>>;
}

/// Permits in Redis: three keys per provider under `key`.
pub struct RedisPermits {
    pool: sendfleet_redis::RedisPool,
    keys: [String; 3],
    limit: u32,
    script: redis::Script,
}

impl RedisPermits {
    /// A store for the provider whose permits live under `key` (`<key>:held`, …), with
    /// `limit` permits for the fleet.
    pub fn new(pool: sendfleet_redis::RedisPool, key: &str, limit: u32) -> RedisPermits {
        RedisPermits {
            pool,
            keys: [format!("{key}:held"), format!("{key}:expiry"), format!("{key}:demand")],
            limit,
            script: redis::Script::new(LUA_PERMITS),
        }
    }
}

impl PermitStore for RedisPermits {
    fn sync(
        &self,
        holder: &str,
        demand: u32,
        in_use: u32,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Holding, LimitError>> {
        let holder = holder.to_owned();
        Box::pin(async move {
            let mut connection = self.pool.get().await.map_err(|e| LimitError::Unavailable(e.to_string()))?;
            let (held, allowed): (i64, i64) = self
                .script
                .key(&self.keys[0])
                .key(&self.keys[1])
                .key(&self.keys[2])
                .arg(holder)
                .arg(self.limit)
                .arg(demand)
                .arg(in_use)
                .arg(ttl.as_millis() as u64)
                .invoke_async(&mut *connection)
                .await
                .map_err(|e| LimitError::Unavailable(e.to_string()))?;
            Ok(Holding { held: held.max(0) as u32, allowed: allowed.max(0) as u32 })
        })
    }
}

/// Timing of the permits of one provider.
#[derive(Debug, Clone, Copy)]
pub struct PermitSettings {
    /// How long a holder's permits live without a sync: a crashed worker's come back
    /// after this.
    pub lease_ttl: Duration,
    /// The longest a request may last (the provider's request timeout): no request
    /// starts unless it can end inside the lease.
    pub request_timeout: Duration,
    /// Sync period when nothing waits.
    pub period: Duration,
    /// Sync period while tasks wait and the share is not reached.
    pub fast_period: Duration,
}

impl PermitSettings {
    /// For a provider with this request timeout: lease = timeout + 1.5 s (permits stay
    /// usable 1 s after a sync, four sync periods), sync every 250 ms (10 ms while
    /// growing).
    pub fn for_timeout(request_timeout: Duration) -> PermitSettings {
        PermitSettings {
            lease_ttl: request_timeout + USABLE_AFTER_SYNC + LEASE_MARGIN,
            request_timeout,
            period: Duration::from_millis(250),
            fast_period: Duration::from_millis(10),
        }
    }

    /// How long after a sync's start permits may still be handed out: a request started
    /// then ends [`LEASE_MARGIN`] before the lease does.
    fn usable_for(&self) -> Duration {
        self.lease_ttl.saturating_sub(self.request_timeout + LEASE_MARGIN)
    }
}

/// How long held permits stay usable after the last good sync. Short, because a crashed
/// worker's permits come back only this long (plus the request timeout and the margin)
/// after its last sync; four sync periods, so one slow answer from Redis stops nothing.
const USABLE_AFTER_SYNC: Duration = Duration::from_secs(1);

/// Between the end of the longest request started inside the lease and the lease's end:
/// covers the time from the permit to the request leaving, and clock rates.
const LEASE_MARGIN: Duration = Duration::from_millis(500);

struct State {
    /// The highest demand of the last second, and when it was seen: reported instead of
    /// the instant demand so a bursty worker keeps its permits between bursts.
    peak: (u32, Instant),
    held: u32,
    allowed: u32,
    in_use: u32,
    waiting: u32,
    /// Until when held permits may be handed out (the last good sync's start plus the
    /// lease minus a request's longest life).
    usable_until: Option<Instant>,
    /// While a sync is in flight: the requests it reported in use. The store may shrink
    /// this holder down to that number, so no more are started until it answers (else
    /// the store would count fewer than are in flight, and hand the rest out).
    sync_floor: Option<u32>,
}

/// How long a demand peak is remembered.
const PEAK_WINDOW: Duration = Duration::from_secs(1);

/// The demand a worker reports: its peak plus half again (at least 4). Without the
/// headroom a worker that holds just its peak needs a sync for every rise; its tasks wait
/// for permits meanwhile and their rate slots go stale, which cost a single worker at
/// the cap 10 % of its throughput (`capped` bench: 88 % of the cap instead of 98 %).
/// When the fleet is short, every busy worker asks for more than its share anyway, so
/// the split is the same.
fn with_headroom(peak: u32) -> u32 {
    peak.saturating_add((peak / 2).max(4))
}

struct Inner {
    store: Arc<dyn PermitStore>,
    holder: String,
    settings: PermitSettings,
    state: Mutex<State>,
    /// Wakes local waiters (a permit came back, or more were granted).
    available: Notify,
    /// Wakes the sync task early.
    wanted: Arc<Notify>,
    sync_errors: std::sync::atomic::AtomicU64,
}

/// One provider's fleet-wide concurrency, as seen by one worker. Dropping the last
/// clone stops its sync task; [`FleetPermits::leave`] hands the permits back at once.
#[derive(Clone)]
pub struct FleetPermits {
    inner: Arc<Inner>,
    stop: CancellationToken,
}

/// The right to have one request in flight; dropping it gives it back.
pub struct FleetPermit {
    inner: Arc<Inner>,
}

impl Drop for FleetPermit {
    fn drop(&mut self) {
        let mut state = self.inner.state.lock();
        state.in_use -= 1;
        let shrink = state.held > state.allowed && state.in_use <= state.allowed;
        drop(state);
        self.inner.available.notify_one();
        if shrink {
            // Above its share: give the permit back soon rather than at the next period.
            self.inner.wanted.notify_one();
        }
    }
}

/// A task counted as waiting for a permit; uncounted when its wait is given up.
struct Waiter<'a> {
    inner: &'a Inner,
    counted: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.inner.state.lock().waiting -= 1;
        }
    }
}

impl FleetPermits {
    /// Starts the holder `holder` (unique per process and provider) and its sync task.
    pub fn start(store: Arc<dyn PermitStore>, holder: String, settings: PermitSettings) -> FleetPermits {
        let inner = Arc::new(Inner {
            store,
            holder,
            settings,
            state: Mutex::new(State {
                peak: (0, Instant::now()),
                held: 0,
                allowed: 0,
                in_use: 0,
                waiting: 0,
                usable_until: None,
                sync_floor: None,
            }),
            available: Notify::new(),
            wanted: Arc::new(Notify::new()),
            sync_errors: std::sync::atomic::AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        tokio::spawn(sync_loop(Arc::downgrade(&inner), inner.wanted.clone(), stop.clone()));
        FleetPermits { inner, stop }
    }

    /// Waits for a permit. Cancel-safe: a wait given up (a timeout) stops counting as
    /// demand.
    pub async fn acquire(&self) -> FleetPermit {
        let mut waiter = Waiter { inner: &self.inner, counted: false };
        loop {
            let notified = self.inner.available.notified();
            {
                let mut state = self.inner.state.lock();
                let usable = state.usable_until.is_some_and(|until| Instant::now() < until);
                // Not beyond the share either: a worker above it (another joined) lets
                // its in-flight requests drain to the share, then gives the rest back.
                let ceiling = state.held.min(state.allowed).min(state.sync_floor.unwrap_or(u32::MAX));
                if usable && state.in_use < ceiling {
                    state.in_use += 1;
                    if waiter.counted {
                        state.waiting -= 1;
                        waiter.counted = false;
                    }
                    return FleetPermit { inner: self.inner.clone() };
                }
                // Wake the sync task only when a sync can help: the first task to
                // wait, or a share not yet reached. (Tasks arriving while the fleet is
                // saturated wait for local releases and the periodic sync.)
                let first = !waiter.counted && state.waiting == 0;
                if !waiter.counted {
                    state.waiting += 1;
                    waiter.counted = true;
                }
                if first || state.held < state.allowed || !usable {
                    self.inner.wanted.notify_one();
                }
            }
            // A bounded wait: a lease that became unusable by time alone wakes no one.
            drop(tokio::time::timeout(self.inner.settings.period, notified).await);
        }
    }

    /// Whether the fleet gives this worker fewer permits than it asks for: the
    /// provider's concurrency, not the rate, is what holds its requests back.
    pub fn is_short(&self) -> bool {
        let state = self.inner.state.lock();
        state.allowed < state.peak.0
    }

    /// Permits this worker holds and uses now.
    pub fn held_and_in_use(&self) -> (u32, u32) {
        let state = self.inner.state.lock();
        (state.held, state.in_use)
    }

    /// Syncs that failed (the store unreachable).
    pub fn sync_errors(&self) -> u64 {
        self.inner.sync_errors.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops syncing and hands every permit back to the fleet (call at shutdown, after
    /// the last request ended). Bounded to 2 s: with the store unreachable the permits
    /// come back when their lease ends instead, and shutdown does not wait for it.
    pub async fn leave(&self) {
        self.stop.cancel();
        let leaving = self.inner.store.sync(&self.inner.holder, 0, 0, Duration::ZERO);
        let _ = tokio::time::timeout(Duration::from_secs(2), leaving).await;
    }
}

impl Drop for FleetPermits {
    fn drop(&mut self) {
        // The sync task holds a weak reference; the last clone going away stops it.
        if Arc::strong_count(&self.inner) == 1 {
            self.stop.cancel();
        }
    }
}

async fn sync_loop(inner: std::sync::Weak<Inner>, wanted: Arc<Notify>, stop: CancellationToken) {
    loop {
        let Some(strong) = inner.upgrade() else { return };
        let (demand, in_use, growing) = {
            let mut state = strong.state.lock();
            let now_demand = state.in_use + state.waiting;
            let now = Instant::now();
            if now_demand >= state.peak.0 || now.duration_since(state.peak.1) > PEAK_WINDOW {
                state.peak = (now_demand, now);
            }
            // Reported as in use: what is, or what the last answer lets start meanwhile.
            // The store never shrinks this holder below it, so requests go on starting
            // up to the share while the sync is in flight (holding them at the count
            // in use cost 5-10 % of C ÷ L with the fast syncs of a short fleet); a
            // smaller share takes effect from this answer on, and the permits above it
            // go back at the next sync.
            let reported = state.in_use.max(state.held.min(state.allowed));
            state.sync_floor = Some(reported);
            (with_headroom(state.peak.0), reported, state.waiting > 0 && state.held < state.allowed)
        };
        let started = Instant::now();
        let settings = strong.settings;
        match strong.store.sync(&strong.holder, demand, in_use, settings.lease_ttl).await {
            Ok(holding) => {
                let mut state = strong.state.lock();
                state.sync_floor = None;
                state.held = holding.held;
                state.allowed = holding.allowed;
                state.usable_until = Some(started + settings.usable_for());
                drop(state);
                // Waiters held back during the sync may go on (and more, if it grew).
                strong.available.notify_waiters();
            }
            Err(err) => {
                // Nothing changed in the store: what is held stays held.
                strong.state.lock().sync_floor = None;
                strong.available.notify_waiters();
                strong.sync_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(error = %err, "cannot renew concurrency permits; new requests stop when the lease runs short");
            }
        }
        let period = if growing { settings.fast_period } else { settings.period };
        let woken = wanted.notified();
        drop(strong);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
            () = woken => {
                // Batch the wake-ups of many tasks into one sync.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;

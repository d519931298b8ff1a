//! Rates per sender under a provider's rate: one slot that satisfies both at once.
//!
//! Carriers limit each sender (a long code, a short code, a toll-free number) as well as
//! the account. A job of a rated sender needs a provider slot *and* a sender slot at the
//! same instant. Taking them one after the other wastes whichever was taken first while
//! the other is awaited (a provider slot held by a job waiting for its sender is a slot
//! no other sender can use; a sender slot held while the provider is busy goes stale).
//! So both are granted in one Redis script ([`LUA_JOINT_LEASE`]), one slot at a time: the
//! slot is the provider's next free slot, granted only when the sender is free by then;
//! otherwise nothing is taken and the answer says when the sender will be free. The
//! script runs atomically, so two workers never interleave between the two keys, and no
//! task ever holds one slot while waiting for the other: no waste, no deadlock.
//!
//! One task per sender per worker asks at a time ([`SenderRate`] serialises them), so a
//! busy sender costs Redis about one call per sender slot plus one per refusal.

use std::time::Duration;

use tokio::time::Instant;

use crate::{
    LimitError,
    gcra::{Lease, SlotParams},
};

/// The joint script. `KEYS[1]`: the provider's TAT key, `KEYS[2]`: the sender's.
/// `ARGV`: provider interval, provider tolerance, sender interval, sender tolerance,
/// horizon (µs). Returns `{granted, start, now}`: with `granted = 1`, the slot at `start`
/// (server clock, µs) is taken for both; with 0, nothing was taken and `start` is when
/// asking again can succeed.
pub const LUA_JOINT_LEASE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local p_interval = tonumber(ARGV[1])
local p_tolerance = tonumber(ARGV[2])
local s_interval = tonumber(ARGV[3])
local s_tolerance = tonumber(ARGV[4])
local horizon = tonumber(ARGV[5])
local p_tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local s_tat = tonumber(redis.call('GET', KEYS[2]) or '0')
local start = math.max(p_tat, now - p_tolerance)
local sender_free = math.max(s_tat, now - s_tolerance)
if sender_free > start then
  return {0, sender_free, now}
end
if start > now + horizon then
  return {0, start - horizon, now}
end
redis.call('SET', KEYS[1], start + p_interval, 'PX', 60000)
redis.call('SET', KEYS[2], start + s_interval, 'PX', 60000)
return {1, start, now}
"#;

/// One sender's fleet-wide rate under its provider's.
pub struct SenderRate {
    pool: sendfleet_redis::RedisPool,
    provider_key: String,
    provider: SlotParams,
    sender_key: String,
    sender: SlotParams,
    script: redis::Script,
    /// One asking task per sender in this process.
    turn: tokio::sync::Mutex<()>,
}

impl SenderRate {
    /// The sender whose TAT lives at `sender_key`, under the provider whose TAT lives at
    /// `provider_key` (the key its [`crate::RedisLeases`] uses).
    pub fn new(
        pool: sendfleet_redis::RedisPool,
        provider_key: String,
        provider: SlotParams,
        sender_key: String,
        sender: SlotParams,
    ) -> SenderRate {
        SenderRate {
            pool,
            provider_key,
            provider,
            sender_key,
            sender,
            script: redis::Script::new(LUA_JOINT_LEASE),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Asks once for a slot good for both rates.
    pub async fn lease(&self) -> Result<Lease, LimitError> {
        let mut connection = self.pool.get().await.map_err(|e| LimitError::Unavailable(e.to_string()))?;
        let (granted, start_us, now_us): (i64, i64, i64) = self
            .script
            .key(&self.provider_key)
            .key(&self.sender_key)
            .arg(self.provider.interval_us)
            .arg(self.provider.tolerance_us)
            .arg(self.sender.interval_us)
            .arg(self.sender.tolerance_us)
            .arg(self.provider.horizon_us)
            .invoke_async(&mut *connection)
            .await
            .map_err(|e| LimitError::Unavailable(e.to_string()))?;
        if granted > 0 {
            self.pool.wait_for_replica(&mut connection).await.map_err(|e| LimitError::Unavailable(e.to_string()))?;
        }
        Ok(Lease { granted: granted.max(0) as u32, start_us, interval_us: self.sender.interval_us, now_us })
    }

    /// Waits for a slot good for both rates and returns when it is due. `enter` is
    /// called before each ask and its guard held until the slot (the worker's lane
    /// turn); it is let go while the sender is busy. Fails closed after `give_up_after`
    /// of store errors.
    pub async fn acquire<G, F: Future<Output = G>>(
        &self,
        give_up_after: Duration,
        mut enter: impl FnMut() -> F,
    ) -> Result<SlotTaken, LimitError> {
        let _turn = self.turn.lock().await;
        let deadline = Instant::now() + give_up_after;
        let mut backoff = Duration::from_millis(50);
        let mut expired = 0;
        loop {
            let guard = enter().await;
            let asked = Instant::now();
            let result = self.lease().await;
            let answered = Instant::now();
            match result {
                Ok(lease) => {
                    backoff = Duration::from_millis(50);
                    // The server read its clock mid-round-trip.
                    let server_now = asked + (answered - asked) / 2;
                    let due = at_server_time(server_now, lease.now_us, lease.start_us);
                    if lease.granted == 0 {
                        drop(guard);
                        let wait = due.saturating_duration_since(Instant::now());
                        tokio::time::sleep(wait.clamp(Duration::from_millis(1), Duration::from_secs(1))).await;
                        continue;
                    }
                    tokio::time::sleep_until(due).await;
                    let lateness = Duration::from_micros((self.grace_us()) as u64);
                    if Instant::now() <= due + lateness {
                        return Ok(SlotTaken { expired });
                    }
                    // Woken too late: the slot is lost (capacity, never overshoot).
                    expired += 1;
                }
                Err(err) => {
                    drop(guard);
                    if Instant::now() + backoff > deadline {
                        return Err(err);
                    }
                    tracing::warn!(error = %err, "cannot lease sender slots; holding sends");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// How late a joint slot may still be used: the tighter of the two graces.
    fn grace_us(&self) -> i64 {
        (self.provider.tolerance_us + self.provider.grace_us).min(self.sender.tolerance_us + self.sender.grace_us)
    }
}

/// What taking a joint slot cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotTaken {
    /// Slots granted but reached too late to use.
    pub expired: u32,
}

/// The local instant of server time `server_us`, the server having read `now_us` at the
/// local instant `at`.
fn at_server_time(at: Instant, now_us: i64, server_us: i64) -> Instant {
    let offset = server_us - now_us;
    if offset >= 0 {
        at + Duration::from_micros(offset as u64)
    } else {
        at.checked_sub(Duration::from_micros(offset.unsigned_abs())).unwrap_or(at)
    }
}

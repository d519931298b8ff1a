//! The fleet-wide rate as a GCRA over *send slots*.
//!
//! A provider's rate `R` is a stream of slots spaced `T = 1/R` apart, shared by the
//! whole fleet. A worker leases a short run of consecutive slots (a "lease") and sends
//! one request per slot, not before the slot's time. Slots never overlap between
//! workers, so the fleet as a whole is paced at `R` however many workers there are and
//! however they join or leave.
//!
//! The run may start up to `tolerance` in the past (an idle provider allows a small
//! burst), and a slot may be used until `tolerance + grace` after its time (timer
//! lateness). Requests sent in any window of length `W` therefore use slots from a span
//! of `W + tolerance + grace`, which holds at most `(W + tolerance + grace)/T + 1`
//! slots. [`SlotParams::new`] picks `T` and `tolerance` so that this is at most the cap
//! for `W = 1 s`, leaving the configured burst as headroom for jitter between our send
//! and the provider's clock.
//!
//! The same arithmetic runs in Redis as one Lua script ([`LUA_LEASE`]); [`Gcra`] is
//! its in-process twin, used by unit tests of the bound itself.

/// One grant: `granted` slots at `start_us`, `start_us + interval_us`, … (server time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Slots granted (0 when the next free slot is beyond the horizon).
    pub granted: u32,
    /// Time of the first slot, µs (server clock).
    pub start_us: i64,
    /// Slot spacing, µs.
    pub interval_us: i64,
    /// The server's clock when granting, µs.
    pub now_us: i64,
}

impl Lease {
    /// When nothing was granted: how long until asking again can succeed.
    pub fn retry_after_us(&self, horizon_us: i64) -> i64 {
        (self.start_us - horizon_us - self.now_us).max(1_000)
    }
}

/// The GCRA parameters of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotParams {
    /// `T`, µs between slots.
    pub interval_us: i64,
    /// How far in the past a run may start (burst), µs.
    pub tolerance_us: i64,
    /// How late after its time a slot may still be used, µs.
    pub grace_us: i64,
    /// How far in the future slots are handed out, µs.
    pub horizon_us: i64,
}

/// Timer lateness allowed when using a slot. Tokio timers fire within ~1 ms.
pub const GRACE_US: i64 = 2_000;

impl SlotParams {
    /// Parameters for `rate` requests/s with `burst` extra requests allowed in any
    /// 1-second window *at the provider*.
    ///
    /// The burst is split. A third is the GCRA's own allowance (burst after idle, plus
    /// [`GRACE_US`] of timer lateness). Two thirds are headroom for what happens between
    /// our send and the provider's clock (scheduling on a busy machine, the network):
    /// slots are paced at `rate − ⅔·burst`, so sends in any 1-second window stay ≤
    /// `rate` and arrivals stay ≤ `rate + burst` as long as that jitter is under about
    /// `⅔·burst/rate` seconds (6.7 ms with the default burst of rate/100). The bench
    /// showed ~10 ms of arrival jitter on a saturated 2-core machine with only half the
    /// burst as headroom.
    pub fn new(rate_per_second: u32, burst: u32) -> SlotParams {
        let rate = i64::from(rate_per_second.max(1));
        let burst = i64::from(burst.max(3));
        let allowance = burst / 3;
        let paced = (rate - (burst - allowance)).max(1);
        // Rounded up: a truncated interval would pace slightly above the rate.
        let interval_us = (1_000_000 + paced - 1) / paced;
        let tolerance_us = ((allowance - 1) * interval_us - GRACE_US).max(0);
        // Hand out at most ~50 ms of future slots: enough to ride out a stalled lease
        // round trip, short enough that a worker that stops wastes little of the rate.
        SlotParams { interval_us, tolerance_us, grace_us: GRACE_US, horizon_us: 50_000 }
    }

    /// The largest number of slots whose use can fall in one window of `window_us`.
    pub fn bound(&self, window_us: i64) -> i64 {
        (window_us + self.tolerance_us + self.grace_us) / self.interval_us + 1
    }
}

/// The Redis script. `KEYS[1]`: the provider's TAT key. `ARGV`: interval, tolerance,
/// wanted slots, horizon (µs). Returns `{granted, start, now}` (µs, server clock).
pub const LUA_LEASE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local horizon = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(tat, now - tolerance)
local room = 0
if start <= now + horizon then
  room = math.floor((now + horizon - start) / interval) + 1
end
local granted = math.min(wanted, room)
if granted > 0 then
  redis.call('SET', KEYS[1], start + granted * interval, 'PX', 60000)
end
return {granted, start, now}
"#;

/// The in-process twin of [`LUA_LEASE`].
#[derive(Debug, Clone, Default)]
pub struct Gcra {
    tat_us: i64,
}

impl Gcra {
    /// Grants up to `wanted` slots at server time `now_us`.
    pub fn lease(&mut self, params: &SlotParams, wanted: u32, now_us: i64) -> Lease {
        let start = self.tat_us.max(now_us - params.tolerance_us);
        let room = if start <= now_us + params.horizon_us {
            (now_us + params.horizon_us - start) / params.interval_us + 1
        } else {
            0
        };
        let granted = i64::from(wanted).min(room);
        if granted > 0 {
            self.tat_us = start + granted * params.interval_us;
        }
        Lease { granted: granted as u32, start_us: start, interval_us: params.interval_us, now_us }
    }
}

/// The most slot *uses* in any window of `window_us`, given each use time (µs, any
/// order). Used by tests and the bench on grant logs and arrival logs alike.
pub fn max_in_window(times_us: &mut [i64], window_us: i64) -> usize {
    times_us.sort_unstable();
    let mut best = 0;
    let mut left = 0;
    for right in 0..times_us.len() {
        while times_us[right] - times_us[left] >= window_us {
            left += 1;
        }
        best = best.max(right - left + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_and_never_reused() {
        let params = SlotParams::new(1_000, 10);
        let mut gcra = Gcra::default();
        let a = gcra.lease(&params, 5, 1_000_000);
        let b = gcra.lease(&params, 5, 1_000_000);
        assert_eq!(a.granted, 5);
        assert_eq!(b.start_us, a.start_us + 5 * a.interval_us, "the next lease starts where the last ended");
    }

    #[test]
    fn an_idle_provider_allows_only_the_burst_in_the_past() {
        let params = SlotParams::new(1_000, 10);
        let mut gcra = Gcra::default();
        let lease = gcra.lease(&params, 1_000, 5_000_000);
        assert_eq!(lease.start_us, 5_000_000 - params.tolerance_us);
        let horizon_slots = (params.tolerance_us + params.horizon_us) / params.interval_us + 1;
        assert_eq!(i64::from(lease.granted), horizon_slots);
    }

    #[test]
    fn beyond_the_horizon_nothing_is_granted_and_the_wait_is_given() {
        let params = SlotParams::new(100, 1);
        let mut gcra = Gcra::default();
        let first = gcra.lease(&params, 100, 0);
        assert!(first.granted >= 1);
        let second = gcra.lease(&params, 100, 0);
        assert_eq!(second.granted, 0);
        assert!(second.retry_after_us(params.horizon_us) > 0);
    }

    /// Many greedy workers leasing at random times: the slot uses never exceed the
    /// cap plus the burst in any 1-second window.
    #[test]
    fn greedy_leasing_stays_within_rate_plus_burst() {
        let params = SlotParams::new(4_600, 46);
        let mut gcra = Gcra::default();
        let mut uses = Vec::new();
        let mut now = 0_i64;
        for step in 0..20_000 {
            now += 137 + (step % 7) * 911;
            let lease = gcra.lease(&params, 92, now);
            // Worst case for the bound: every slot used as late as allowed, or as
            // early as allowed (now, for slots already in the past).
            for k in 0..i64::from(lease.granted) {
                let slot = lease.start_us + k * lease.interval_us;
                let late = step % 2 == 0;
                let used = if late { slot.max(now) + params.grace_us } else { slot.max(now) };
                uses.push(used.max(slot));
            }
        }
        let worst = max_in_window(&mut uses, 1_000_000);
        assert!(worst as i64 <= params.bound(1_000_000));
        assert!(worst <= 4_600 - 10, "sends stay below the cap, most of the burst is left for jitter: {worst}");
        assert!(worst >= 4_540, "the rate is used, not starved: {worst}");
    }

    #[test]
    fn max_in_window_counts_a_half_open_window() {
        let mut times = vec![2_100_000, 0, 999_999, 1_000_000];
        assert_eq!(max_in_window(&mut times, 1_000_000), 2, "t and t + 1 s are not in one window");
        let mut burst = vec![5, 5, 5, 1_000_004];
        assert_eq!(max_in_window(&mut burst, 1_000_000), 4);
    }
}

//! The local scheduling under paused time: deterministic, no wall-clock sleeps.

use std::sync::Arc;

use futures_util::future::join_all;
use tokio::time::Instant;

use super::*;
use crate::gcra::{Gcra, max_in_window};

/// An in-process lease source on the tokio clock (the twin of the Redis script).
struct ClockGcra {
    base: Instant,
    params: SlotParams,
    gcra: Mutex<Gcra>,
    fail: std::sync::atomic::AtomicBool,
}

impl ClockGcra {
    fn new(params: SlotParams) -> Arc<ClockGcra> {
        Arc::new(ClockGcra { base: Instant::now(), params, gcra: Mutex::new(Gcra::default()), fail: false.into() })
    }
}

impl LeaseSource for ClockGcra {
    fn lease(&self, wanted: u32) -> BoxFuture<'_, Result<Lease, LimitError>> {
        Box::pin(async move {
            if self.fail.load(Ordering::Relaxed) {
                return Err(LimitError::Unavailable("down".into()));
            }
            let now = (Instant::now() - self.base).as_micros() as i64;
            Ok(self.gcra.lock().lease(&self.params, wanted, now))
        })
    }
}

/// Runs `jobs` acquisitions through `limiter` concurrently; returns when each got its
/// permit, in µs since `base`.
async fn acquire_all(limiter: Arc<FleetLimiter>, jobs: usize, base: Instant) -> Vec<i64> {
    let tasks = (0..jobs).map(|_| {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            limiter.acquire(Duration::from_secs(5)).await.expect("slot");
            (Instant::now() - base).as_micros() as i64
        })
    });
    join_all(tasks).await.into_iter().map(|r| r.expect("task")).collect()
}

#[tokio::test(start_paused = true)]
async fn one_worker_is_paced_at_the_rate() {
    let params = SlotParams::new(1_000, 10);
    let source = ClockGcra::new(params);
    let limiter = Arc::new(FleetLimiter::new(source.clone(), params, FleetLimiter::batch_for(1_000)));
    let mut uses = acquire_all(limiter.clone(), 3_000, source.base).await;
    let elapsed = *uses.iter().max().unwrap();
    assert!((2_900_000..=3_100_000).contains(&elapsed), "3,000 permits at 1,000/s take ~3 s, took {elapsed} µs");
    let worst = max_in_window(&mut uses, 1_000_000);
    assert!(worst <= 1_000 + 10, "worst 1-second window {worst}");
    assert!(limiter.granted() >= 3_000, "every permit came from a leased slot");
}

#[tokio::test(start_paused = true)]
async fn a_joining_worker_shares_the_rate_without_overshoot() {
    let params = SlotParams::new(2_000, 20);
    let source = ClockGcra::new(params);
    let first = Arc::new(FleetLimiter::new(source.clone(), params, FleetLimiter::batch_for(2_000)));
    let second = Arc::new(FleetLimiter::new(source.clone(), params, FleetLimiter::batch_for(2_000)));
    let base = source.base;
    let early = tokio::spawn(acquire_all(first.clone(), 4_000, base));
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let late = tokio::spawn(acquire_all(second.clone(), 2_000, base));
    let mut uses = early.await.unwrap();
    uses.extend(late.await.unwrap());
    let worst = max_in_window(&mut uses, 1_000_000);
    assert!(worst <= 2_000 + 20, "worst 1-second window with a worker joining: {worst}");
    assert!(second.granted() > 0 && first.granted() > 0);
    // 6,000 permits at 2,000/s: ~3 s, no slower (slots are shared, not wasted).
    let elapsed = *uses.iter().max().unwrap();
    assert!(elapsed <= 3_200_000, "took {elapsed} µs");
}

#[tokio::test(start_paused = true)]
async fn the_share_metric_follows_the_leases() {
    let params = SlotParams::new(500, 5);
    let source = ClockGcra::new(params);
    let limiter = Arc::new(FleetLimiter::new(source.clone(), params, FleetLimiter::batch_for(500)));
    acquire_all(limiter.clone(), 1_000, source.base).await;
    let share = limiter.share_per_second();
    assert!((450..=560).contains(&share), "share {share}/s at a 500/s rate");
}

#[tokio::test(start_paused = true)]
async fn an_unavailable_store_fails_closed_after_the_deadline() {
    let params = SlotParams::new(100, 1);
    let source = ClockGcra::new(params);
    source.fail.store(true, Ordering::Relaxed);
    let limiter = FleetLimiter::new(source.clone(), params, 2);
    let started = Instant::now();
    let result = limiter.acquire(Duration::from_secs(2)).await;
    assert!(matches!(result, Err(LimitError::Unavailable(_))));
    assert!(started.elapsed() <= Duration::from_secs(2), "gave up within the deadline");
    assert_eq!(limiter.granted(), 0, "nothing was sent unguarded");
    assert!(limiter.lease_errors() >= 2, "every failed lease call is counted: {}", limiter.lease_errors());
}

/// A lease store whose answers reach us late every other time (the server read its
/// clock at once, our side picked the reply up 20 ms later), as on a busy host.
struct SlowRepliesGcra {
    inner: Arc<ClockGcra>,
    calls: std::sync::atomic::AtomicU32,
}

impl LeaseSource for SlowRepliesGcra {
    fn lease(&self, wanted: u32) -> BoxFuture<'_, Result<Lease, LimitError>> {
        Box::pin(async move {
            let lease = self.inner.lease(wanted).await?;
            if self.calls.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(lease)
        })
    }
}

/// Slow replies do not move the clock mapping: every permit is used at its slot's
/// true time, not 10 ms (half the slow round trip) off.
#[tokio::test(start_paused = true)]
async fn slow_lease_replies_do_not_skew_slot_times() {
    let params = SlotParams::new(1_000, 10);
    let inner = ClockGcra::new(params);
    let base = inner.base;
    let source = Arc::new(SlowRepliesGcra { inner, calls: 0.into() });
    let limiter = Arc::new(FleetLimiter::new(source, params, 20));
    let tasks = (0..400).map(|_| {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            let permit = limiter.acquire(Duration::from_secs(5)).await.expect("slot");
            ((Instant::now() - base).as_micros() as i64, permit.slot_us)
        })
    });
    let uses: Vec<(i64, i64)> = join_all(tasks).await.into_iter().map(|r| r.expect("task")).collect();
    assert_eq!(uses.len(), 400);
    for (used_at, slot) in uses {
        let late = used_at - slot;
        assert!((0..=1_000).contains(&late), "slot {slot} used {late} µs after its time");
    }
}

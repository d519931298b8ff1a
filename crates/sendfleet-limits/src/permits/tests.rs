use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::*;

/// A store granting whatever is asked up to `limit` for one holder, or failing.
struct OneHolder {
    limit: u32,
    held: AtomicU32,
    down: AtomicBool,
    /// How long each sync takes, ms.
    delay_ms: AtomicU64,
    /// The largest `in_use` a sync reported.
    reported_in_use: AtomicU32,
}

impl PermitStore for OneHolder {
    fn sync(&self, _: &str, demand: u32, in_use: u32, ttl: Duration) -> BoxFuture<'_, Result<Holding, LimitError>> {
        Box::pin(async move {
            self.reported_in_use.fetch_max(in_use, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::Relaxed))).await;
            if self.down.load(Ordering::Relaxed) {
                return Err(LimitError::Unavailable("down".into()));
            }
            let allowed = if ttl.is_zero() { 0 } else { demand.min(self.limit) };
            let held = if ttl.is_zero() { 0 } else { allowed.max(in_use) };
            self.held.store(held, Ordering::Relaxed);
            Ok(Holding { held, allowed })
        })
    }
}

fn store(limit: u32) -> Arc<OneHolder> {
    Arc::new(OneHolder {
        limit,
        held: AtomicU32::new(0),
        down: AtomicBool::new(false),
        delay_ms: AtomicU64::new(0),
        reported_in_use: AtomicU32::new(0),
    })
}

fn settings() -> PermitSettings {
    PermitSettings {
        lease_ttl: Duration::from_millis(1_500),
        request_timeout: Duration::from_millis(200),
        period: Duration::from_millis(50),
        fast_period: Duration::from_millis(5),
    }
}

#[tokio::test]
async fn waiting_tasks_get_permits_up_to_the_limit_and_released_ones_are_reused() {
    let store = store(3);
    let permits = FleetPermits::start(store.clone(), "w1".into(), settings());
    let held: Vec<FleetPermit> = futures_util::future::join_all((0..3).map(|_| permits.acquire())).await;
    assert_eq!(permits.held_and_in_use(), (3, 3));
    let fourth = tokio::time::timeout(Duration::from_millis(200), permits.acquire()).await;
    assert!(fourth.is_err(), "a fourth request waits while three are in flight");
    drop(held);
    let again = tokio::time::timeout(Duration::from_millis(200), permits.acquire()).await;
    assert!(again.is_ok(), "a released permit is handed out again");
}

#[tokio::test]
async fn with_the_store_down_no_request_starts_once_the_lease_runs_short() {
    let store = store(5);
    let settings = settings();
    let permits = FleetPermits::start(store.clone(), "w1".into(), settings);
    drop(permits.acquire().await);
    store.down.store(true, Ordering::Relaxed);
    // Usable for lease − timeout − 0.5 s = 800 ms after the last good sync; then nothing.
    tokio::time::sleep(settings.usable_for() + Duration::from_millis(100)).await;
    let blocked = tokio::time::timeout(Duration::from_millis(200), permits.acquire()).await;
    assert!(blocked.is_err(), "fails closed");
    assert!(permits.sync_errors() > 0);
    store.down.store(false, Ordering::Relaxed);
    let back = tokio::time::timeout(Duration::from_millis(500), permits.acquire()).await;
    assert!(back.is_ok(), "resumes after the store is back");
}

#[tokio::test]
async fn leaving_hands_the_permits_back() {
    let store = store(4);
    let permits = FleetPermits::start(store.clone(), "w1".into(), settings());
    drop(futures_util::future::join_all((0..4).map(|_| permits.acquire())).await);
    assert!(store.held.load(Ordering::Relaxed) > 0);
    permits.leave().await;
    assert_eq!(store.held.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_wait_given_up_no_longer_counts_as_demand() {
    let store = store(1);
    let permits = FleetPermits::start(store.clone(), "w1".into(), settings());
    let held = permits.acquire().await;
    for _ in 0..5 {
        let gave_up = tokio::time::timeout(Duration::from_millis(10), permits.acquire()).await;
        assert!(gave_up.is_err(), "the one permit is in use");
    }
    assert_eq!(permits.inner.state.lock().waiting, 0, "five abandoned waits left nothing behind");
    drop(held);
}

#[tokio::test]
async fn requests_start_up_to_the_share_while_a_sync_is_in_flight() {
    let store = store(4);
    let permits = FleetPermits::start(store.clone(), "w1".into(), settings());
    drop(futures_util::future::join_all((0..4).map(|_| permits.acquire())).await);
    assert_eq!(permits.held_and_in_use(), (4, 0));
    // Every sync now takes 300 ms: one is in flight for most of what follows.
    store.delay_ms.store(300, Ordering::Relaxed);
    tokio::time::sleep(settings().period + Duration::from_millis(20)).await;
    let started = Instant::now();
    let four = futures_util::future::join_all((0..4).map(|_| permits.acquire()));
    let four = tokio::time::timeout(Duration::from_millis(100), four).await.expect("not held back by the sync");
    assert!(started.elapsed() < Duration::from_millis(100));
    let fifth = tokio::time::timeout(Duration::from_millis(50), permits.acquire()).await;
    assert!(fifth.is_err(), "never more than the share");
    // The sync in flight reported the share as in use, so the store kept it.
    assert_eq!(store.reported_in_use.load(Ordering::Relaxed), 4);
    drop(four);
}

//! Fleet-wide concurrency in the real Redis: workers sharing a provider's permits never
//! have more requests in flight than its limit, a joining worker gets its share, and a
//! crashed worker's permits come back after its lease.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use sendfleet_limits::{FleetPermits, PermitSettings, PermitStore, RedisPermits};

fn pool() -> sendfleet_redis::RedisPool {
    let url = std::env::var("SENDFLEET_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    sendfleet_redis::RedisPool::from(
        deadpool_redis::Config::from_url(url).create_pool(Some(deadpool_redis::Runtime::Tokio1)).expect("redis pool"),
    )
}

fn key() -> String {
    format!("sft-permits-{}:concurrency:p", uuid::Uuid::new_v4().simple())
}

fn settings() -> PermitSettings {
    PermitSettings {
        lease_ttl: Duration::from_millis(2_000),
        request_timeout: Duration::from_millis(300),
        period: Duration::from_millis(100),
        fast_period: Duration::from_millis(5),
    }
}

fn worker(pool: &sendfleet_redis::RedisPool, key: &str, limit: u32, name: &str) -> FleetPermits {
    FleetPermits::start(Arc::new(RedisPermits::new(pool.clone(), key, limit)), name.into(), settings())
}

/// The fleet's requests in flight, and the most ever seen.
#[derive(Default)]
struct InFlight {
    now: AtomicU32,
    max: AtomicU32,
    done: AtomicU32,
}

/// `tasks` requests of `length` each, one after the other on `parallel` tasks.
async fn load(permits: FleetPermits, flight: Arc<InFlight>, parallel: usize, per_task: usize, length: Duration) {
    let tasks = (0..parallel).map(|_| {
        let (permits, flight) = (permits.clone(), flight.clone());
        tokio::spawn(async move {
            for _ in 0..per_task {
                let permit = permits.acquire().await;
                let now = flight.now.fetch_add(1, Ordering::SeqCst) + 1;
                flight.max.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(length).await;
                flight.now.fetch_sub(1, Ordering::SeqCst);
                flight.done.fetch_add(1, Ordering::SeqCst);
                drop(permit);
            }
        })
    });
    for task in futures_util::future::join_all(tasks).await {
        task.expect("task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_busy_workers_never_exceed_the_fleet_limit_and_share_it() {
    let (pool, key) = (pool(), key());
    let flight = Arc::new(InFlight::default());
    let workers: Vec<FleetPermits> = (0..3).map(|i| worker(&pool, &key, 10, &format!("w{i}"))).collect();
    let started = Instant::now();
    let runs = workers.iter().map(|w| load(w.clone(), flight.clone(), 12, 20, Duration::from_millis(20)));
    futures_util::future::join_all(runs).await;
    let max = flight.max.load(Ordering::SeqCst);
    assert!(max <= 10, "at most 10 in flight across the fleet, saw {max}");
    assert!(max >= 8, "the limit is used, saw at most {max}");
    assert_eq!(flight.done.load(Ordering::SeqCst), 3 * 12 * 20);
    // 720 requests of 20 ms on 10 permits need ≥ 1.44 s; far more would mean starvation.
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    for w in &workers {
        w.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_worker_gets_its_share_and_a_crashed_workers_permits_come_back_after_its_lease() {
    let (pool, key) = (pool(), key());
    // A crashed worker: it took every permit (its last sync), then never synced again.
    let store = RedisPermits::new(pool.clone(), &key, 6);
    let holding = store.sync("crashed", 6, 6, settings().lease_ttl).await.expect("sync");
    assert_eq!(holding.held, 6);
    let crashed_at = Instant::now();

    let survivor = worker(&pool, &key, 6, "survivor");
    let first = tokio::time::timeout(Duration::from_secs(5), survivor.acquire()).await.expect("permits come back");
    let waited = crashed_at.elapsed();
    // The crashed holder's lease is 2 s from its last sync.
    assert!(waited >= Duration::from_millis(1_900), "no permit while the crashed lease lives: {waited:?}");
    assert!(waited <= Duration::from_millis(3_000), "back within the lease plus a sync: {waited:?}");
    drop(first);

    // The survivor is busy with all 6; a second worker joins and gets about half.
    let flight = Arc::new(InFlight::default());
    let busy = tokio::spawn(load(survivor.clone(), flight.clone(), 10, 60, Duration::from_millis(20)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let joiner = worker(&pool, &key, 6, "joiner");
    let joined = tokio::spawn(load(joiner.clone(), flight.clone(), 10, 20, Duration::from_millis(20)));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (held, _) = joiner.held_and_in_use();
    assert!(held >= 2, "the joiner holds its share of 6 (3), saw {held}");
    joined.await.expect("joiner");
    busy.await.expect("survivor");
    assert!(flight.max.load(Ordering::SeqCst) <= 6, "never above the limit: {}", flight.max.load(Ordering::SeqCst));
    survivor.leave().await;
    joiner.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_that_does_not_divide_evenly_is_shared_out_whole() {
    let (pool, key) = (pool(), key());
    let store = RedisPermits::new(pool.clone(), &key, 10);
    // Three saturated holders: 10 ÷ 3 leaves one permit that the level alone would idle.
    for name in ["a", "b", "c"] {
        store.sync(name, 40, 0, settings().lease_ttl).await.expect("sync");
    }
    let mut shares = Vec::new();
    for name in ["a", "b", "c"] {
        shares.push(store.sync(name, 40, 0, settings().lease_ttl).await.expect("sync").allowed);
    }
    shares.sort_unstable();
    assert_eq!(shares, vec![3, 3, 4], "every permit has a holder");
    // A holder wanting less than the level keeps just its demand; the rest split the remainder.
    store.sync("a", 1, 0, settings().lease_ttl).await.expect("sync");
    let b = store.sync("b", 40, 0, settings().lease_ttl).await.expect("sync").allowed;
    let c = store.sync("c", 40, 0, settings().lease_ttl).await.expect("sync").allowed;
    assert_eq!(b + c, 9, "the unsatisfied split what is left: {b} + {c}");
    for name in ["a", "b", "c"] {
        store.sync(name, 0, 0, Duration::ZERO).await.expect("leave");
    }
}

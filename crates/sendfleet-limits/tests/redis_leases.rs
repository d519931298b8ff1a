//! The lease script in the real Redis: workers joining share the cap, never exceed it.

use std::{sync::Arc, time::Duration};

use futures_util::future::join_all;
use sendfleet_limits::{FleetLimiter, RedisLeases, SlotParams, gcra::max_in_window};

fn redis_url() -> String {
    std::env::var("SENDFLEET_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn pool() -> sendfleet_redis::RedisPool {
    sendfleet_redis::RedisPool::from(
        deadpool_redis::Config::from_url(redis_url())
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .expect("redis pool"),
    )
}

/// One worker's permits: the slot times (Redis clock) it was granted, in order of use.
async fn run_worker(limiter: Arc<FleetLimiter>, permits: usize) -> Vec<i64> {
    let tasks = (0..permits).map(|_| {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.acquire(Duration::from_secs(5)).await.expect("slot").slot_us })
    });
    join_all(tasks).await.into_iter().map(|r| r.expect("task")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_worker_joining_keeps_the_fleet_within_the_cap() {
    let key = format!("sft-limits-{}:rate:p", uuid::Uuid::new_v4().simple());
    let params = SlotParams::new(1_000, 10);
    let pool = pool();
    let limiter = |pool: &sendfleet_redis::RedisPool| {
        Arc::new(FleetLimiter::new(
            Arc::new(RedisLeases::new(pool.clone(), key.clone(), params)),
            params,
            FleetLimiter::batch_for(1_000),
        ))
    };
    let (first, second) = (limiter(&pool), limiter(&pool));
    let early = tokio::spawn(run_worker(first.clone(), 1_500));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late = tokio::spawn(run_worker(second.clone(), 1_000));
    let first_slots = early.await.expect("first worker");
    let second_slots = late.await.expect("second worker");

    assert!(!second_slots.is_empty() && second.granted() > 0, "the joining worker got a share");
    let mut all: Vec<i64> = first_slots.iter().chain(&second_slots).copied().collect();
    let distinct: std::collections::HashSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "no slot was granted twice across workers");
    let worst = max_in_window(&mut all, 1_000_000);
    assert!(worst <= 1_000 + 10, "worst 1-second window of granted slots: {worst}");

    let mut connection = pool.get().await.expect("redis");
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut *connection).await.expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_means_no_slot() {
    let pool = sendfleet_redis::RedisPool::from(
        deadpool_redis::Config::from_url("redis://127.0.0.1:1")
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .expect("pool"),
    );
    let params = SlotParams::new(100, 1);
    let limiter = FleetLimiter::new(Arc::new(RedisLeases::new(pool, "unused".into(), params)), params, 2);
    let result = limiter.acquire(Duration::from_millis(300)).await;
    assert!(result.is_err(), "fails closed");
    assert_eq!(limiter.granted(), 0);
}

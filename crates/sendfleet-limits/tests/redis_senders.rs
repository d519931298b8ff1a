//! Sender rates under a provider's rate, in the real Redis: two rated senders (10/s and
//! 50/s) and an unrated stream share a provider at 100/s, all of them busy. Every
//! 1-second window holds at most each rate plus its burst, and no slot is wasted: each
//! sender gets its rate, and the unrated stream the rest of the provider's.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use sendfleet_limits::{FleetLimiter, LaneGate, RedisLeases, SenderRate, SlotParams, gcra::max_in_window};

fn pool() -> sendfleet_redis::RedisPool {
    let url = std::env::var("SENDFLEET_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    sendfleet_redis::RedisPool::from(
        deadpool_redis::Config::from_url(url).create_pool(Some(deadpool_redis::Runtime::Tokio1)).expect("redis pool"),
    )
}

const PROVIDER_RATE: u32 = 100;
const RUN: Duration = Duration::from_secs(3);

/// When each use happened, µs since `start`.
type Uses = Arc<Mutex<Vec<i64>>>;

fn since(start: Instant) -> i64 {
    start.elapsed().as_micros() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rated_senders_and_the_provider_each_hold_their_rate_without_wasting_slots() {
    let pool = pool();
    let provider_key = format!("sft-senders-{}:rate:p", uuid::Uuid::new_v4().simple());
    let provider = SlotParams::new(PROVIDER_RATE, 1);
    let unrated = Arc::new(FleetLimiter::new(
        Arc::new(RedisLeases::new(pool.clone(), provider_key.clone(), provider)),
        provider,
        FleetLimiter::batch_for(PROVIDER_RATE),
    ));
    let lanes = LaneGate::new(8, vec![0.0]);
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut sender_uses = Vec::new();
    // Two "workers" per sender, each with several waiting jobs, as a busy fleet has.
    for (name, rate) in [("slow", 10u32), ("fast", 50u32)] {
        let uses: Uses = Arc::default();
        sender_uses.push((name, rate, uses.clone()));
        for _worker in 0..2 {
            let sender = Arc::new(SenderRate::new(
                pool.clone(),
                provider_key.clone(),
                provider,
                format!("{provider_key}:sender:{name}"),
                SlotParams::new(rate, 1),
            ));
            for _job in 0..4 {
                let (sender, uses, lanes) = (sender.clone(), uses.clone(), lanes.clone());
                tasks.push(tokio::spawn(async move {
                    while start.elapsed() < RUN {
                        sender.acquire(Duration::from_secs(5), || lanes.enter(0)).await.expect("a joint slot");
                        uses.lock().push(since(start));
                    }
                }));
            }
        }
    }
    let unrated_uses: Uses = Arc::default();
    for _job in 0..8 {
        let (limiter, uses) = (unrated.clone(), unrated_uses.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < RUN {
                limiter.acquire(Duration::from_secs(5)).await.expect("a provider slot");
                uses.lock().push(since(start));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let mut all: Vec<i64> = unrated_uses.lock().clone();
    let seconds = RUN.as_secs_f64();
    for (name, rate, uses) in &sender_uses {
        let mut uses = uses.lock().clone();
        all.extend(&uses);
        let count = uses.len();
        let worst = max_in_window(&mut uses, 1_000_000);
        assert!(worst <= *rate as usize + 1, "sender {name}: {worst} uses in one second, rate {rate} + burst 1");
        // No waste: the sender gets its rate although the provider is busy.
        let least = (f64::from(*rate) * seconds * 0.85) as usize;
        assert!(count >= least, "sender {name} got {count} slots in {seconds} s, expected at least {least}");
    }
    let total = all.len();
    let worst = max_in_window(&mut all, 1_000_000);
    assert!(worst <= PROVIDER_RATE as usize + 1, "{worst} uses in one second at the provider, rate 100 + burst 1");
    let least = (f64::from(PROVIDER_RATE) * seconds * 0.85) as usize;
    assert!(total >= least, "the provider's slots went unused: {total} in {seconds} s, expected at least {least}");

    let mut connection = pool.get().await.unwrap();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{provider_key}*")).query_async(&mut *connection).await.unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut *connection).await.unwrap();
    }
}

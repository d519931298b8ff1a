//! The fleet on a replicated Redis behind three Sentinels (`scripts/cluster.sh
//! start-redis`: primary 6391, replica 6392, Sentinels 26391-26393): `kill -9` of the
//! primary mid-run. Sending resumes after the Sentinels' failover without a restart, no
//! 1-second window at the provider goes above the cap plus its burst (leases are used
//! only once the replica holds them), and no job is lost. Counted from the mock's own
//! arrival times.

use std::time::{Duration, Instant};

use sendfleet_protocol::{EventKind, SendRequest};
use sendfleet_test_support::{Fleet, FleetOptions, sms_to_many};

use crate::local_cluster::LocalCluster;

const CAP: usize = 1_000;
const BURST: usize = 10;
const JOBS: usize = 8_000;

fn options() -> FleetOptions {
    let keys = format!("sender_ids = [\"ACMEIN\"]\nrate_per_second = {CAP}\nburst = {BURST}\nconcurrency = 200");
    FleetOptions {
        // The nodes' URL gives only the password and database; the address comes from
        // the Sentinels.
        redis_url: Some("redis://127.0.0.1:6391".into()),
        redis_sentinels: LocalCluster::sentinel_urls(),
        ..FleetOptions::sms_load("redis-failover", &keys, 2)
    }
}

fn request(batch: usize) -> SendRequest {
    sms_to_many("rf", batch * 1_000..(batch + 1) * 1_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_primary_is_followed_through_the_sentinels_within_the_cap() {
    let redis = LocalCluster::start_redis();
    let fleet = Fleet::start(options()).await;
    for batch in 0..JOBS / 1_000 {
        fleet.publish_request(&request(batch)).await;
    }
    assert!(fleet.mock.wait_for_accepted(2_000, Duration::from_secs(60)).await >= 2_000);
    let killed_at_us = sendfleet_protocol::now_ms() * 1_000;
    let killed = Instant::now();
    let said = redis.run(&["kill-redis-primary"]);
    assert!(said.contains("killed the Redis primary"), "{said}");

    let accepted = fleet.events.wait_for(EventKind::Accepted, JOBS, Duration::from_secs(120)).await;
    assert_eq!(accepted, JOBS, "every job sent after the failover");
    let took = killed.elapsed();

    let received = fleet.mock.received();
    let mut ids: Vec<&str> = received.iter().flat_map(|r| r.message_ids.iter().map(String::as_str)).collect();
    let sent = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), JOBS, "every job reached the provider");
    let mut times: Vec<i64> = received.iter().map(|r| r.at_us).collect();
    let worst = sendfleet_limits::gcra::max_in_window(&mut times, 1_000_000);
    times.sort_unstable();
    // The longest silence at the provider after the kill: the failover.
    let after: Vec<i64> = times.iter().copied().filter(|&t| t >= killed_at_us).collect();
    let first_after = after.first().copied().unwrap_or(killed_at_us);
    let resumed_us =
        std::iter::once(first_after - killed_at_us).chain(after.windows(2).map(|w| w[1] - w[0])).max().unwrap_or(0);
    println!(
        "redis failover: worst 1-s window {worst} (cap {CAP} + burst {BURST}), longest pause after the kill {:.1} s, \
         {} duplicate sends, all {JOBS} jobs sent {:.1} s after the kill",
        resumed_us as f64 / 1e6,
        sent - JOBS,
        took.as_secs_f64()
    );
    assert!(worst <= CAP + BURST, "{worst} requests in one second at the provider, above {CAP} + {BURST}");
    assert!(resumed_us < 10_000_000, "sending paused {:.1} s after the kill", resumed_us as f64 / 1e6);
}

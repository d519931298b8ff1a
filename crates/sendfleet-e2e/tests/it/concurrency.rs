//! The provider's concurrency holds for the whole fleet: three workers share it, a
//! fourth joins and one crashes mid-run, and the mock's own timestamps never show more
//! requests in flight than `concurrency`.

use std::time::Duration;

use sendfleet_mock_provider::{Behaviour, max_in_flight};
use sendfleet_protocol::{EventKind, SendRequest};
use sendfleet_test_support::{Fleet, FleetOptions, sms_to_many};

const CONCURRENCY: usize = 10;
const LATENCY_MS: u64 = 200;

fn options() -> FleetOptions {
    let keys = format!("sender_ids = [\"ACMEIN\"]\nrate_per_second = 4600\nconcurrency = {CONCURRENCY}");
    let options = FleetOptions::sms_load("fleet-concurrency", &keys, 3);
    FleetOptions { behaviour: Behaviour { latency_ms: LATENCY_MS, ..options.behaviour.clone() }, ..options }
}

fn request(range: std::ops::Range<usize>) -> SendRequest {
    sms_to_many("fc", range)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_joining_and_crashing_never_exceed_the_fleet_wide_concurrency() {
    const JOBS: usize = 300;
    let mut fleet = Fleet::start(options()).await;
    fleet.publish_request(&request(0..JOBS)).await;
    assert!(fleet.mock.wait_for_accepted(100, Duration::from_secs(30)).await >= 100);
    // A fourth worker joins, and the first dies without giving its permits back.
    fleet.start_worker().await;
    fleet.abort_worker(0);
    let accepted = fleet.events.wait_for(EventKind::Accepted, JOBS, Duration::from_secs(90)).await;
    assert_eq!(accepted, JOBS, "every job sent once it is redelivered");

    let received = fleet.mock.received();
    let max = max_in_flight(&received);
    assert!(max <= CONCURRENCY, "at most {CONCURRENCY} requests in flight at the provider, saw {max}");
    assert!(max >= CONCURRENCY / 2, "the fleet uses its concurrency, saw at most {max}");
    // Throughput before the crash: 100 requests of 200 ms on 10 permits take ≥ 2 s; far
    // longer would mean the workers starve each other.
    let mut starts: Vec<i64> = received.iter().map(|r| r.at_us).collect();
    starts.sort_unstable();
    let first_hundred = Duration::from_micros((starts[99] - starts[0]) as u64);
    assert!(first_hundred < Duration::from_secs(6), "100 requests took {first_hundred:?}");
    fleet.stop().await;
}

//! Priority lanes on the real broker and Redis: high jobs published behind a deep bulk
//! backlog reach the provider next, and a flood of high jobs still leaves the lower
//! lanes their minimum share. Counted from the mock's own arrival order.

use std::time::Duration;

use sendfleet_mock_provider::Received;
use sendfleet_protocol::{EventKind, Priority, SendRequest};
use sendfleet_test_support::{Fleet, FleetOptions, sms_to_many};

/// Slow enough that a backlog builds, fast enough for a short test.
const RATE: u32 = 100;

fn options(name: &'static str) -> FleetOptions {
    let keys = format!(
        "sender_ids = [\"ACMEIN\"]\nrate_per_second = {RATE}\nburst = 1\nconcurrency = 50\n\
         lane_min_share = {{ normal = 0.10, bulk = 0.05 }}"
    );
    FleetOptions::sms_load(name, &keys, 1)
}

fn request(priority: Priority, prefix: &str, count: usize) -> SendRequest {
    SendRequest { priority, ..sms_to_many(prefix, 0..count) }
}

/// The message ids in the order the provider received them.
fn arrival_order(received: &[Received]) -> Vec<String> {
    let mut requests: Vec<&Received> = received.iter().collect();
    requests.sort_by_key(|r| r.at_us);
    requests.iter().flat_map(|r| r.message_ids.iter().cloned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_jobs_overtake_a_bulk_backlog() {
    const BULK: usize = 500;
    const HIGH: usize = 20;
    let fleet = Fleet::start(options("lanes-overtake")).await;
    fleet.publish_request(&request(Priority::Bulk, "bulk", BULK)).await;
    // The worker holds a prefetch of bulk jobs (2 x concurrency) when the high jobs come.
    assert!(fleet.mock.wait_for_accepted(150, Duration::from_secs(30)).await >= 150);
    let before = fleet.mock.received().iter().map(|r| r.message_ids.len()).sum::<usize>();
    fleet.publish_request(&request(Priority::High, "high", HIGH)).await;
    let accepted = fleet.events.wait_for(EventKind::Accepted, BULK + HIGH, Duration::from_secs(60)).await;
    assert_eq!(accepted, BULK + HIGH, "every job sent");

    let order = arrival_order(&fleet.mock.received());
    assert_eq!(order.len(), BULK + HIGH, "each message sent once");
    let last_high = order.iter().rposition(|id| id.starts_with("high-")).unwrap();
    // Bulk jobs sent after the high jobs were published and before the last of them:
    // the slots already reserved (the gate's width, 8 at this rate), the bulk lane's 5%
    // share and the publish itself. Without lanes, the 100 prefetched bulk jobs and the
    // rest of the backlog's head would all go first.
    let bulk_between = order[before..=last_high].iter().filter(|id| id.starts_with("bulk-")).count();
    assert!(bulk_between <= 30, "{bulk_between} bulk jobs went between the high jobs' publish and the last high job");
    assert!(last_high < BULK, "the high jobs finished before the backlog, last at {last_high}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_high_jobs_leaves_the_lower_lanes_their_minimum_share() {
    const EACH: usize = 300;
    let fleet = Fleet::start(options("lanes-share")).await;
    fleet.publish_request(&request(Priority::Bulk, "bulk", EACH)).await;
    fleet.publish_request(&request(Priority::Normal, "normal", EACH)).await;
    fleet.publish_request(&request(Priority::High, "high", EACH)).await;
    let accepted = fleet.events.wait_for(EventKind::Accepted, 3 * EACH, Duration::from_secs(60)).await;
    assert_eq!(accepted, 3 * EACH, "every job sent");

    let order = arrival_order(&fleet.mock.received());
    let last_high = order.iter().rposition(|id| id.starts_with("high-")).unwrap();
    // While high jobs were waiting (after the first 100, when every lane is queued):
    let flood = &order[100..last_high];
    let share = |lane: &str| flood.iter().filter(|id| id.starts_with(lane)).count() as f64 / flood.len() as f64;
    assert!(share("high-") >= 0.7, "high got {:.2} of the flood", share("high-"));
    assert!(share("normal-") >= 0.07, "normal got {:.2}, its minimum is 0.10", share("normal-"));
    assert!(share("bulk-") >= 0.03, "bulk got {:.2}, its minimum is 0.05", share("bulk-"));
}

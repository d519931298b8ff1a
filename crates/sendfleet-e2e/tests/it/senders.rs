//! Sender rates end to end on the real broker and Redis: two senders rated 10/s and
//! 50/s and an unrated one share a provider at 100/s, all busy. The mock's own arrival
//! times show every 1-second window within each rate (plus its burst of 1), and every
//! job sent in about the time the rates allow (no slot wasted waiting for another).

use std::time::Duration;

use sendfleet_mock_provider::Received;
use sendfleet_protocol::{EventKind, SendRequest};
use sendfleet_test_support::{Fleet, FleetOptions, sms_to_many};

fn options() -> FleetOptions {
    let keys = "sender_ids = [\"ACMEIN\", \"SLOW10\", \"FAST50\"]\nrate_per_second = 100\nburst = 1\nconcurrency = 50\n\
                sender_rates = { SLOW10 = 10, FAST50 = 50 }";
    FleetOptions::sms_load("sender-rates", keys, 2)
}

fn request(sender: &str, count: usize) -> SendRequest {
    SendRequest { sender: Some(sender.into()), ..sms_to_many(sender, 0..count) }
}

/// The most arrivals of one sender's jobs (by id prefix) in any 1-second window.
fn worst_window(received: &[Received], prefix: &str) -> usize {
    let mut times: Vec<i64> = received
        .iter()
        .flat_map(|r| r.message_ids.iter().filter(|id| id.starts_with(prefix)).map(|_| r.at_us))
        .collect();
    sendfleet_limits::gcra::max_in_window(&mut times, 1_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rated_senders_hold_their_rates_under_the_providers_without_wasting_slots() {
    const SLOW: usize = 40;
    const FAST: usize = 150;
    const OTHER: usize = 250;
    let fleet = Fleet::start(options()).await;
    let started = std::time::Instant::now();
    fleet.publish_request(&request("SLOW10", SLOW)).await;
    fleet.publish_request(&request("FAST50", FAST)).await;
    fleet.publish_request(&request("ACMEIN", OTHER)).await;
    let total = SLOW + FAST + OTHER;
    let accepted = fleet.events.wait_for(EventKind::Accepted, total, Duration::from_secs(60)).await;
    assert_eq!(accepted, total, "every job sent");
    let took = started.elapsed();

    let received = fleet.mock.received();
    for (prefix, rate) in [("SLOW10-", 10), ("FAST50-", 50), ("", 100)] {
        let worst = worst_window(&received, prefix);
        assert!(worst <= rate + 1, "{worst} arrivals of '{prefix}' in one second, rate {rate} + burst 1");
    }
    // 440 jobs at 100/s (and 40 of them at 10/s) take about 4.5 s; a limiter that held
    // one slot while waiting for the other would take far longer.
    assert!(took < Duration::from_secs(15), "sending took {took:?}");
}

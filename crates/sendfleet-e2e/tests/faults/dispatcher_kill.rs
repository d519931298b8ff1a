//! `kill -9` of the dispatcher in the middle of a run.

use std::time::Duration;

use sendfleet_mock_provider::Behaviour;
use sendfleet_protocol::EventKind;
use sendfleet_test_support::{ProcessFleet, ProcessFleetOptions, Role, wait_until};

use crate::common::{Outcomes, PROVIDER_IDS, providers, publish_all, sms_request};

/// 20,000 requests without message ids; the dispatcher is killed with `kill -9` when
/// about a quarter is dispatched, and started again. Requests it had published jobs for
/// but not acked come back, plan the same message ids, and the worker's claims and sent
/// record keep every second copy from the provider: no message is sent twice, none is
/// lost, each ends with one outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_dispatcher_mid_run_sends_nothing_twice() {
    let mut fleet = ProcessFleet::new(ProcessFleetOptions {
        name: "disp-kill",
        providers_toml: providers(),
        provider_ids: PROVIDER_IDS.to_vec(),
        extra_toml: String::new(),
        behaviour: Behaviour { latency_ms: 1, delivery_reports: false, record_bodies: false, ..Behaviour::default() },
    })
    .await;
    const N: usize = 20_000;
    let requests: Vec<_> = (0..N).map(sms_request).collect();
    publish_all(&fleet, &requests).await;
    fleet.spawn(Role::Worker(0), None).await;
    fleet.spawn(Role::Dispatcher, None).await;

    let queue = fleet.ns.topology().requests_queue();
    let mut left = N as u32;
    for _ in 0..3_000 {
        left = fleet.ns.queue_depth(&queue).await;
        if left <= (N - N / 4) as u32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fleet.kill(Role::Dispatcher).await;
    assert!(left > 0 && left < N as u32, "killed mid-run ({left} of {N} requests still queued)");
    fleet.spawn(Role::Dispatcher, None).await;

    let done = wait_until(Duration::from_secs(300), || Outcomes::of(&fleet).finished() >= N).await;
    let outcomes = Outcomes::of(&fleet);
    assert!(done, "only {} of {N} messages ended", outcomes.finished());
    let stats = fleet.mock.stats();
    let redispatched = fleet
        .events
        .events()
        .iter()
        .filter(|e| {
            e.details.contains_key("duplicate_suppressed")
                || e.details.get("reason_code").map(String::as_str) == Some("send_in_progress")
        })
        .count();
    eprintln!(
        "dispatcher killed with {left} of {N} requests queued; provider requests {}, duplicates {}, jobs dispatched twice and held back {redispatched}",
        stats.accepted, stats.duplicate_message_ids
    );
    assert_eq!(stats.duplicate_message_ids, 0, "no message reached the provider twice");
    assert_eq!(stats.accepted, N as u64, "each message exactly once");
    assert!(
        outcomes.ambiguous().is_empty(),
        "one outcome per message: {:?}",
        &outcomes.ambiguous()[..3.min(outcomes.ambiguous().len())]
    );
    assert_eq!(fleet.events.count(EventKind::Failed), 0);
    fleet.stop().await;
}

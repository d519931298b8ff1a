//! `sendfleet dead-letters` on the real broker, Redis and sender-worker: 1,000 jobs
//! dead-lettered by a provider answering 503 past `max_attempts`, the provider fixed,
//! then replayed by the real binary — all at once, and killed with `kill -9` halfway and
//! run again — with every message accepted exactly once.

mod common;

use std::{collections::HashMap, path::PathBuf, time::Duration};

use sendfleet_mock_provider::Behaviour;
use sendfleet_protocol::{Channel, Content, SendJob, encode, now_ms};
use sendfleet_test_support::{Fleet, FleetOptions, wait_until};

const JOBS: usize = 1_000;

/// `ib-sms` of the test fleets, giving up after two attempts a few hundred ms apart.
fn provider(name: &'static str) -> String {
    let both = FleetOptions::infobip(name).providers_toml;
    let sms = both.split("[[providers]]").nth(1).expect("the SMS provider");
    let retry = "retry = { initial_delay_ms = 200, max_delay_ms = 2000 }";
    assert!(sms.contains(retry), "{sms}");
    format!(
        "[[providers]]{}",
        sms.replace(retry, "retry = { max_attempts = 2, initial_delay_ms = 200, max_delay_ms = 500 }")
    )
}

fn job(i: usize) -> SendJob {
    SendJob {
        priority: Default::default(),
        schema_version: 1,
        message_id: format!("dl-{i:04}"),
        provider: "ib-sms".into(),
        channel: Channel::Sms,
        to: format!("+1555{i:07}"),
        sender: "ACMEIN".into(),
        content: Content::Text { text: "your code".into(), suggestions: vec![] },
        options: Default::default(),
        fallback: None,
        metadata: Default::default(),
        trace_id: format!("trace-{i}"),
        attempts: 0,
        first_attempt_at_ms: None,
        created_at_ms: now_ms(),
        fallback_for: None,
    }
}

/// A fleet whose provider answers 503 to everything until every one of the 1,000 jobs
/// is in the dead-letter queue; then the provider is fixed (and its counters reset).
async fn thousand_dead_letters(name: &'static str) -> (Fleet, PathBuf) {
    let options = FleetOptions {
        providers_toml: provider(name),
        provider_ids: vec!["ib-sms"],
        dispatcher: false,
        ingest: false,
        behaviour: Behaviour { error_503_ratio: 1.0, delivery_reports: false, ..Behaviour::default() },
        ..FleetOptions::infobip(name)
    };
    let fleet = Fleet::start(options).await;
    let exchange = fleet.ns.topology().jobs_exchange();
    let jobs: Vec<Vec<u8>> = (0..JOBS).map(|i| encode(&job(i))).collect();
    futures_util::future::join_all(jobs.iter().map(|bytes| fleet.publish_bytes(&exchange, "ib-sms", bytes))).await;
    let dead = fleet.ns.topology().dead_letter_queue();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while fleet.ns.queue_depth(&dead).await < JOBS as u32 {
        assert!(tokio::time::Instant::now() < deadline, "not all jobs dead-lettered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(fleet.mock.stats().accepted, 0);
    fleet.mock.set_behaviour(Behaviour { delivery_reports: false, ..Behaviour::default() });
    fleet.mock.reset();
    let config = common::write_config(&fleet.config, &fleet.ns.prefix);
    (fleet, config)
}

/// How often the mock accepted each message id.
fn accepted_ids(fleet: &Fleet) -> HashMap<String, u32> {
    let mut ids = HashMap::new();
    for received in fleet.mock.received().iter().filter(|r| (200..300).contains(&r.status)) {
        for id in &received.message_ids {
            *ids.entry(id.clone()).or_insert(0) += 1;
        }
    }
    ids
}

/// Waits until the mock accepted every job and no copy is left in a queue (duplicates
/// held back by their claim wait in the 5 s retry tier before they are suppressed).
async fn wait_until_all_sent(fleet: &Fleet) {
    assert_eq!(fleet.mock.wait_for_accepted(JOBS as u64, Duration::from_secs(60)).await, JOBS as u64);
    let topology = fleet.ns.topology();
    let mut queues = vec![topology.jobs_queue("ib-sms"), topology.dead_letter_queue()];
    queues.extend(sendfleet_broker::RETRY_TIERS.iter().map(|tier| topology.retry_queue(*tier)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut left = 0;
        for queue in &queues {
            left += fleet.ns.queue_depth(queue).await;
        }
        if left == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{left} messages still queued");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The depth of `queue` once `done` holds of it (≤ 10 s), or the last one read.
async fn depth_when(fleet: &Fleet, queue: &str, done: impl Fn(u32) -> bool) -> u32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let depth = fleet.ns.queue_depth(queue).await;
        if done(depth) || tokio::time::Instant::now() >= deadline {
            return depth;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_each_sent_once(fleet: &Fleet) {
    let ids = accepted_ids(fleet);
    assert_eq!(ids.len(), JOBS, "every job accepted: none lost");
    let twice: Vec<(&String, &u32)> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    assert_eq!(fleet.mock.stats().duplicate_message_ids, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_dead_letters_are_listed_without_removal_then_replayed_once_each() {
    let (fleet, config) = thousand_dead_letters("cli-replay").await;
    let dead = fleet.ns.topology().dead_letter_queue();

    let listed = common::json(
        &common::run(&config, &["dead-letters", "list", "--provider", "ib-sms", "--limit", "5", "--json"]).await,
    );
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|e| e["reason_code"] == "retries_exhausted" && e["attempts"] == 2), "{listed:?}");
    let none = common::json(&common::run(&config, &["dead-letters", "list", "--reason", "max_age", "--json"]).await);
    assert_eq!(none.as_array().map(Vec::len), Some(0));
    let shown = common::json(&common::run(&config, &["dead-letters", "show", "dl-0007"]).await);
    assert_eq!(
        (shown["body"]["to"].as_str(), shown["headers"]["x-sendfleet-reason-code"].as_str()),
        (Some("+15550000007"), Some("retries_exhausted"))
    );
    let dry = common::run(&config, &["dead-letters", "replay", "--limit", "10", "--dry-run", "--json"]).await;
    assert_eq!(dry.status.code(), Some(0));
    assert_eq!(common::json(&dry)["would_replay"].as_array().map(Vec::len), Some(10));
    assert_eq!(
        depth_when(&fleet, &dead, |d| d == JOBS as u32).await,
        JOBS as u32,
        "list, show and a dry run take nothing out"
    );
    assert_eq!(fleet.mock.stats().requests, 0, "nothing was sent by looking");

    let output = common::run(&config, &["dead-letters", "replay", "--provider", "ib-sms", "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let summary = common::json(&output);
    assert_eq!((summary["replayed"].as_u64(), summary["failed"].as_u64()), (Some(JOBS as u64), Some(0)), "{summary}");
    assert_eq!(summary["status_reset"], JOBS as u64);
    wait_until_all_sent(&fleet).await;
    assert_each_sent_once(&fleet);

    // The status record started a new life and walked on to accepted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let record = loop {
        let record = common::json(&common::run(&config, &["status", "dl-0007", "--json"]).await);
        if record["state"] == "accepted" || tokio::time::Instant::now() >= deadline {
            break record;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((record["state"].as_str(), record["replays"].as_u64()), (Some("accepted"), Some(1)), "{record}");
    assert_eq!((record["replayed_from"].as_str(), record["attempts"].as_u64()), (Some("failed"), Some(1)), "{record}");
    drop(std::fs::remove_file(&config));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_halfway_then_run_again_loses_and_duplicates_nothing() {
    let (fleet, config) = thousand_dead_letters("cli-kill").await;
    let dead = fleet.ns.topology().dead_letter_queue();
    let mut replay =
        common::spawn(&config, &["dead-letters", "replay", "--provider", "ib-sms", "--rate", "150", "--json"]);
    let halfway = wait_until(Duration::from_secs(30), || fleet.mock.stats().accepted >= 300).await;
    // SIGKILL: no clean-up of any kind in the replay process.
    replay.start_kill().expect("kill -9");
    let status = replay.wait().await.expect("reaped");
    assert!(halfway, "the replay got going");
    assert_eq!(status.code(), None, "killed by a signal, not finished");
    let sent_before_rerun = fleet.mock.stats().accepted;
    assert!(sent_before_rerun < JOBS as u64, "killed before the end: {sent_before_rerun}");
    // The connection's death hands back every message the replay held and had not acked.
    assert!(depth_when(&fleet, &dead, |d| d > 0).await > 0, "the rest is still in the dead-letter queue");

    let output = common::run(&config, &["dead-letters", "replay", "--provider", "ib-sms", "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let summary = common::json(&output);
    assert!(summary["replayed"].as_u64() > Some(0), "{summary}");
    wait_until_all_sent(&fleet).await;
    assert_each_sent_once(&fleet);
    drop(std::fs::remove_file(&config));
    fleet.stop().await;
}

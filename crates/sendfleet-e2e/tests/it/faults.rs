//! Failure handling: flaky providers, auth failures, poison jobs, lost connections.

use std::{collections::HashSet, time::Duration};

use sendfleet_mock_provider::Behaviour;
use sendfleet_protocol::{Channel, Content, EventKind, SendRequest};
use sendfleet_test_support::{Fleet, FleetOptions, close_broker_connections, wait_until};

/// One Infobip SMS provider `id` on the mock, default for SMS, with `extra` lines.
fn sms_provider(id: &str, extra: &str) -> String {
    format!(
        r#"
[[providers]]
id = "{id}"
kind = "infobip_sms"
base_url = "{{mock}}"
api_key_env = "TEST_API_KEY"
sender_ids = ["ACMEIN"]
default_for_channel = true
rate_per_second = 4600
concurrency = 64
callback_token_env = "TEST_CALLBACK_TOKEN"
{extra}
"#
    )
}

fn options(name: &'static str, provider: &'static str, extra: &str) -> FleetOptions {
    FleetOptions {
        providers_toml: sms_provider(provider, extra),
        provider_ids: vec![provider],
        ..FleetOptions::infobip(name)
    }
}

fn request(i: usize) -> SendRequest {
    SendRequest {
        priority: Default::default(),
        schema_version: 1,
        message_id: Some(format!("f-{i:05}")),
        channel: Channel::Sms,
        provider: None,
        to: Some(format!("+1555{i:07}")),
        recipients: vec![],
        sender: None,
        content: Some(Content::Text { text: format!("fault test {i}"), suggestions: vec![] }),
        template: None,
        options: Default::default(),
        fallback: None,
        metadata: Default::default(),
        trace_id: None,
    }
}

fn unique(fleet: &Fleet, kind: EventKind) -> HashSet<String> {
    fleet.events.events().into_iter().filter(|e| e.kind == kind).filter_map(|e| e.message_id).collect()
}

async fn publish(fleet: &Fleet, count: usize) {
    for i in 0..count {
        fleet.publish_request(&request(i)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_provider_every_job_ends_accepted() {
    let mut options = options(
        "flaky",
        "flaky-sms",
        "retry = { max_attempts = 40, initial_delay_ms = 100, max_delay_ms = 1000, max_age_seconds = 600 }",
    );
    options.behaviour = Behaviour {
        error_503_ratio: 0.3,
        error_429_ratio: 0.1,
        retry_after_seconds: Some(1),
        delivery_reports: false,
        record_bodies: false,
        ..Behaviour::default()
    };
    let fleet = Fleet::start(options).await;
    const N: usize = 5_000;
    publish(&fleet, N).await;
    let done = wait_until(Duration::from_secs(240), || unique(&fleet, EventKind::Accepted).len() >= N).await;
    assert!(done, "only {} of {N} accepted", unique(&fleet, EventKind::Accepted).len());

    let events = fleet.events.events();
    let retries = events.iter().filter(|e| e.kind == EventKind::Retrying).count();
    assert!(retries > N / 4, "about 40 % of attempts fail, so retries happen: {retries}");
    assert!(
        events.iter().any(|e| e.kind == EventKind::Accepted && e.attempt.unwrap_or(0) >= 3),
        "attempt numbers travel with the job and show in events"
    );
    let throttled = events
        .iter()
        .filter(|e| e.kind == EventKind::Retrying)
        .any(|e| e.details.get("reason_code").map(String::as_str) == Some("throttled"));
    assert!(throttled, "429s are retried as throttled");
    assert_eq!(unique(&fleet, EventKind::Failed).len(), 0);
    assert!(fleet.drain_queue(&fleet.ns.topology().dead_letter_queue()).await.is_empty(), "nothing dead-lettered");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failure_pauses_the_provider_until_it_answers() {
    let mut options = options("auth", "auth-sms", "");
    options.extra_toml = "[worker]\npause_probe_seconds = 1\n".into();
    options.behaviour = Behaviour { force_status: Some(401), delivery_reports: false, ..Behaviour::default() };
    let fleet = Fleet::start(options).await;
    const N: usize = 300;
    publish(&fleet, N).await;

    let paused =
        wait_until(Duration::from_secs(20), || fleet.mock.stats().by_status.get(&401).copied().unwrap_or(0) >= 2).await;
    assert!(paused, "the provider was asked at least twice (first send and a probe)");
    let metrics = fleet.worker_metrics(0).await;
    assert!(metrics.contains("sendfleet_provider_paused{provider=\"auth-sms\"} 1"), "paused gauge:\n{metrics}");
    let refused = fleet.mock.stats().by_status.get(&401).copied().unwrap_or(0);
    assert!(refused < 20, "a paused provider is probed, not hammered: {refused} requests");
    assert!(fleet.drain_queue(&fleet.ns.topology().dead_letter_queue()).await.is_empty());
    assert_eq!(fleet.events.count(EventKind::Failed), 0, "no job failed because of the provider's credentials");

    fleet.mock.set_behaviour(Behaviour { delivery_reports: false, ..Behaviour::default() });
    let resumed = wait_until(Duration::from_secs(30), || unique(&fleet, EventKind::Accepted).len() >= N).await;
    assert!(resumed, "after the fix every job is sent: {}", unique(&fleet, EventKind::Accepted).len());
    let metrics = fleet.worker_metrics(0).await;
    assert!(metrics.contains("sendfleet_provider_paused{provider=\"auth-sms\"} 0"));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_job_is_dead_lettered_and_the_next_one_sent() {
    let fleet = Fleet::start(options("poison", "poison-sms", "")).await;
    let jobs = fleet.ns.topology().jobs_exchange();
    fleet.publish_bytes(&jobs, "poison-sms", b"\xc1\xc1 definitely not msgpack").await;
    fleet.publish_request(&request(1)).await;
    assert_eq!(fleet.events.wait_for(EventKind::Accepted, 1, Duration::from_secs(20)).await, 1);
    let dead_letters = fleet.ns.topology().dead_letter_queue();
    let mut dead = Vec::new();
    for _ in 0..50 {
        dead = fleet.drain_queue(&dead_letters).await;
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead.len(), 1);
    let (headers, body) = &dead[0];
    assert_eq!(headers.get("x-sendfleet-reason-code").map(String::as_str), Some("malformed"));
    assert!(headers.get("x-sendfleet-reason").is_some_and(|r| r.contains("malformed document")), "{headers:?}");
    assert_eq!(body, b"\xc1\xc1 definitely not msgpack", "the original bytes are kept");
    let metrics = fleet.worker_metrics(0).await;
    assert!(
        metrics.contains("sendfleet_dead_lettered_total{provider=\"poison-sms\",reason=\"malformed\"} 1"),
        "{metrics}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_dead_letter_and_fail() {
    let mut options = options(
        "exhausted",
        "exhausted-sms",
        "retry = { max_attempts = 2, initial_delay_ms = 100, max_delay_ms = 200 }",
    );
    options.behaviour = Behaviour { force_status: Some(503), delivery_reports: false, ..Behaviour::default() };
    let fleet = Fleet::start(options).await;
    fleet.publish_request(&request(7)).await;
    assert_eq!(fleet.events.wait_for(EventKind::Failed, 1, Duration::from_secs(30)).await, 1);
    let failed = fleet.events.events().into_iter().find(|e| e.kind == EventKind::Failed).unwrap();
    assert_eq!(failed.details.get("reason_code").map(String::as_str), Some("retries_exhausted"));
    assert_eq!(failed.attempt, Some(2));
    let dead = fleet.drain_queue(&fleet.ns.topology().dead_letter_queue()).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0.get("x-sendfleet-reason-code").map(String::as_str), Some("retries_exhausted"));
    let job: sendfleet_protocol::SendJob = sendfleet_protocol::decode(&dead[0].1).unwrap();
    assert_eq!((job.message_id.as_str(), job.attempts), ("f-00007", 2));
    assert_eq!(fleet.mock.stats().requests, 2, "two attempts, no more");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_connections_closed_mid_run() {
    let mut options = options("reconnect", "reconnect-sms", "");
    options.behaviour =
        Behaviour { latency_ms: 5, delivery_reports: false, record_bodies: false, ..Behaviour::default() };
    let fleet = Fleet::start(options).await;
    const N: usize = 3_000;
    publish(&fleet, N).await;
    assert!(wait_until(Duration::from_secs(30), || fleet.mock.stats().accepted >= 500).await);
    let closed = close_broker_connections(&fleet.ns.prefix);
    assert!(closed >= 2, "closed the dispatcher's and the worker's connections: {closed}");
    let done = wait_until(Duration::from_secs(90), || unique(&fleet, EventKind::Accepted).len() >= N).await;
    assert!(done, "recovered by themselves: {} of {N} accepted", unique(&fleet, EventKind::Accepted).len());
    let duplicates = fleet.mock.stats().duplicate_message_ids;
    assert!(duplicates <= 128, "at most the prefetch was sent twice: {duplicates}");
    fleet.stop().await;
}

/// Redis guards every send (the claim, the rate slot, the armed fallback). An outage
/// longer than all of a job's retries together (2 attempts, 1 s and 5 s tiers) must not
/// use them up: nothing is sent while Redis is away (fail closed), nothing is
/// dead-lettered, no RCS message falls back to SMS, and everything goes once Redis is
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_longer_than_all_retries_dead_letters_nothing_and_fires_no_fallback() {
    let mut redis = sendfleet_test_support::RedisServer::start();
    let retry = "retry = { max_attempts = 2, initial_delay_ms = 200, max_delay_ms = 1000, max_age_seconds = 600 }";
    let mut options = options("redis-outage", "outage-sms", retry);
    options.providers_toml.push_str(&format!(
        r#"
[[providers]]
id = "outage-rcs"
kind = "infobip_rcs"
base_url = "{{mock}}"
api_key_env = "TEST_API_KEY"
sender_ids = ["AcmeAgent"]
default_for_channel = true
rate_per_second = 4600
concurrency = 64
callback_token_env = "TEST_CALLBACK_TOKEN"
{retry}
"#
    ));
    options.provider_ids.push("outage-rcs");
    options.redis_url = Some(redis.url());
    let fleet = Fleet::start(options).await;

    redis.stop();
    const N: usize = 100;
    for i in 0..N {
        fleet.publish_request(&request(i)).await;
        let mut rcs = request(N + i);
        rcs.channel = Channel::Rcs;
        rcs.fallback = Some(sendfleet_protocol::SmsFallback {
            text: format!("fallback {i}"),
            sender: None,
            provider: None,
            regional: None,
            validity_period_seconds: None,
        });
        fleet.publish_request(&rcs).await;
    }
    // Longer than both attempts together, each a 10 s wait for a rate slot (or an
    // immediate refusal of the claim) plus the retry tier.
    tokio::time::sleep(Duration::from_secs(26)).await;
    assert_eq!(fleet.mock.stats().requests, 0, "nothing is sent while Redis is away");
    let deferred = fleet
        .events
        .events()
        .iter()
        .filter(|e| e.kind == EventKind::Retrying && e.details.get("deferred").map(String::as_str) == Some("true"))
        .count();
    assert!(deferred >= 2 * N, "jobs wait in the retry tiers, deferred: {deferred}");

    redis.resume();
    let done = wait_until(Duration::from_secs(90), || unique(&fleet, EventKind::Accepted).len() >= 2 * N).await;
    assert!(done, "after the outage every job is sent: {} of {}", unique(&fleet, EventKind::Accepted).len(), 2 * N);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = fleet.mock.stats();
    assert_eq!(stats.accepted, 2 * N as u64, "each message once, and no fallback SMS");
    assert_eq!(stats.duplicate_message_ids, 0);
    assert_eq!(fleet.events.count(EventKind::Failed), 0, "no job failed");
    assert_eq!(fleet.events.count(EventKind::FallbackTriggered), 0, "no fallback fired");
    assert!(fleet.drain_queue(&fleet.ns.topology().dead_letter_queue()).await.is_empty(), "nothing dead-lettered");
    fleet.stop().await;
}

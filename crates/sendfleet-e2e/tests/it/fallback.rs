//! SMS fallback and capability checks, end to end: RCS requests with a fallback, a mock
//! that says some numbers are not RCS capable and fails some RCS deliveries by report,
//! every report posted twice at once to two callback-ingest instances.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use sendfleet_mock_provider::Behaviour;
use sendfleet_protocol::{Channel, Content, EventKind, Recipient, SendRequest, SmsFallback};
use sendfleet_test_support::{Fleet, FleetOptions, wait_until};
use tokio_util::sync::CancellationToken;

/// `ib-sms` (SMS default) and `ib-rcs` (RCS default) with `rcs_extra` lines.
fn providers(rcs_extra: &str) -> String {
    format!(
        r#"
[[providers]]
id = "ib-sms"
kind = "infobip_sms"
base_url = "{{mock}}"
api_key_env = "TEST_API_KEY"
sender_ids = ["ACMEIN"]
default_for_channel = true
rate_per_second = 4600
concurrency = 64
callback_token_env = "TEST_CALLBACK_TOKEN"

[[providers]]
id = "ib-rcs"
kind = "infobip_rcs"
base_url = "{{mock}}"
api_key_env = "TEST_API_KEY"
sender_ids = ["AcmeAgent"]
default_for_channel = true
rate_per_second = 4600
concurrency = 64
callback_token_env = "TEST_CALLBACK_TOKEN"
{rcs_extra}
"#
    )
}

pub(crate) fn number(i: usize) -> String {
    format!("+9198{i:08}")
}

pub(crate) fn message_id(i: usize) -> String {
    format!("fb-{i:05}")
}

/// RCS requests for messages `range`, 500 recipients each, all with an SMS fallback.
pub(crate) fn requests(range: std::ops::Range<usize>) -> Vec<SendRequest> {
    let indices: Vec<usize> = range.collect();
    indices
        .chunks(500)
        .map(|chunk| SendRequest {
            priority: Default::default(),
            schema_version: 1,
            message_id: None,
            channel: Channel::Rcs,
            provider: None,
            to: None,
            recipients: chunk
                .iter()
                .map(|&i| Recipient {
                    to: number(i),
                    message_id: Some(message_id(i)),
                    variables: Default::default(),
                    metadata: [("n".to_owned(), i.to_string())].into(),
                })
                .collect(),
            sender: None,
            content: Some(Content::Text { text: "Your order shipped".into(), suggestions: vec![] }),
            template: None,
            options: Default::default(),
            fallback: Some(SmsFallback {
                text: "Your order shipped (SMS)".into(),
                sender: None,
                provider: None,
                regional: None,
                validity_period_seconds: None,
            }),
            metadata: Default::default(),
            trace_id: None,
        })
        .collect()
}

/// Starts a second callback-ingest on the fleet's config; returns its base URL.
async fn second_ingest(fleet: &Fleet, shutdown: &CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (config, token) = (fleet.config.clone(), shutdown.clone());
    tokio::spawn(async move { sendfleet_callback_ingest::run(config, listener, token).await.expect("ingest b") });
    let client = reqwest::Client::new();
    let ready = async {
        for _ in 0..500 {
            if client.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    assert!(ready.await, "second callback-ingest never became ready");
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_capable_and_failed_rcs_get_exactly_one_sms_each() {
    const N: usize = 10_000;
    let behaviour = Behaviour {
        not_rcs_capable_ratio: 0.3,
        rcs_dlr_fail_ratio: 0.1,
        rcs_dlr_error_id: 7002,
        record_bodies: false,
        ..Behaviour::default()
    };
    let options = FleetOptions {
        providers_toml: providers("capability_check = true"),
        behaviour: behaviour.clone(),
        ..FleetOptions::infobip("fallback")
    };
    let fleet = Fleet::start(options).await;
    let ingest_b = CancellationToken::new();
    let b = second_ingest(&fleet, &ingest_b).await;
    // Every report goes to instance A (the URL in the request) and, at the same time, B.
    fleet.mock.set_behaviour(Behaviour { dlr_duplicate_bases: vec![b], ..behaviour.clone() });

    let not_capable: HashSet<usize> = (0..N).filter(|&i| !behaviour.is_rcs_capable(&number(i))).collect();
    let dlr_failed: HashSet<usize> =
        (0..N).filter(|&i| !not_capable.contains(&i) && behaviour.rcs_dlr_fails(&number(i))).collect();
    let expected_sms: HashSet<String> = not_capable.union(&dlr_failed).map(|&i| message_id(i)).collect();
    let rcs_only: HashSet<String> =
        (0..N).filter(|i| !not_capable.contains(i) && !dlr_failed.contains(i)).map(message_id).collect();
    assert!(not_capable.len() > N / 4 && !dlr_failed.is_empty(), "the mock's shares apply");

    for request in requests(0..N) {
        fleet.publish_request(&request).await;
    }
    let sent_all = N - not_capable.len() + expected_sms.len();
    let accepted = fleet.mock.wait_for_accepted(sent_all as u64, Duration::from_secs(120)).await;
    assert_eq!(accepted, sent_all as u64, "one RCS request per capable number, one SMS per fallback");
    let settled = wait_until(Duration::from_secs(60), || {
        fleet.mock.dlrs_delivered() >= sent_all as u64
            && fleet.events.count(EventKind::FallbackTriggered) >= expected_sms.len()
    })
    .await;
    assert!(settled, "reports {} of {sent_all}", fleet.mock.dlrs_delivered());
    // Late duplicates would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let received = fleet.mock.received();
    let mut by_path: HashMap<&str, Vec<&str>> = HashMap::new();
    for request in &received {
        assert_eq!(request.status, 200, "{}", request.path);
        for id in &request.message_ids {
            by_path.entry(request.path.as_str()).or_default().push(id.as_str());
        }
    }
    let sms: Vec<&str> = by_path.get("/sms/3/messages").cloned().unwrap_or_default();
    let rcs: Vec<&str> = by_path.get("/rcs/2/messages").cloned().unwrap_or_default();
    let sms_for: HashSet<String> = sms.iter().map(|id| id.trim_end_matches(".sms").to_owned()).collect();
    assert_eq!(sms.len(), expected_sms.len(), "exactly one SMS per fallback, none twice");
    assert_eq!(sms_for, expected_sms, "exactly the right numbers got an SMS");
    let rcs_ids: HashSet<&str> = rcs.iter().copied().collect();
    assert_eq!(rcs.len(), rcs_ids.len(), "no RCS request twice");
    assert!(not_capable.iter().all(|&i| !rcs_ids.contains(message_id(i).as_str())), "no RCS for not capable");
    assert_eq!(rcs_ids.len(), N - not_capable.len());
    assert_eq!(fleet.mock.stats().duplicate_message_ids, 0);

    // The capability check: every number asked once, in batches of at most 500.
    let capability = fleet.mock.capability_stats();
    assert_eq!(capability.distinct_numbers, N as u64);
    assert_eq!(capability.numbers, N as u64, "no number asked twice");
    assert_eq!(capability.numbers_asked_again, 0);
    assert!(capability.largest_query <= 500, "{capability:?}");
    assert!(capability.queries >= (N / 500) as u64 && capability.queries < (N / 5) as u64, "{capability:?}");

    // Events: one fallback_triggered per SMS, the SMS's events under the RCS message id.
    let events = fleet.events.events();
    let triggered: Vec<_> = events.iter().filter(|e| e.kind == EventKind::FallbackTriggered).collect();
    assert_eq!(triggered.len(), expected_sms.len());
    let triggered_ids: HashSet<String> = triggered.iter().filter_map(|e| e.message_id.clone()).collect();
    assert_eq!(triggered_ids, expected_sms);
    assert!(triggered.iter().all(|e| e.details.get("reason_code").map(String::as_str) == Some("not_capable")));
    let by_dlr = message_id(*dlr_failed.iter().next().unwrap());
    let dlr_event = triggered.iter().find(|e| e.message_id.as_deref() == Some(by_dlr.as_str())).unwrap();
    assert!(dlr_event.reason.as_deref().unwrap_or("").contains("7002"), "{:?}", dlr_event.reason);
    let sms_delivered: HashSet<String> = events
        .iter()
        .filter(|e| e.kind == EventKind::Delivered && e.channel == Channel::Sms)
        .filter_map(|e| e.message_id.clone())
        .collect();
    assert_eq!(sms_delivered, expected_sms, "SMS reports carry the RCS message id");
    let rcs_delivered: HashSet<String> = events
        .iter()
        .filter(|e| e.kind == EventKind::Delivered && e.channel == Channel::Rcs)
        .filter_map(|e| e.message_id.clone())
        .collect();
    assert_eq!(rcs_delivered, rcs_only, "everyone else got RCS only");
    let sms_accepted =
        events.iter().find(|e| e.kind == EventKind::Accepted && e.channel == Channel::Sms).expect("an accepted SMS");
    assert!(sms_accepted.details.get("fallback_message_id").is_some_and(|id| id.ends_with(".sms")));
    assert!(sms_accepted.metadata.contains_key("n"), "metadata travels to the fallback");

    let metrics = fleet.worker_metrics(0).await;
    assert!(
        metrics.contains("sendfleet_fallbacks_total{provider=\"ib-rcs\",reason=\"not_capable\"}"),
        "fallback counter:\n{}",
        metrics.lines().filter(|l| l.contains("fallback")).collect::<Vec<_>>().join("\n")
    );
    ingest_b.cancel();
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_side_failover_sends_no_sms_job_and_reports_the_channel() {
    const N: usize = 200;
    let behaviour = Behaviour { not_rcs_capable_ratio: 0.3, ..Behaviour::default() };
    let options = FleetOptions {
        providers_toml: providers("fallback_mode = \"provider\"\ncapability_check = true"),
        behaviour: behaviour.clone(),
        ..FleetOptions::infobip("failover")
    };
    let fleet = Fleet::start(options).await;
    for request in requests(0..N) {
        fleet.publish_request(&request).await;
    }
    assert_eq!(fleet.events.wait_for(EventKind::Delivered, N, Duration::from_secs(60)).await, N);
    let received = fleet.mock.received();
    assert!(received.iter().all(|r| r.path == "/rcs/2/messages"), "the provider sends the SMS itself");
    assert_eq!(received.len(), N, "not capable numbers get RCS with smsFailover too");
    let body = received[0].body.as_ref().expect("body");
    assert_eq!(body["messages"][0]["options"]["smsFailover"]["text"], "Your order shipped (SMS)");
    assert_eq!(fleet.mock.capability_stats().queries, 0, "the check is not spent when the provider fails over");
    let by_channel: HashMap<String, Channel> = fleet
        .events
        .events()
        .into_iter()
        .filter(|e| e.kind == EventKind::Delivered)
        .filter_map(|e| e.message_id.map(|id| (id, e.channel)))
        .collect();
    for i in 0..N {
        let expected = if behaviour.is_rcs_capable(&number(i)) { Channel::Rcs } else { Channel::Sms };
        assert_eq!(by_channel.get(&message_id(i)), Some(&expected), "{}", number(i));
    }
    assert_eq!(fleet.events.count(EventKind::FallbackTriggered), 0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_capable_without_a_fallback_fails_without_an_rcs_request() {
    let options = FleetOptions {
        providers_toml: providers("capability_check = true"),
        behaviour: Behaviour { not_rcs_capable_numbers: vec![number(1)], ..Behaviour::default() },
        ..FleetOptions::infobip("nofallback")
    };
    let fleet = Fleet::start(options).await;
    for mut request in requests(0..3) {
        request.fallback = None;
        fleet.publish_request(&request).await;
    }
    assert_eq!(fleet.events.wait_for(EventKind::Delivered, 2, Duration::from_secs(30)).await, 2);
    assert_eq!(fleet.events.wait_for(EventKind::Failed, 1, Duration::from_secs(30)).await, 1);
    let failed = fleet.events.events().into_iter().find(|e| e.kind == EventKind::Failed).unwrap();
    assert_eq!(failed.message_id.as_deref(), Some(message_id(1).as_str()));
    assert_eq!(failed.details.get("reason_code").map(String::as_str), Some("not_rcs_capable"));
    let received = fleet.mock.received();
    assert_eq!(received.len(), 2, "no request for the number that cannot receive RCS");
    assert!(received.iter().all(|r| r.message_ids[0] != message_id(1)));
    assert!(fleet.drain_queue(&fleet.ns.topology().dead_letter_queue()).await.is_empty());
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_exhausted_rcs_sends_fall_back_to_one_sms_each() {
    const N: usize = 6;
    let (refused, failing) = (1, 2);
    let behaviour = Behaviour {
        rcs_status_by_number: [(number(refused), 400), (number(failing), 503)].into(),
        ..Behaviour::default()
    };
    // Two attempts with a short backoff: the failing number exhausts its retries in ~1 s
    // (the shortest retry tier) instead of hours.
    let retry = "[providers.retry]\nmax_attempts = 2\ninitial_delay_ms = 100\nmax_delay_ms = 500";
    let options = FleetOptions { providers_toml: providers(retry), behaviour, ..FleetOptions::infobip("sendfail") };
    let fleet = Fleet::start(options).await;
    for request in requests(0..N) {
        fleet.publish_request(&request).await;
    }
    assert_eq!(fleet.events.wait_for(EventKind::FallbackTriggered, 2, Duration::from_secs(60)).await, 2);
    // Four RCS delivered plus the two SMS.
    assert_eq!(fleet.events.wait_for(EventKind::Delivered, N, Duration::from_secs(60)).await, N);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let received = fleet.mock.received();
    let to = |path: &str, i: usize| {
        received
            .iter()
            .filter(|r| r.path == path && r.message_ids.iter().any(|id| id.starts_with(&message_id(i))))
            .count()
    };
    assert_eq!(to("/rcs/2/messages", refused), 1, "a refused send is not retried");
    assert_eq!(to("/rcs/2/messages", failing), 2, "a failing send is tried max_attempts times");
    assert_eq!(to("/sms/3/messages", refused), 1);
    assert_eq!(to("/sms/3/messages", failing), 1);
    for i in (0..N).filter(|&i| i != refused && i != failing) {
        assert_eq!((to("/rcs/2/messages", i), to("/sms/3/messages", i)), (1, 0), "{}", message_id(i));
    }

    let events = fleet.events.events();
    let reason_of = |i: usize| {
        events
            .iter()
            .find(|e| e.kind == EventKind::FallbackTriggered && e.message_id.as_deref() == Some(message_id(i).as_str()))
            .and_then(|e| e.details.get("reason_code").cloned())
    };
    assert_eq!(reason_of(refused).as_deref(), Some("send_rejected"));
    assert_eq!(reason_of(failing).as_deref(), Some("retries_exhausted"));
    let failed_rcs = |i: usize| {
        events
            .iter()
            .find(|e| {
                e.kind == EventKind::Failed
                    && e.channel == Channel::Rcs
                    && e.message_id.as_deref() == Some(&message_id(i))
            })
            .cloned()
            .unwrap_or_else(|| panic!("no failed event for {}", message_id(i)))
    };
    assert_eq!(failed_rcs(refused).details.get("reason_code").map(String::as_str), Some("bad_request"));
    assert_eq!(failed_rcs(failing).details.get("reason_code").map(String::as_str), Some("retries_exhausted"));
    for i in [refused, failing] {
        let fallback_id = failed_rcs(i).details.get("fallback_message_id").cloned();
        assert_eq!(fallback_id, Some(format!("{}.sms", message_id(i))), "the failed event names the SMS");
    }
    let sms_delivered: HashSet<String> = events
        .iter()
        .filter(|e| e.kind == EventKind::Delivered && e.channel == Channel::Sms)
        .filter_map(|e| e.message_id.clone())
        .collect();
    assert_eq!(sms_delivered, [message_id(refused), message_id(failing)].into());
    // Retries exhausted: the RCS job itself is kept in the dead-letter queue as well.
    let dead = fleet.drain_queue(&fleet.ns.topology().dead_letter_queue()).await;
    assert_eq!(dead.len(), 1, "only the exhausted job is dead-lettered");
    fleet.stop().await;
}

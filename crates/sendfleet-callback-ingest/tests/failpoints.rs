//! Faults injected into callback-ingest's steps with failpoints, against the real
//! RabbitMQ and Redis: a provider whose HTTP client gives up mid-callback does not
//! cancel the SMS fallback it triggered, and a failure after the events are confirmed
//! is answered 503 so the provider posts again.
//!
//! Failpoints are process-global. nextest runs every test in its own process; under
//! plain `cargo test` the tests of this binary share one, so each holds [`SERIAL`] for
//! its whole run and clears what it configured.

mod common;

use std::time::Duration;

use common::{Ingest, TOKEN, fixture};
use sendfleet_failpoints::Point;
use sendfleet_fallback::Fallbacks;
use sendfleet_protocol::{Channel, Content, EventKind, SendJob, SendOptions};

/// Serialises the tests of this binary (see the module docs).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Clears the configured failpoints when dropped, even when the test panics.
struct Points(Vec<Point>);

impl Points {
    fn set(settings: &[(Point, &str)]) -> Points {
        for (point, action) in settings {
            sendfleet_failpoints::configure(*point, action).expect("failpoint action");
        }
        Points(settings.iter().map(|(point, _)| *point).collect())
    }
}

impl Drop for Points {
    fn drop(&mut self) {
        for point in &self.0 {
            sendfleet_failpoints::clear(*point);
        }
    }
}

/// The SMS fallback of RCS message `rcs_id`, on the test's SMS provider.
fn sms_fallback(rcs_id: &str) -> SendJob {
    SendJob {
        priority: Default::default(),
        schema_version: 1,
        message_id: format!("{rcs_id}.sms"),
        provider: "ib-sms".into(),
        channel: Channel::Sms,
        to: "+919812345678".into(),
        sender: "ACMEIN".into(),
        content: Content::Text { text: "plain".into(), suggestions: vec![] },
        options: SendOptions::default(),
        fallback: None,
        metadata: Default::default(),
        trace_id: "t".into(),
        attempts: 0,
        first_attempt_at_ms: None,
        created_at_ms: 1,
        fallback_for: Some(rcs_id.into()),
    }
}

/// The not-capable RCS report fixture, about `rcs_id`.
fn not_capable_report(rcs_id: &str) -> Vec<u8> {
    let text = String::from_utf8(fixture("rcs-dlr-failed-not-capable.json")).unwrap();
    text.replace("5b3e9a1e-6c7d-4f80-9a1b-2c3d4e5f6a02", rcs_id).into_bytes()
}

async fn raw_fallback(ingest: &Ingest, rcs_id: &str) -> Option<Vec<u8>> {
    let client = redis::Client::open(sendfleet_test_support::redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}:fallback:{rcs_id}", ingest.config.redis.key_prefix);
    redis::cmd("GET").arg(key).query_async(&mut connection).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_disconnecting_mid_fire_does_not_cancel_the_sms_fallback() {
    let _serial = SERIAL.lock().await;
    let ingest = Ingest::start_with("cb-fp-disconnect", None, "").await;
    let fallbacks = Fallbacks::connect(&ingest.config).unwrap();
    fallbacks.arm("dc-1", &sms_fallback("dc-1"), Duration::from_secs(600)).await.unwrap();
    // The fire stalls between its claim and its publish (a slow broker) for longer than
    // the provider's HTTP client waits for the answer.
    let _points = Points::set(&[(Point::FallbackTaken, "1*return(stall:1500)")]);
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let sent = impatient.post(ingest.url("ib-rcs", TOKEN, "/delivery")).body(not_capable_report("dc-1")).send().await;
    assert!(sent.is_err_and(|e| e.is_timeout()), "the client gave up and disconnected");
    let jobs = ingest.ns.topology().jobs_queue("ib-sms");
    let mut published = 0;
    for _ in 0..100 {
        published = ingest.ns.queue_depth(&jobs).await;
        if published > 0 && raw_fallback(&ingest, "dc-1").await.as_deref() == Some(b"F") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(published, 1, "the SMS job is published although the callback's client left");
    assert_eq!(raw_fallback(&ingest, "dc-1").await.as_deref(), Some(&b"F"[..]), "and the claim ends fired");
    assert_eq!(ingest.events.wait_for(EventKind::FallbackTriggered, 1, Duration::from_secs(10)).await, 1);
    // The provider posts the report again (it never got an answer): nothing more is sent.
    let (status, _) = ingest.post(&ingest.url("ib-rcs", TOKEN, "/delivery"), not_capable_report("dc-1")).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ingest.ns.queue_depth(&jobs).await, 1, "published exactly once");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_parsing_or_confirming_is_answered_503_for_the_provider_to_retry() {
    let _serial = SERIAL.lock().await;
    let ingest = Ingest::start_with("cb-fp-503", None, "").await;
    let url = ingest.url("ib-sms", TOKEN, "/delivery");
    let report = fixture("sms-dlr-delivered.json");
    for point in [Point::IngestParsed, Point::IngestConfirmed, Point::IngestBeforeResponse] {
        let _points = Points::set(&[(point, "1*return(error)")]);
        let (status, answer) = ingest.post(&url, report.clone()).await;
        assert_eq!(status, 503, "{point}: {answer}");
    }
    assert_eq!(ingest.post(&url, report).await.0, 200, "the provider's retry");
    // Parsed-only: nothing published; confirmed and before-response: published, then
    // published again by the retry (events are at least once).
    assert_eq!(ingest.events.wait_for(EventKind::Delivered, 3, Duration::from_secs(20)).await, 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ingest.events.count(EventKind::Delivered), 3);
    ingest.stop().await;
}

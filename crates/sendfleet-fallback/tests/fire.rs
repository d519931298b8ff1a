//! Firing against the real RabbitMQ and Redis: one SMS job however many triggers race,
//! a job that was not confirmed is released for the next trigger, and one report's
//! failure does not cancel its siblings. (Crashes between the phases: `failpoints.rs`.)

mod common;

use std::time::Duration;

use common::{Env, not_capable_report, rcs_job};
use sendfleet_broker::Publisher;
use sendfleet_fallback::{DEFAULT_CLAIM_TIMEOUT, FallbackError, FallbackReason, Fallbacks, FireOutcome, fallback_job};
use sendfleet_protocol::{Channel, Event, EventKind, SendJob, decode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_reports_on_two_instances_publish_one_sms() {
    let env = Env::new("fb-once").await;
    env.declare(&["rcs", "sms"]).await;
    // Two callback-ingest instances: separate pools, separate broker channels.
    let (a, b) = (Fallbacks::connect(&env.config).unwrap(), Fallbacks::connect(&env.config).unwrap());
    let (pa, pb) = (Publisher::open(&env.connection).await.unwrap(), Publisher::open(&env.connection).await.unwrap());
    const MESSAGES: usize = 50;
    for i in 0..MESSAGES {
        let rcs = rcs_job(&format!("m-{i}"));
        let sms = fallback_job(&env.config, &rcs).unwrap().unwrap();
        a.arm(&rcs.message_id, &sms, Duration::from_secs(600)).await.unwrap();
    }
    let mut calls = Vec::new();
    for i in 0..MESSAGES {
        for copy in 0..4 {
            let (fallbacks, publisher) = if copy % 2 == 0 { (a.clone(), pa.clone()) } else { (b.clone(), pb.clone()) };
            let report = not_capable_report(&format!("m-{i}"));
            // As a provider would: a 503 ("in progress" while another instance holds the
            // claim) is posted again a little later.
            calls.push(tokio::spawn(async move {
                for _ in 0..200 {
                    match fallbacks.on_report(Some(&publisher), &report).await {
                        Err(FallbackError::InProgress { retry_after, .. }) => {
                            assert!(retry_after <= DEFAULT_CLAIM_TIMEOUT);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        other => return other,
                    }
                }
                panic!("still in progress after 200 tries")
            }));
        }
    }
    for call in calls {
        call.await.unwrap().expect("every duplicate ends answered without error");
    }
    let jobs: Vec<SendJob> =
        env.drain(&env.topology().jobs_queue("sms")).await.iter().map(|b| decode(b).unwrap()).collect();
    assert_eq!(jobs.len(), MESSAGES, "one SMS per RCS message");
    let mut originals: Vec<String> = jobs.iter().filter_map(|j| j.fallback_for.clone()).collect();
    originals.sort();
    originals.dedup();
    assert_eq!(originals.len(), MESSAGES);
    let job = jobs.iter().find(|j| j.fallback_for.as_deref() == Some("m-7")).unwrap();
    assert_eq!((job.channel, job.provider.as_str(), job.message_id.as_str()), (Channel::Sms, "sms", "m-7.sms"));

    let events: Vec<Event> =
        env.drain(&env.topology().events_queue()).await.iter().map(|b| decode(b).unwrap()).collect();
    assert_eq!(events.len(), MESSAGES, "one fallback_triggered event per message");
    let event = events.iter().find(|e| e.message_id.as_deref() == Some("m-7")).unwrap();
    assert_eq!(event.kind, EventKind::FallbackTriggered);
    assert_eq!(event.details.get("reason_code").map(String::as_str), Some("not_capable"));
    assert_eq!(event.details.get("fallback_message_id").map(String::as_str), Some("m-7.sms"));
    assert!(event.reason.as_deref().unwrap().contains("7002"), "{:?}", event.reason);
    assert_eq!(event.trace_id.as_deref(), Some("trace-9"));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_fallback_is_released_and_the_caller_fails() {
    let env = Env::new("fb-restore").await;
    // Exchanges exist, but no SMS queue: the mandatory job publish is returned unroutable.
    env.declare(&[]).await;
    let fallbacks = Fallbacks::connect(&env.config).unwrap();
    let publisher = Publisher::open(&env.connection).await.unwrap();
    let rcs = rcs_job("r-1");
    let sms = fallback_job(&env.config, &rcs).unwrap().unwrap();
    fallbacks.arm("r-1", &sms, Duration::from_secs(600)).await.unwrap();
    let err = fallbacks.on_report(Some(&publisher), &not_capable_report("r-1")).await.unwrap_err();
    assert!(err.to_string().contains("not published"), "{err}");
    assert_eq!(env.raw("r-1").await.map(|v| v[0]), Some(b'A'), "released: armed again, not in progress");
    let err = fallbacks.on_report(None, &not_capable_report("r-1")).await.unwrap_err();
    assert!(err.to_string().contains("not connected"), "still armed, so it needs a broker: {err}");

    // The provider retries the callback once the broker can take the job.
    env.declare(&["sms"]).await;
    let outcome =
        fallbacks.fire(&publisher, "r-1", "rcs", FallbackReason::NotCapable, "retried callback").await.unwrap();
    assert!(matches!(&outcome, FireOutcome::Published(job) if job.message_id == "r-1.sms"), "{outcome:?}");
    let again = fallbacks.fire(&publisher, "r-1", "rcs", FallbackReason::NotCapable, "again").await.unwrap();
    assert_eq!(again, FireOutcome::AlreadyFired);
    assert_eq!(env.raw("r-1").await.as_deref(), Some(&b"F"[..]));
    assert_eq!(env.drain(&env.topology().jobs_queue("sms")).await.len(), 1);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reports_error_does_not_cancel_its_siblings() {
    let env = Env::new("fb-siblings").await;
    env.declare(&["rcs", "sms"]).await;
    let fallbacks = Fallbacks::connect(&env.config).unwrap();
    let publisher = Publisher::open(&env.connection).await.unwrap();
    // The first report of the batch fails fast (its armed value is unreadable), while
    // its siblings are between their claim and their confirmed publish.
    env.set_raw("bad", b"Agarbage").await;
    let mut reports = vec![not_capable_report("bad")];
    const SIBLINGS: usize = 20;
    for i in 0..SIBLINGS {
        let id = format!("s-{i}");
        let sms = fallback_job(&env.config, &rcs_job(&id)).unwrap().unwrap();
        fallbacks.arm(&id, &sms, Duration::from_secs(600)).await.unwrap();
        reports.push(not_capable_report(&id));
    }
    let err = fallbacks.on_reports(Some(&publisher), &reports).await.unwrap_err();
    assert!(matches!(err, FallbackError::Corrupt { .. }), "the batch still fails: {err}");
    let jobs = env.drain(&env.topology().jobs_queue("sms")).await;
    assert_eq!(jobs.len(), SIBLINGS, "every sibling ran to its confirmed publish");
    for i in 0..SIBLINGS {
        assert_eq!(env.raw(&format!("s-{i}")).await.as_deref(), Some(&b"F"[..]), "s-{i} marked fired");
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_and_seen_reports_disarm() {
    let env = Env::new("fb-disarm").await;
    env.declare(&["rcs", "sms"]).await;
    let fallbacks = Fallbacks::connect(&env.config).unwrap();
    let publisher = Publisher::open(&env.connection).await.unwrap();
    for id in ["d-1", "s-1"] {
        let sms = fallback_job(&env.config, &rcs_job(id)).unwrap().unwrap();
        fallbacks.arm(id, &sms, Duration::from_secs(600)).await.unwrap();
    }
    let mut delivered = Event::new(EventKind::Delivered, "rcs", Channel::Rcs);
    delivered.message_id = Some("d-1".into());
    let mut seen = Event::new(EventKind::Seen, "rcs", Channel::Rcs);
    seen.message_id = Some("s-1".into());
    // No publisher needed to disarm.
    fallbacks.on_reports(None, &[delivered, seen]).await.unwrap();
    for id in ["d-1", "s-1"] {
        fallbacks.on_report(Some(&publisher), &not_capable_report(id)).await.unwrap();
    }
    assert!(env.drain(&env.topology().jobs_queue("sms")).await.is_empty(), "a late failure sends nothing");
    env.cleanup().await;
}

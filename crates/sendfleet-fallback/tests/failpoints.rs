//! Crashes, lost replies and cancellations between the phases of a fire, injected with
//! failpoints against the real RabbitMQ and Redis: the SMS is never lost, a claim keeps
//! other triggers out until its deadline, and a lapsed claim is fired by the next one.
//!
//! Failpoints are process-global. nextest runs every test in its own process; under
//! plain `cargo test` the tests of this binary share one, so each holds [`SERIAL`] for
//! its whole run and clears what it configured.

mod common;

use std::time::Duration;

use common::{Env, TTL, rcs_job};
use sendfleet_broker::Publisher;
use sendfleet_failpoints::Point;
use sendfleet_fallback::{FallbackError, FallbackReason, Fallbacks, FireOutcome, fallback_job};
use sendfleet_protocol::{SendJob, decode};

/// Serialises the tests of this binary (see the module docs).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Short, so a lapsed claim can be waited out.
const CLAIM: Duration = Duration::from_millis(800);

/// Clears the configured failpoints when dropped, even when the test panics.
struct Points(&'static [Point]);

impl Points {
    fn set(points: &'static [Point], action: &str) -> Points {
        for point in points {
            sendfleet_failpoints::configure(*point, action).expect("failpoint action");
        }
        Points(points)
    }
}

impl Drop for Points {
    fn drop(&mut self) {
        for point in self.0 {
            sendfleet_failpoints::clear(*point);
        }
    }
}

struct Fixture {
    env: Env,
    fallbacks: Fallbacks,
    publisher: Publisher,
}

impl Fixture {
    async fn new(name: &str, ids: &[&str]) -> Fixture {
        let env = Env::new(name).await;
        env.declare(&["rcs", "sms"]).await;
        let fallbacks = Fallbacks::connect(&env.config).unwrap().with_claim_timeout(CLAIM);
        let publisher = Publisher::open(&env.connection).await.unwrap();
        for id in ids {
            let sms = fallback_job(&env.config, &rcs_job(id)).unwrap().unwrap();
            fallbacks.arm(id, &sms, TTL).await.unwrap();
        }
        Fixture { env, fallbacks, publisher }
    }

    async fn fire(&self, id: &str) -> Result<FireOutcome, FallbackError> {
        self.fallbacks.fire(&self.publisher, id, "rcs", FallbackReason::NotCapable, "test").await
    }

    async fn sms_jobs(&self) -> Vec<SendJob> {
        self.env.drain(&self.env.topology().jobs_queue("sms")).await.iter().map(|b| decode(b).unwrap()).collect()
    }
}

fn published(outcome: &FireOutcome, id: &str) -> bool {
    matches!(outcome, FireOutcome::Published(job) if job.message_id == format!("{id}.sms"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_reply_was_lost_is_in_progress_until_its_deadline_then_fired() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new("fb-fp-lost", &["c-1"]).await;
    {
        // The claim is in Redis, but the claimer never hears so (or dies right there).
        let _points = Points::set(&[Point::FallbackTaken], "1*return(error)");
        let err = f.fire("c-1").await.unwrap_err();
        assert!(matches!(err, FallbackError::Injected(_)), "{err}");
    }
    assert_eq!(f.env.raw("c-1").await.map(|v| v[0]), Some(b'C'), "still claimed, the job still in Redis");
    match f.fire("c-1").await.unwrap() {
        FireOutcome::InProgress { retry_after } => assert!(retry_after <= CLAIM, "{retry_after:?}"),
        other => panic!("before the deadline the next trigger must hear 'in progress', got {other:?}"),
    }
    assert!(f.sms_jobs().await.is_empty(), "nothing published yet");
    tokio::time::sleep(CLAIM + Duration::from_millis(100)).await;
    let outcome = f.fire("c-1").await.unwrap();
    assert!(published(&outcome, "c-1"), "after the deadline the next trigger fires it: {outcome:?}");
    assert_eq!(f.fire("c-1").await.unwrap(), FireOutcome::AlreadyFired);
    assert_eq!(f.sms_jobs().await.len(), 1);
    assert_eq!(f.env.raw("c-1").await.as_deref(), Some(&b"F"[..]));
    f.env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_cancelled_between_claim_and_publish_is_fired_by_the_next_trigger() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new("fb-fp-cancel", &["x-1"]).await;
    {
        let _points = Points::set(&[Point::FallbackTaken], "1*return(stall:5000)");
        // The caller's future is dropped mid-fire (a client disconnect, a timeout).
        let cancelled = tokio::time::timeout(Duration::from_millis(200), f.fire("x-1")).await;
        assert!(cancelled.is_err(), "stalled past the timeout");
    }
    assert!(matches!(f.fire("x-1").await.unwrap(), FireOutcome::InProgress { .. }));
    tokio::time::sleep(CLAIM + Duration::from_millis(100)).await;
    assert!(published(&f.fire("x-1").await.unwrap(), "x-1"), "not AlreadyFired: the SMS was never published");
    assert_eq!(f.sms_jobs().await.len(), 1);
    f.env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_enqueued_but_unconfirmed_is_released_and_published_again_under_the_same_id() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new("fb-fp-unconfirmed", &["u-1"]).await;
    {
        let _points = Points::set(&[Point::FallbackPublished], "1*return(error)");
        let err = f.fire("u-1").await.unwrap_err();
        assert!(matches!(err, FallbackError::Injected(_)), "{err}");
    }
    assert_eq!(f.env.raw("u-1").await.map(|v| v[0]), Some(b'A'), "released: armed for the next trigger");
    assert!(published(&f.fire("u-1").await.unwrap(), "u-1"));
    // The re-fire publishes a second copy; both carry the same id, which the worker's
    // sent record turns into one SMS.
    let jobs = f.sms_jobs().await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert!(jobs.iter().all(|j| j.message_id == "u-1.sms"));
    assert_eq!(f.env.raw("u-1").await.as_deref(), Some(&b"F"[..]));
    f.env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_confirm_before_the_mark_refires_the_same_job_after_the_deadline() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new("fb-fp-unmarked", &["p-1"]).await;
    {
        let _points = Points::set(&[Point::FallbackPublished], "1*return(stall:5000)");
        assert!(tokio::time::timeout(Duration::from_millis(300), f.fire("p-1")).await.is_err());
    }
    // Confirmed but not marked: the claim holds the others off, then lapses.
    assert!(matches!(f.fire("p-1").await.unwrap(), FireOutcome::InProgress { .. }));
    tokio::time::sleep(CLAIM + Duration::from_millis(100)).await;
    assert!(published(&f.fire("p-1").await.unwrap(), "p-1"));
    let jobs = f.sms_jobs().await;
    assert_eq!(jobs.len(), 2, "at least once into the broker");
    assert!(jobs.iter().all(|j| j.message_id == "p-1.sms"), "under one id");
    f.env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_mark_reply_still_reports_the_published_sms() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new("fb-fp-marked", &["k-1"]).await;
    {
        let _points = Points::set(&[Point::FallbackMarked], "1*return(error)");
        assert!(published(&f.fire("k-1").await.unwrap(), "k-1"), "the SMS is confirmed: published");
    }
    assert_eq!(f.env.raw("k-1").await.as_deref(), Some(&b"F"[..]));
    assert_eq!(f.fire("k-1").await.unwrap(), FireOutcome::AlreadyFired);
    assert_eq!(f.sms_jobs().await.len(), 1);
    f.env.cleanup().await;
}

//! The fault matrix: every failpoint × {the process dies, the step fails, the step
//! stalls past its caller's timeout}, on the real binaries.
//!
//! Each cell runs the dispatcher, a sender-worker and callback-ingest as processes with
//! the failpoint set in the processes that pass it, and sends SMS requests and RCS
//! requests with an SMS fallback (none with a message id: the dispatcher derives them).
//! The mock says a quarter of the RCS numbers are not RCS capable (the worker's
//! capability check fires the fallback) and fails another quarter by delivery report
//! (callback-ingest fires it). A process that dies is started again without its
//! failpoint. When every message has ended, the cell checks:
//! - every message ended with exactly one terminal outcome (repeated events share their
//!   event id);
//! - nothing reached the provider twice, but for the one documented window: a worker that
//!   dies (or loses the answer) between the provider's answer and the sent record;
//! - every RCS message that could not be delivered got exactly one SMS, and the others none;
//! - every delivery report the mock got a 2xx for is an event in the broker (callback-ingest
//!   answers 2xx only after the broker confirmed), which the cell's end condition needs,
//!   and a report posted again is the same event (same `event_id`).

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use sendfleet_failpoints::{Fault, Point};
use sendfleet_mock_provider::Behaviour;
use sendfleet_protocol::{Channel, EventKind};
use sendfleet_test_support::{ProcessFleet, ProcessFleetOptions, Role};

use crate::common::{PROVIDER_IDS, providers, publish_all, rcs_request, sms_request};

const SMS: usize = 20;
const RCS: usize = 20;

/// The processes a failpoint is set in.
fn targets(point: Point) -> &'static [Role] {
    match point {
        Point::DispatcherJobsConfirmed | Point::DispatcherBeforeAck => &[Role::Dispatcher],
        Point::WorkerProviderAnswered
        | Point::WorkerSentRecorded
        | Point::WorkerConsequencesConfirmed
        | Point::WorkerBeforeAck => &[Role::Worker(0)],
        // The worker fires fallbacks of numbers the capability check says are not
        // capable, callback-ingest those of failed delivery reports.
        Point::FallbackTaken | Point::FallbackPublished | Point::FallbackMarked => &[Role::Worker(0), Role::Ingest],
        Point::IngestParsed | Point::IngestConfirmed | Point::IngestBeforeResponse => &[Role::Ingest],
    }
}

/// The stall of a cell: past the mock's 10 s HTTP timeout where an HTTP client waits
/// (callbacks), a few seconds elsewhere (the broker waits as long as it takes).
fn stall(point: Point) -> Duration {
    match targets(point) {
        [Role::Dispatcher] | [Role::Worker(_)] => Duration::from_secs(3),
        _ => Duration::from_secs(11),
    }
}

fn failpoints(point: Point, fault: Fault) -> String {
    let times = match fault {
        Fault::Abort => 1,
        Fault::Error => 3,
        Fault::Stall(_) => 2,
    };
    format!("{}={times}*{}", point.name(), fault.action())
}

/// Provider-side duplicates the cell may show: only a worker that dies, or loses the
/// provider's answer, between that answer and the sent record can send a message again
/// (once its claim runs out), at most once per message it had in flight.
fn allowed_duplicates(point: Point, fault: Fault) -> u64 {
    let worker_dies = matches!(fault, Fault::Abort) && targets(point).contains(&Role::Worker(0));
    match (point, fault) {
        _ if worker_dies => 32,
        (Point::WorkerProviderAnswered, Fault::Error) => 3,
        _ => 0,
    }
}

fn behaviour() -> Behaviour {
    Behaviour {
        latency_ms: 2,
        not_rcs_capable_ratio: 0.25,
        rcs_dlr_fail_ratio: 0.34,
        record_bodies: false,
        ..Behaviour::default()
    }
}

/// What should happen to each request, by its number.
struct Expected {
    sms_numbers: HashSet<String>,
    /// RCS number → whether it falls back to SMS.
    rcs_numbers: HashMap<String, bool>,
}

impl Expected {
    fn new() -> Expected {
        let behaviour = behaviour();
        let sms_numbers = (0..SMS).map(|i| sms_request(i).to.unwrap()).collect();
        let rcs_numbers = (0..RCS)
            .map(|i| {
                let to = rcs_request(i).to.unwrap();
                let falls_back = !behaviour.is_rcs_capable(&to) || behaviour.rcs_dlr_fails(&to);
                (to, falls_back)
            })
            .collect();
        Expected { sms_numbers, rcs_numbers }
    }
}

/// What the events and the mock say, by number.
#[derive(Default, Debug)]
struct Seen {
    /// (channel, number) → distinct terminal outcome (kind, event id).
    terminal: HashMap<(Channel, String), HashSet<(EventKind, String)>>,
    /// RCS number → distinct `fallback_triggered` event ids.
    fallbacks: HashMap<String, HashSet<String>>,
    /// (channel, number) → delivery report kinds seen.
    reports: HashMap<(Channel, String), HashSet<EventKind>>,
    /// (channel, number, kind) → distinct event ids of delivery reports.
    report_ids: HashMap<(Channel, String, EventKind), HashSet<String>>,
}

impl Seen {
    fn of(fleet: &ProcessFleet) -> Seen {
        let mut seen = Seen::default();
        for event in fleet.events.events() {
            let Some(to) = event.to.clone() else { continue };
            match event.kind {
                EventKind::Accepted | EventKind::Failed => {
                    seen.terminal.entry((event.channel, to)).or_default().insert((event.kind, event.event_id));
                }
                EventKind::FallbackTriggered => {
                    seen.fallbacks.entry(to).or_default().insert(event.event_id);
                }
                EventKind::Delivered | EventKind::Undelivered => {
                    seen.reports.entry((event.channel, to.clone())).or_default().insert(event.kind);
                    seen.report_ids.entry((event.channel, to, event.kind)).or_default().insert(event.event_id);
                }
                _ => {}
            }
        }
        seen
    }

    /// Whether every message has ended: SMS requests and fallbacks accepted and
    /// reported, RCS messages that reach the user accepted and reported delivered.
    fn done(&self, expected: &Expected) -> bool {
        let sent_and_reported = |channel: Channel, to: &String| {
            self.terminal.get(&(channel, to.clone())).is_some_and(|t| !t.is_empty())
                && self.reports.get(&(channel, to.clone())).is_some_and(|r| !r.is_empty())
        };
        expected.sms_numbers.iter().all(|to| sent_and_reported(Channel::Sms, to))
            && expected.rcs_numbers.iter().all(|(to, falls_back)| {
                if *falls_back {
                    sent_and_reported(Channel::Sms, to) && self.fallbacks.get(to).is_some_and(|f| !f.is_empty())
                } else {
                    sent_and_reported(Channel::Rcs, to)
                }
            })
    }
}

async fn run_cell(point: Point, fault: Fault) {
    let fault = match fault {
        Fault::Stall(_) => Fault::Stall(stall(point)),
        other => other,
    };
    let mut fleet = ProcessFleet::new(ProcessFleetOptions {
        name: "matrix",
        providers_toml: providers().replace("id = \"crash-rcs\"", "id = \"crash-rcs\"\ncapability_check = true"),
        provider_ids: PROVIDER_IDS.to_vec(),
        extra_toml: String::new(),
        behaviour: behaviour(),
    })
    .await;
    let spec = failpoints(point, fault);
    for role in [Role::Ingest, Role::Worker(0), Role::Dispatcher] {
        let faulted = targets(point).contains(&role).then_some(spec.as_str());
        fleet.spawn(role, faulted).await;
    }
    let mut requests: Vec<_> = (0..SMS).map(sms_request).collect();
    requests.extend((0..RCS).map(rcs_request));
    publish_all(&fleet, &requests).await;

    let expected = Expected::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    let mut restarted = Vec::new();
    while tokio::time::Instant::now() < deadline && !Seen::of(&fleet).done(&expected) {
        restarted.extend(fleet.restart_dead().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A process that died after the work was done is restarted too: what it left unacked
    // comes back now, and late repeats (a redelivered job, a report posted again) show.
    restarted.extend(fleet.restart_dead().await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = Seen::of(&fleet);
    let stats = fleet.mock.stats();
    let sms_sends = sms_sends_by_number(&fleet);
    let report = format!(
        "cell {point} × {fault:?} ({spec}); restarted {restarted:?}; provider sends {}, duplicates {}",
        stats.accepted, stats.duplicate_message_ids
    );
    eprintln!("{report}");

    assert!(seen.done(&expected), "{report}: not every message ended in time: {seen:?}");
    let fired = targets(point).iter().any(|role| fleet.log(*role).contains(&format!("failpoint {point}: ")));
    assert!(fired, "{report}: the failpoint never fired");
    if matches!(fault, Fault::Abort) {
        assert!(!restarted.is_empty(), "{report}: aborted, but no process died");
    }
    for (key, outcomes) in &seen.terminal {
        assert_eq!(outcomes.len(), 1, "{report}: {key:?} ended more than once: {outcomes:?}");
    }
    for (key, ids) in &seen.report_ids {
        assert_eq!(ids.len(), 1, "{report}: the report {key:?} became events with different ids: {ids:?}");
    }
    for (to, fired) in &seen.fallbacks {
        assert_eq!(fired.len(), 1, "{report}: fallback of {to} fired as {fired:?}");
        assert_eq!(expected.rcs_numbers.get(to), Some(&true), "{report}: {to} fell back but should not have");
    }
    let allowed = allowed_duplicates(point, fault);
    assert!(
        stats.duplicate_message_ids <= allowed,
        "{report}: {} messages reached the provider twice (allowed {allowed})",
        stats.duplicate_message_ids
    );
    for (to, falls_back) in &expected.rcs_numbers {
        let sms = sms_sends.get(to).copied().unwrap_or(0);
        // A fallback SMS is a job like any other: only a worker dying with it in flight
        // could send it twice.
        let ok = if *falls_back { sms == 1 || (allowed > 0 && sms == 2) } else { sms == 0 };
        assert!(ok, "{report}: RCS to {to} (falls back: {falls_back}) got {sms} SMS");
    }
    fleet.stop().await;
}

/// SMS requests the mock answered 2xx, by destination number (the fallback SMS of an RCS
/// message goes to the same number; the test's plain SMS numbers are of another range).
fn sms_sends_by_number(fleet: &ProcessFleet) -> HashMap<String, u64> {
    let mut sends = HashMap::new();
    for event in fleet.events.events() {
        // Each SMS fallback's first `accepted` names its SMS message id; count the
        // provider's answers for that id.
        if event.kind == EventKind::Accepted
            && event.channel == Channel::Sms
            && let (Some(to), Some(sms_id)) = (event.to.clone(), event.details.get("fallback_message_id"))
        {
            sends.entry(to).or_insert_with(|| sms_id.clone());
        }
    }
    let received = fleet.mock.received();
    sends
        .into_iter()
        .map(|(to, sms_id)| {
            let count =
                received.iter().filter(|r| (200..300).contains(&r.status) && r.message_ids.contains(&sms_id)).count()
                    as u64;
            (to, count)
        })
        .collect()
}

macro_rules! cells {
    ($($name:ident: $point:expr, $fault:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            run_cell($point, $fault).await;
        }
    )*};
}

const STALL: Fault = Fault::Stall(Duration::ZERO);

cells! {
    dispatcher_jobs_confirmed_abort: Point::DispatcherJobsConfirmed, Fault::Abort;
    dispatcher_jobs_confirmed_error: Point::DispatcherJobsConfirmed, Fault::Error;
    dispatcher_jobs_confirmed_stall: Point::DispatcherJobsConfirmed, STALL;
    dispatcher_before_ack_abort: Point::DispatcherBeforeAck, Fault::Abort;
    dispatcher_before_ack_error: Point::DispatcherBeforeAck, Fault::Error;
    dispatcher_before_ack_stall: Point::DispatcherBeforeAck, STALL;
    worker_provider_answered_abort: Point::WorkerProviderAnswered, Fault::Abort;
    worker_provider_answered_error: Point::WorkerProviderAnswered, Fault::Error;
    worker_provider_answered_stall: Point::WorkerProviderAnswered, STALL;
    worker_sent_recorded_abort: Point::WorkerSentRecorded, Fault::Abort;
    worker_sent_recorded_error: Point::WorkerSentRecorded, Fault::Error;
    worker_sent_recorded_stall: Point::WorkerSentRecorded, STALL;
    worker_consequences_confirmed_abort: Point::WorkerConsequencesConfirmed, Fault::Abort;
    worker_consequences_confirmed_error: Point::WorkerConsequencesConfirmed, Fault::Error;
    worker_consequences_confirmed_stall: Point::WorkerConsequencesConfirmed, STALL;
    worker_before_ack_abort: Point::WorkerBeforeAck, Fault::Abort;
    worker_before_ack_error: Point::WorkerBeforeAck, Fault::Error;
    worker_before_ack_stall: Point::WorkerBeforeAck, STALL;
    fallback_taken_abort: Point::FallbackTaken, Fault::Abort;
    fallback_taken_error: Point::FallbackTaken, Fault::Error;
    fallback_taken_stall: Point::FallbackTaken, STALL;
    fallback_published_abort: Point::FallbackPublished, Fault::Abort;
    fallback_published_error: Point::FallbackPublished, Fault::Error;
    fallback_published_stall: Point::FallbackPublished, STALL;
    fallback_marked_abort: Point::FallbackMarked, Fault::Abort;
    fallback_marked_error: Point::FallbackMarked, Fault::Error;
    fallback_marked_stall: Point::FallbackMarked, STALL;
    ingest_parsed_abort: Point::IngestParsed, Fault::Abort;
    ingest_parsed_error: Point::IngestParsed, Fault::Error;
    ingest_parsed_stall: Point::IngestParsed, STALL;
    ingest_confirmed_abort: Point::IngestConfirmed, Fault::Abort;
    ingest_confirmed_error: Point::IngestConfirmed, Fault::Error;
    ingest_confirmed_stall: Point::IngestConfirmed, STALL;
    ingest_before_response_abort: Point::IngestBeforeResponse, Fault::Abort;
    ingest_before_response_error: Point::IngestBeforeResponse, Fault::Error;
    ingest_before_response_stall: Point::IngestBeforeResponse, STALL;
}

/// Every failpoint has its three cells above.
#[test]
fn the_matrix_covers_every_failpoint() {
    let source = include_str!("matrix.rs");
    for point in Point::ALL {
        for fault in ["Fault::Abort", "Fault::Error", "STALL"] {
            let variant = format!("{point:?}");
            let cell = format!("Point::{variant}, {fault};");
            assert!(source.contains(&cell), "no cell for {point} × {fault}");
        }
    }
}

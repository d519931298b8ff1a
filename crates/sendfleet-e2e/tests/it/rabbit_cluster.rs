//! The fleet on `scripts/cluster.sh`'s three-node RabbitMQ cluster (quorum queues, three
//! replicas, `broker.url` listing the three nodes): 20,000 jobs through the dispatcher
//! and two workers to the mock while (1) the node leading the jobs queue is killed with
//! `kill -9`, (2) the three nodes are restarted one at a time. Every job reaches the
//! provider, each ends with one terminal outcome (repeats share their `event_id`),
//! duplicates at the provider stay within the documented window (the jobs the workers
//! held), and sending resumes within 10 s. Counted from the mock's own arrival times.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use sendfleet_protocol::{EventKind, SendRequest};
use sendfleet_test_support::{Fleet, FleetOptions, sms_to_many};

use crate::local_cluster::LocalCluster;

const JOBS: usize = 20_000;
const WORKERS: usize = 2;
const CONCURRENCY: usize = 100;

fn options(name: &'static str, cap: usize) -> FleetOptions {
    let keys = format!(
        "sender_ids = [\"ACMEIN\"]\nrate_per_second = {cap}\nburst = {}\nconcurrency = {CONCURRENCY}",
        cap / 100
    );
    FleetOptions { cluster: LocalCluster::amqp_urls(), ..FleetOptions::sms_load(name, &keys, WORKERS) }
}

fn request(batch: usize) -> SendRequest {
    sms_to_many("rc", batch * 1_000..(batch + 1) * 1_000)
}

/// A send's terminal outcome (a job ends with exactly one of these).
fn is_outcome(kind: EventKind) -> bool {
    matches!(kind, EventKind::Accepted | EventKind::Failed | EventKind::FallbackTriggered)
}

/// The message ids that have a terminal outcome so far.
fn ended(fleet: &Fleet) -> HashSet<String> {
    fleet.events.events().into_iter().filter(|e| is_outcome(e.kind)).filter_map(|e| e.message_id).collect()
}

/// What the provider and the events say about a run.
struct Outcome {
    /// Provider requests beyond one per job.
    duplicates: usize,
    /// The longest time without a request at the provider after `since_us`, µs.
    longest_pause_us: i64,
    /// Terminal events seen more than once (redelivered; same `event_id`).
    repeated_events: usize,
}

/// Publishes the jobs, waits until `from_accepted` reached the provider, calls
/// `disturb` (on a blocking thread, while the jobs go on), then waits for every job's
/// terminal outcome and checks the invariants.
async fn run_through(
    cluster: &Arc<LocalCluster>,
    fleet: &Fleet,
    from_accepted: u64,
    disturb: impl FnOnce(&LocalCluster) + Send + 'static,
) -> Outcome {
    for batch in 0..JOBS / 1_000 {
        fleet.publish_request(&request(batch)).await;
    }
    assert!(fleet.mock.wait_for_accepted(from_accepted, Duration::from_secs(60)).await >= from_accepted);
    let since_us = sendfleet_protocol::now_ms() * 1_000;
    let started = Instant::now();
    let on = cluster.clone();
    let disturbance = tokio::task::spawn_blocking(move || disturb(&on));

    let done = sendfleet_test_support::wait_until(Duration::from_secs(180), || ended(fleet).len() >= JOBS).await;
    disturbance.await.expect("the disturbance ran");
    if !done {
        let at_provider: HashSet<String> = fleet.mock.received().into_iter().flat_map(|r| r.message_ids).collect();
        let ended = ended(fleet);
        let mut kinds: HashMap<String, usize> = HashMap::new();
        for event in fleet.events.events() {
            *kinds.entry(format!("{:?}", event.kind)).or_default() += 1;
        }
        let topology = fleet.ns.topology();
        let events_waiting = fleet.ns.queue_depth(&topology.events_queue()).await;
        let jobs_waiting = fleet.ns.queue_depth(&topology.jobs_queue("ib-sms")).await;
        println!("the broker's view:\n{}", cluster.run(&["queues"]));
        panic!(
            "not every job ended within 180 s of the disturbance: {} at the provider, {} ended, events {kinds:?}, \
             {events_waiting} events and {jobs_waiting} jobs waiting in their queues",
            at_provider.len(),
            ended.len()
        );
    }
    println!("all {JOBS} jobs ended {:.1} s after the disturbance began", started.elapsed().as_secs_f64());

    // One terminal outcome per job: repeats carry the same event id, and no job both
    // failed and was accepted.
    let mut outcomes: HashMap<String, HashSet<(String, EventKind)>> = HashMap::new();
    let mut terminal_events = 0;
    for event in fleet.events.events() {
        if is_outcome(event.kind) {
            terminal_events += 1;
            let id = event.message_id.clone().expect("an outcome names its message");
            outcomes.entry(id).or_default().insert((event.event_id.clone(), event.kind));
        }
    }
    assert_eq!(outcomes.len(), JOBS, "every job has an outcome");
    for (id, seen) in &outcomes {
        assert_eq!(seen.len(), 1, "{id} ended more than one way: {seen:?}");
        assert!(seen.iter().all(|(_, kind)| *kind == EventKind::Accepted), "{id}: {seen:?}");
    }

    let received = fleet.mock.received();
    let mut ids: Vec<&str> = received.iter().flat_map(|r| r.message_ids.iter().map(String::as_str)).collect();
    let sent = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), JOBS, "every job reached the provider");
    let mut after: Vec<i64> = received.iter().map(|r| r.at_us).filter(|&t| t >= since_us).collect();
    after.sort_unstable();
    let first = after.first().copied().unwrap_or(since_us);
    let longest_pause_us =
        std::iter::once(first - since_us).chain(after.windows(2).map(|w| w[1] - w[0])).max().unwrap_or(0);
    Outcome { duplicates: sent - JOBS, longest_pause_us, repeated_events: terminal_events - JOBS }
}

/// The documented bound on provider duplicates: the jobs the workers held (their
/// prefetch, `jobs_per_worker` = 2 × concurrency, for each worker).
const DUPLICATE_BOUND: usize = WORKERS * 2 * CONCURRENCY;

fn check(what: &str, outcome: &Outcome) {
    println!(
        "{what}: longest pause at the provider {:.1} s, {} duplicate sends, {} terminal events redelivered",
        outcome.longest_pause_us as f64 / 1e6,
        outcome.duplicates,
        outcome.repeated_events
    );
    assert!(outcome.duplicates <= DUPLICATE_BOUND, "{} duplicates, above {DUPLICATE_BOUND}", outcome.duplicates);
    assert!(outcome.longest_pause_us < 10_000_000, "sending paused {:.1} s", outcome.longest_pause_us as f64 / 1e6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_node_leading_the_jobs_queue_loses_nothing() {
    let cluster = Arc::new(LocalCluster::start());
    let fleet = Fleet::start(options("rabbit-kill", 2_000)).await;
    let jobs_queue = fleet.ns.topology().jobs_queue("ib-sms");
    let leader = cluster.leader(&jobs_queue);
    let outcome = run_through(&cluster, &fleet, 5_000, move |cluster| {
        let said = cluster.run(&["kill-rabbit", &leader.to_string()]);
        assert!(said.contains("killed"), "{said}");
    })
    .await;
    check(&format!("kill -9 of node {leader}, leading {jobs_queue}"), &outcome);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_the_three_nodes_loses_nothing() {
    let cluster = Arc::new(LocalCluster::start());
    let fleet = Fleet::start(options("rabbit-rolling", 500)).await;
    let outcome = run_through(&cluster, &fleet, 1_000, |cluster| {
        for node in ["1", "2", "3"] {
            let started = Instant::now();
            cluster.run(&["stop-rabbit", node]);
            cluster.run(&["restart-rabbit", node]);
            println!("node {node} restarted in {:.1} s", started.elapsed().as_secs_f64());
        }
    })
    .await;
    check("rolling restart", &outcome);
    fleet.stop().await;
}

//! The named scenarios and how one run of a scenario goes.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use sendfleet_protocol::Priority;

use crate::{
    callbacks::CallbackLoad,
    fleet::{FleetSpec, PROVIDERS, ProcessFleet},
    measure::{self, ProcSample},
    procs::{self, API_KEY, Proc},
    traffic,
};

/// Which worker binary runs the jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerKind {
    /// `sender-worker`, every feature on.
    Sendfleet,
    /// `bare-worker`, the baseline loop.
    Bare,
}

/// How jobs arrive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Load {
    /// `jobs` published before the workers start (throughput: the backlog never runs dry).
    Backlog {
        /// Jobs.
        jobs: usize,
    },
    /// Published at `per_second` for `seconds` while the workers run (latency).
    Open {
        /// Rate.
        per_second: u32,
        /// Duration.
        seconds: u64,
    },
    /// `bulk` jobs of the bulk lane published before the workers start, then `high` jobs
    /// of the high lane at `high_at_seconds` (latency is the high jobs').
    Lanes {
        /// Bulk jobs in the backlog.
        bulk: usize,
        /// High jobs published at once.
        high: usize,
        /// When, seconds after the workers start.
        high_at_seconds: u64,
    },
    /// No jobs: delivery reports posted at callback-ingest (`jobs` in the report are
    /// reports, latency is per POST).
    Callbacks(CallbackLoad),
}

/// A change to the fleet during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Change {
    /// Start one more worker.
    Join,
    /// SIGTERM the worker with this index.
    Stop(usize),
    /// SIGKILL the worker with this index (a crash: its permits come back after their lease).
    Kill(usize),
}

/// One named scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// Name on the command line and in the report.
    pub name: &'static str,
    /// What it shows.
    pub description: &'static str,
    /// Fleet-wide cap (None: the rate limiter is off).
    pub cap: Option<u32>,
    /// Burst above the cap.
    pub burst: u32,
    /// Mock latency, ms (minimum).
    pub latency_ms: u64,
    /// Extra random latency, ms.
    pub jitter_ms: u64,
    /// Workers at start.
    pub workers: usize,
    /// The provider's concurrency (requests in flight across the fleet).
    pub concurrency: u32,
    /// Which worker.
    pub kind: WorkerKind,
    /// How jobs arrive.
    pub load: Load,
    /// Stop after this long even with jobs left (capped scenarios measure windows).
    pub max_seconds: u64,
    /// Fleet changes, at seconds after the workers start.
    pub changes: &'static [(u64, Change)],
    /// The message status store on (`status.enabled`); the `-status-off` scenarios
    /// turn it off to measure its cost in the same rounds.
    pub status_store: bool,
    /// Measure the most requests in flight at the provider (from the mock's arrival and
    /// answer times).
    pub in_flight: bool,
    /// The provider's `request_timeout_ms` (a crashed worker's concurrency permits come
    /// back this plus 1.5 s after its last sync).
    pub request_timeout_ms: u64,
}

/// The default scenarios, in the order they run.
pub fn defaults() -> Vec<Scenario> {
    let mut all = base();
    // The status store's cost: the same scenarios with it off, run in the same rounds.
    for (name, description) in [
        ("capped-status-off", "capped, with the message status store off (status.enabled = false)"),
        ("uncapped-status-off", "uncapped, with the message status store off (status.enabled = false)"),
    ] {
        let base = name.trim_end_matches("-status-off");
        if let Some(on) = all.iter().find(|s| s.name == base) {
            all.push(Scenario { name, description, status_store: false, ..on.clone() });
        }
    }
    all
}

fn base() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "capped",
            description: "cap 4,600/s, provider latency 50 ms, 1 worker",
            cap: Some(4_600),
            burst: 46,
            latency_ms: 50,
            jitter_ms: 0,
            workers: 1,
            concurrency: 512,
            kind: WorkerKind::Sendfleet,
            load: Load::Backlog { jobs: 70_000 },
            max_seconds: 14,
            changes: &[],
            status_store: true,
            in_flight: false,
            request_timeout_ms: 2_000,
        },
        Scenario {
            name: "capped-fleet",
            description: "the same cap shared by 3 workers, concurrency 768 for the fleet; a 4th joins at 5 s, worker 0 leaves at 10 s",
            cap: Some(4_600),
            burst: 46,
            latency_ms: 50,
            jitter_ms: 0,
            workers: 3,
            concurrency: 768,
            kind: WorkerKind::Sendfleet,
            load: Load::Backlog { jobs: 80_000 },
            max_seconds: 15,
            changes: &[(5, Change::Join), (10, Change::Stop(0))],
            status_store: true,
            in_flight: false,
            request_timeout_ms: 2_000,
        },
        fleet_concurrency(
            "fleet-concurrency",
            "concurrency 100 for the whole fleet, provider latency 200 ms, 3 workers; a 4th joins at 4 s, worker 0 is killed (SIGKILL) at 8 s",
            8_000,
            30,
        ),
        fleet_concurrency(
            "fleet-concurrency-long",
            "fleet-concurrency with 20,000 jobs (about 40 s): the same join at 4 s and kill at 8 s, weighed against a longer run",
            20_000,
            60,
        ),
        Scenario {
            name: "priority-lanes",
            description: "200,000 bulk jobs queued, cap 4,600/s, provider latency 20 ms, 2 workers; 100 high jobs published at 10 s",
            cap: Some(4_600),
            burst: 46,
            latency_ms: 20,
            jitter_ms: 0,
            workers: 2,
            concurrency: 512,
            kind: WorkerKind::Sendfleet,
            load: Load::Lanes { bulk: 200_000, high: 100, high_at_seconds: 10 },
            max_seconds: 25,
            changes: &[],
            status_store: true,
            in_flight: false,
            request_timeout_ms: 2_000,
        },
        Scenario {
            name: "uncapped",
            description: "provider latency 0, rate limiter off, 1 worker, as fast as possible",
            cap: None,
            burst: 1,
            latency_ms: 0,
            jitter_ms: 0,
            workers: 1,
            concurrency: 512,
            kind: WorkerKind::Sendfleet,
            load: Load::Backlog { jobs: 40_000 },
            max_seconds: 60,
            changes: &[],
            status_store: true,
            in_flight: false,
            request_timeout_ms: 2_000,
        },
        Scenario {
            name: "bare",
            description: "baseline: consume → POST → publish-confirmed → ack, no features, latency 0",
            cap: None,
            burst: 1,
            latency_ms: 0,
            jitter_ms: 0,
            workers: 1,
            concurrency: 512,
            kind: WorkerKind::Bare,
            load: Load::Backlog { jobs: 40_000 },
            max_seconds: 60,
            changes: &[],
            status_store: true,
            in_flight: false,
            request_timeout_ms: 2_000,
        },
        Scenario {
            name: "slow-provider",
            description: "provider latency 200–800 ms, open load 1,500/s for 10 s, cap 4,600/s",
            cap: Some(4_600),
            burst: 46,
            latency_ms: 200,
            jitter_ms: 600,
            workers: 1,
            concurrency: 2_000,
            kind: WorkerKind::Sendfleet,
            load: Load::Open { per_second: 1_500, seconds: 10 },
            max_seconds: 20,
            changes: &[],
            status_store: true,
            in_flight: false,
            request_timeout_ms: 2_000,
        },
        callbacks(
            "callback-ingest",
            "delivery reports offered at 10,000/s (10 per POST) to callback-ingest for 10 s, confirms on",
            CallbackLoad { reports: 100_000, connections: 64, batch: 10, per_second: Some(10_000) },
            12,
        ),
        callbacks(
            "callback-ingest-max",
            "delivery reports (10 per POST) over 32 connections posting back to back: the ingest's peak",
            CallbackLoad { reports: 300_000, connections: 32, batch: 10, per_second: None },
            10,
        ),
    ]
}

/// Concurrency 100 for the fleet against a 200 ms provider, 3 workers, a 4th joining at
/// 4 s and worker 0 killed at 8 s, over a backlog of `jobs`.
fn fleet_concurrency(name: &'static str, description: &'static str, jobs: usize, max_seconds: u64) -> Scenario {
    Scenario {
        name,
        description,
        cap: Some(4_600),
        burst: 46,
        latency_ms: 200,
        jitter_ms: 0,
        workers: 3,
        concurrency: 100,
        kind: WorkerKind::Sendfleet,
        load: Load::Backlog { jobs },
        max_seconds,
        changes: &[(4, Change::Join), (8, Change::Kill(0))],
        status_store: true,
        in_flight: true,
        request_timeout_ms: 2_000,
    }
}

/// A callback-ingest scenario: no workers, no provider, only reports posted.
fn callbacks(name: &'static str, description: &'static str, load: CallbackLoad, max_seconds: u64) -> Scenario {
    Scenario {
        name,
        description,
        cap: None,
        burst: 1,
        latency_ms: 0,
        jitter_ms: 0,
        workers: 0,
        concurrency: 0,
        kind: WorkerKind::Sendfleet,
        load: Load::Callbacks(load),
        max_seconds,
        changes: &[],
        status_store: true,
        in_flight: false,
        request_timeout_ms: 2_000,
    }
}

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Scenario name.
    pub scenario: String,
    /// Jobs the provider accepted.
    pub jobs: u64,
    /// Jobs per second, first to last provider arrival.
    pub jobs_per_second: f64,
    /// Mean provider-side rate over the steady part (2 s after the first arrival to
    /// 1 s before the last).
    pub steady_rate: f64,
    /// Most provider arrivals in any 1-second window.
    pub max_window: usize,
    /// Provider arrivals per 100 ms bucket, from the first arrival.
    pub rate_series: Vec<u32>,
    /// Publish → provider arrival, ms (open-load scenarios only).
    pub latency_p50_ms: Option<f64>,
    /// Publish → provider arrival p99, ms.
    pub latency_p99_ms: Option<f64>,
    /// Worker CPU seconds per 1,000 jobs (all workers together).
    pub cpu_seconds_per_1000: f64,
    /// Largest peak RSS of any worker, MiB.
    pub peak_rss_mib: f64,
    /// Duplicate message ids seen by the provider.
    pub duplicates: u64,
    /// Worker exit codes (SIGTERM must give 0).
    pub exit_codes: Vec<Option<i32>>,
    /// The most requests in flight at the provider at once (scenarios that measure it).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
}

/// Runs one scenario once.
pub async fn run_once(
    scenario: &Scenario,
    amqp_url: &str,
    redis_url: &str,
    run_dir: &std::path::Path,
) -> anyhow::Result<RunResult> {
    if let Load::Callbacks(load) = scenario.load {
        return crate::callbacks::run_once(scenario, load, amqp_url, redis_url, run_dir).await;
    }
    let prefix = format!("sendfleet-bench-{}-{}", scenario.name, &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let spec = FleetSpec {
        amqp_url: amqp_url.to_owned(),
        redis_url: redis_url.to_owned(),
        prefix: prefix.clone(),
        mock_latency_ms: scenario.latency_ms,
        mock_jitter_ms: scenario.jitter_ms,
        delivery_reports: false,
        front: false,
        rate_limiter: if scenario.cap.is_some() { "fleet" } else { "off" },
        rate_per_second: scenario.cap.unwrap_or(4_600),
        burst: Some(scenario.burst),
        concurrency: scenario.concurrency,
        request_timeout_ms: scenario.request_timeout_ms,
        workers: 0,
        status_store: scenario.status_store,
        run_dir: run_dir.join(&prefix),
        failover: Default::default(),
    };
    let mut fleet = ProcessFleet::start(spec).await?;
    traffic::declare(amqp_url, &prefix).await?;
    let provider = PROVIDERS[0];
    match scenario.load {
        Load::Backlog { jobs } => traffic::preload_jobs(amqp_url, &prefix, provider, jobs, Priority::Normal)
            .await
            .context("preloading jobs")?,
        Load::Lanes { bulk, .. } => {
            traffic::preload_jobs(amqp_url, &prefix, provider, bulk, Priority::Bulk).await.context("preloading jobs")?
        }
        Load::Open { .. } | Load::Callbacks(_) => {}
    }
    let client = reqwest::Client::new();
    client.post(format!("{}/mock/reset", fleet.mock_url())).send().await?;

    let mut bare: Vec<Proc> = Vec::new();
    let started = Instant::now();
    for _ in 0..scenario.workers {
        start_worker(scenario, &mut fleet, &mut bare, amqp_url, &prefix).await?;
    }
    let open_load = match scenario.load {
        Load::Open { per_second, seconds } => {
            let (url, prefix) = (amqp_url.to_owned(), prefix.clone());
            Some(tokio::spawn(async move { traffic::paced_jobs(&url, &prefix, provider, per_second, seconds).await }))
        }
        Load::Backlog { .. } | Load::Lanes { .. } | Load::Callbacks(_) => None,
    };
    let mut high_load = None;
    let target = match scenario.load {
        Load::Backlog { jobs } => jobs as u64,
        Load::Lanes { bulk, high, .. } => (bulk + high) as u64,
        Load::Open { per_second, seconds } => u64::from(per_second) * seconds,
        Load::Callbacks(load) => load.reports,
    };

    let mut samples: Vec<ProcSample> = Vec::new();
    let mut changes = scenario.changes.iter().peekable();
    let deadline = started + Duration::from_secs(scenario.max_seconds);
    loop {
        let elapsed = started.elapsed().as_secs();
        if let Load::Lanes { high, high_at_seconds, .. } = scenario.load
            && high_load.is_none()
            && elapsed >= high_at_seconds
        {
            let (url, prefix) = (amqp_url.to_owned(), prefix.clone());
            high_load = Some(tokio::spawn(async move {
                traffic::preload_jobs(&url, &prefix, provider, high, Priority::High).await
            }));
        }
        while let Some((at, change)) = changes.peek() {
            if *at > elapsed {
                break;
            }
            match change {
                Change::Join => start_worker(scenario, &mut fleet, &mut bare, amqp_url, &prefix).await?,
                Change::Stop(index) => {
                    if let Some(Some(worker)) = fleet.workers.get(*index) {
                        samples.extend(measure::sample(worker));
                    }
                    fleet.stop_worker(*index).await;
                }
                Change::Kill(index) => {
                    if let Some(Some(worker)) = fleet.workers.get(*index) {
                        samples.extend(measure::sample(worker));
                    }
                    fleet.kill_worker(*index).await;
                }
            }
            changes.next();
        }
        let accepted = traffic::mock_accepted(&client, &fleet.mock_url()).await.unwrap_or(0);
        if accepted >= target || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for worker in fleet.live_workers() {
        samples.extend(measure::sample(worker));
    }
    for worker in &bare {
        samples.extend(measure::sample(worker));
    }
    if let Some(load) = open_load {
        load.abort();
    }
    let stats: sendfleet_mock_provider::Stats =
        client.get(format!("{}/mock/stats", fleet.mock_url())).send().await?.json().await?;
    if let Some(load) = high_load {
        load.await?.context("publishing the high jobs")?;
    }
    let open = matches!(scenario.load, Load::Open { .. });
    let lanes = matches!(scenario.load, Load::Lanes { .. });
    let received: Vec<sendfleet_mock_provider::Received> = if open || lanes || scenario.in_flight {
        client.get(format!("{}/mock/received", fleet.mock_url())).send().await?.json().await?
    } else {
        Vec::new()
    };
    let latencies = if lanes {
        // The high jobs' publish → provider arrival, behind the bulk backlog.
        let high: Vec<_> =
            received.iter().filter(|r| r.message_ids.iter().any(|id| id.starts_with("high-"))).cloned().collect();
        Some(measure::latencies_ms(&high))
    } else {
        open.then(|| measure::latencies_ms(&received))
    };
    let max_in_flight = scenario.in_flight.then(|| sendfleet_mock_provider::max_in_flight(&received));
    let mut exit_codes = Vec::new();
    for mut worker in bare {
        exit_codes.push(worker.terminate(Duration::from_secs(30)).await);
    }
    for (name, code) in fleet.stop().await {
        if name.starts_with("sender-worker") {
            exit_codes.push(code);
        }
    }
    procs::delete_prefix(amqp_url, &prefix, &PROVIDERS.map(str::to_owned)).await;
    let mut result = measure::summarise(scenario, &stats, latencies, &samples, exit_codes);
    result.max_in_flight = max_in_flight;
    Ok(result)
}

async fn start_worker(
    scenario: &Scenario,
    fleet: &mut ProcessFleet,
    bare: &mut Vec<Proc>,
    amqp_url: &str,
    prefix: &str,
) -> anyhow::Result<()> {
    match scenario.kind {
        WorkerKind::Sendfleet => {
            fleet.add_worker().await?;
        }
        WorkerKind::Bare => {
            let topology = sendfleet_broker::Topology::new(&sendfleet_config::BrokerConfig {
                prefix: prefix.to_owned(),
                queue_type: procs::queue_type(),
                ..Default::default()
            });
            let args = [
                "--amqp-url".to_owned(),
                amqp_url.to_owned(),
                "--queue".to_owned(),
                topology.jobs_queue(PROVIDERS[0]),
                "--events-exchange".to_owned(),
                topology.events_exchange(),
                "--base-url".to_owned(),
                fleet.mock_url(),
                "--api-key".to_owned(),
                API_KEY.to_owned(),
                "--prefetch".to_owned(),
                (scenario.concurrency * 2).to_string(),
                "--callback-base-url".to_owned(),
                fleet.ingest_url(),
            ];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let bin = procs::bin_dir()?.join("bare-worker");
            let name = format!("bare-worker-{}", bare.len());
            bare.push(Proc::spawn(&bin, &name, &args, &[], &fleet.spec.run_dir, 0)?);
        }
    }
    Ok(())
}

//! The fleet as separate processes: mock provider, dispatcher, callback-ingest and N
//! sender-workers, all on one broker prefix.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;

use crate::procs::{API_KEY, CALLBACK_TOKEN, Proc, bin_dir, free_port};

/// What to start.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Broker URL.
    pub amqp_url: String,
    /// Redis URL.
    pub redis_url: String,
    /// Prefix of every queue and exchange.
    pub prefix: String,
    /// Mock latency, ms.
    pub mock_latency_ms: u64,
    /// Extra random mock latency, ms.
    pub mock_jitter_ms: u64,
    /// Whether the mock posts delivery reports.
    pub delivery_reports: bool,
    /// Start the dispatcher and callback-ingest (the demo); the bench feeds the job
    /// queues directly and runs only workers.
    pub front: bool,
    /// `fleet`, `local` or `off`.
    pub rate_limiter: &'static str,
    /// Fleet-wide rate cap of each provider.
    pub rate_per_second: u32,
    /// Token-bucket burst.
    pub burst: Option<u32>,
    /// Concurrency per worker.
    pub concurrency: u32,
    /// The providers' `request_timeout_ms`.
    pub request_timeout_ms: u64,
    /// Workers at start.
    pub workers: usize,
    /// `status.enabled`: the message status store (on in production).
    pub status_store: bool,
    /// Where logs and the config go.
    pub run_dir: PathBuf,
    /// What the Redis-failover run sets; the default suits every other run.
    pub failover: FailoverSetup,
}

/// The settings only the Redis-failover run changes. Default: one Redis, reports for
/// every provider, no capability check, every number RCS capable.
#[derive(Debug, Clone, Default)]
pub struct FailoverSetup {
    /// Redis Sentinels (`redis.sentinels`, master name `sendfleet`); empty: `redis_url`
    /// is the one Redis.
    pub redis_sentinels: Vec<String>,
    /// SMS requests name no report URL (the RCS ones always do).
    pub sms_without_reports: bool,
    /// `capability_check` of the RCS provider.
    pub rcs_capability_check: bool,
    /// Share of numbers the mock calls not RCS capable (`--not-rcs-capable-ratio`).
    pub not_rcs_capable_ratio: f64,
}

/// Ids of the providers every fleet has.
pub const PROVIDERS: [&str; 2] = ["demo-sms", "demo-rcs"];

/// A running fleet.
pub struct ProcessFleet {
    /// The mock provider.
    pub mock: Proc,
    /// The dispatcher, when `front`.
    pub dispatcher: Option<Proc>,
    /// callback-ingest, when `front`.
    pub ingest: Option<Proc>,
    /// Workers; `None` once stopped.
    pub workers: Vec<Option<Proc>>,
    /// The spec.
    pub spec: FleetSpec,
    config_path: PathBuf,
    bin: PathBuf,
    ingest_port: u16,
}

impl ProcessFleet {
    /// Writes the config, starts every process and waits until each is healthy.
    pub async fn start(spec: FleetSpec) -> anyhow::Result<ProcessFleet> {
        let bin = bin_dir()?;
        std::fs::create_dir_all(&spec.run_dir)?;
        let (mock_port, dispatcher_port, ingest_port) = (free_port()?, free_port()?, free_port()?);
        let config = config_toml(&spec, mock_port, dispatcher_port, ingest_port);
        let config_path = spec.run_dir.join("sendfleet.toml");
        std::fs::write(&config_path, config)?;

        let mut mock_args: Vec<String> = [
            "--listen",
            &format!("127.0.0.1:{mock_port}"),
            "--api-keys",
            API_KEY,
            "--latency-ms",
            &spec.mock_latency_ms.to_string(),
            "--latency-jitter-ms",
            &spec.mock_jitter_ms.to_string(),
            "--no-record-bodies",
        ]
        .map(str::to_owned)
        .to_vec();
        if !spec.delivery_reports {
            mock_args.push("--no-delivery-reports".into());
        }
        if spec.failover.not_rcs_capable_ratio > 0.0 {
            mock_args.extend(["--not-rcs-capable-ratio".into(), spec.failover.not_rcs_capable_ratio.to_string()]);
        }
        let mock_args: Vec<&str> = mock_args.iter().map(String::as_str).collect();
        let mut mock =
            Proc::spawn(&bin.join("mock-provider"), "mock-provider", &mock_args, &[], &spec.run_dir, mock_port)?;
        mock.wait_healthy(Duration::from_secs(20)).await?;

        let env = service_env(&config_path);
        let (mut dispatcher, mut ingest) = (None, None);
        if spec.front {
            let mut d = Proc::spawn(&bin.join("dispatcher"), "dispatcher", &[], &env, &spec.run_dir, dispatcher_port)?;
            let mut i =
                Proc::spawn(&bin.join("callback-ingest"), "callback-ingest", &[], &env, &spec.run_dir, ingest_port)?;
            d.wait_healthy(Duration::from_secs(30)).await?;
            i.wait_healthy(Duration::from_secs(30)).await?;
            (dispatcher, ingest) = (Some(d), Some(i));
        }
        let mut fleet = ProcessFleet {
            mock,
            dispatcher,
            ingest,
            workers: Vec::new(),
            spec: spec.clone(),
            config_path,
            bin,
            ingest_port,
        };
        for _ in 0..spec.workers {
            fleet.add_worker().await?;
        }
        Ok(fleet)
    }

    /// Starts one more worker; returns its index.
    pub async fn add_worker(&mut self) -> anyhow::Result<usize> {
        let index = self.workers.len();
        let port = free_port()?;
        let mut env = service_env(&self.config_path);
        env.push(("SENDFLEET_WORKER__LISTEN", format!("127.0.0.1:{port}")));
        let name = format!("sender-worker-{index}");
        let mut worker = Proc::spawn(&self.bin.join("sender-worker"), &name, &[], &env, &self.spec.run_dir, port)?;
        worker.wait_healthy(Duration::from_secs(30)).await.with_context(|| format!("starting {name}"))?;
        self.workers.push(Some(worker));
        Ok(index)
    }

    /// SIGTERM to worker `index`; returns its exit code.
    pub async fn stop_worker(&mut self, index: usize) -> Option<i32> {
        let mut worker = self.workers.get_mut(index)?.take()?;
        worker.terminate(Duration::from_secs(60)).await
    }

    /// Kills worker `index` with SIGKILL (a crash: nothing is drained or given back).
    pub async fn kill_worker(&mut self, index: usize) {
        if let Some(mut worker) = self.workers.get_mut(index).and_then(Option::take) {
            worker.kill().await;
        }
    }

    /// The live workers.
    pub fn live_workers(&self) -> impl Iterator<Item = &Proc> {
        self.workers.iter().flatten()
    }

    /// callback-ingest's public base URL (as written into the config).
    pub fn ingest_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ingest_port)
    }

    /// The mock's base URL.
    pub fn mock_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.mock.port)
    }

    /// SIGTERM to everything (workers first); returns (name, exit code) of each.
    pub async fn stop(mut self) -> Vec<(String, Option<i32>)> {
        let mut codes = Vec::new();
        for index in 0..self.workers.len() {
            if let Some(mut worker) = self.workers[index].take() {
                codes.push((worker.name.clone(), worker.terminate(Duration::from_secs(60)).await));
            }
        }
        for proc in [self.dispatcher.as_mut(), self.ingest.as_mut(), Some(&mut self.mock)].into_iter().flatten() {
            codes.push((proc.name.clone(), proc.terminate(Duration::from_secs(30)).await));
        }
        codes
    }
}

fn service_env(config_path: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("SENDFLEET_CONFIG", config_path.display().to_string()),
        ("BENCH_API_KEY", API_KEY.to_owned()),
        ("BENCH_CALLBACK_TOKEN", CALLBACK_TOKEN.to_owned()),
        ("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())),
    ]
}

fn config_toml(spec: &FleetSpec, mock_port: u16, dispatcher_port: u16, ingest_port: u16) -> String {
    let burst = spec.burst.map(|b| format!("burst = {b}\n")).unwrap_or_default();
    let provider = |id: &str, kind: &str, sender: &str, reports: bool, extra: &str| {
        let callback_token = if reports { "callback_token_env = \"BENCH_CALLBACK_TOKEN\"\n" } else { "" };
        format!(
            r#"
[[providers]]
id = "{id}"
kind = "{kind}"
base_url = "http://127.0.0.1:{mock_port}"
api_key_env = "BENCH_API_KEY"
sender_ids = ["{sender}"]
default_for_channel = true
rate_per_second = {rate}
{burst}concurrency = {concurrency}
request_timeout_ms = {request_timeout_ms}
{callback_token}{extra}"#,
            rate = spec.rate_per_second,
            concurrency = spec.concurrency,
            request_timeout_ms = spec.request_timeout_ms,
        )
    };
    format!(
        r#"# Written by sendfleet-bench for one run.
[broker]
url = "{amqp}"
prefix = "{prefix}"
queue_type = "{queue_type}"

# Unbounded, as traffic.rs declares it: the bench tallies every event.
[broker.events_queue]
max_length = 0
max_length_bytes = 0
message_ttl_seconds = 0

[redis]
url = "{redis}"
key_prefix = "{prefix}"
{sentinels}
[dispatcher]
listen = "127.0.0.1:{dispatcher_port}"

[worker]
rate_limiter = "{rate_limiter}"

[status]
enabled = {status_store}

[callback_ingest]
listen = "127.0.0.1:{ingest_port}"
public_base_url = "http://127.0.0.1:{ingest_port}"
{sms}{rcs}"#,
        amqp = spec.amqp_url,
        prefix = spec.prefix,
        redis = spec.redis_url,
        queue_type = crate::procs::queue_type_name(),
        rate_limiter = spec.rate_limiter,
        status_store = spec.status_store,
        sentinels = sentinels_toml(&spec.failover.redis_sentinels),
        sms = provider(PROVIDERS[0], "infobip_sms", "SENDFLEET", !spec.failover.sms_without_reports, ""),
        rcs = provider(
            PROVIDERS[1],
            "infobip_rcs",
            "SendfleetAgent",
            true,
            if spec.failover.rcs_capability_check { "capability_check = true\n" } else { "" }
        ),
    )
}

fn sentinels_toml(sentinels: &[String]) -> String {
    if sentinels.is_empty() {
        return String::new();
    }
    let list: Vec<String> = sentinels.iter().map(|url| format!("\"{url}\"")).collect();
    format!("sentinels = [{}]\nmaster_name = \"sendfleet\"\n", list.join(", "))
}

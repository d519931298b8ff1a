//! `sendfleet-bench redis-failover`: the release fleet at the full cap across a `kill -9`
//! of the Redis primary. The local Redis of `scripts/cluster.sh` (primary 6391, replica
//! 6392, three Sentinels) is started for the run and stopped after it. The SMS provider
//! is held at its cap by a backlog of SMS messages, while RCS messages with an SMS
//! fallback (the mock calls 30 % of their numbers not RCS capable) are published through
//! the run, so fallbacks fire across the failover. Once the provider has accepted
//! `--kill-after` messages, the Sentinels' primary is killed. The run passes when:
//!
//! - no 1-second window of SMS requests at the provider (the mock's own arrival times)
//!   holds more than the cap plus its burst;
//! - sending resumes: the longest silence at the SMS provider after the kill is under 10 s;
//! - nothing is lost: every SMS message and every fallback reached the provider, and
//!   every RCS message has an accepted event;
//! - no fallback fired twice: exactly the numbers that are not capable got one SMS each,
//!   and each has one `fallback_triggered` event id;
//! - every process exits 0 on SIGTERM.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use sendfleet_mock_provider::{Behaviour, Received};
use sendfleet_protocol::{Channel, Content, Recipient, SendRequest, SmsFallback, now_ms};

use crate::{
    fleet::{FailoverSetup, FleetSpec, PROVIDERS, ProcessFleet},
    procs, traffic,
};

/// `redis-failover` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct FailoverArgs {
    /// SMS messages, published before the run in requests of 1,000.
    #[arg(long, default_value_t = 100_000)]
    pub sms: usize,
    /// RCS messages with an SMS fallback, published through the run (125 every 0.5 s).
    #[arg(long, default_value_t = 3_000)]
    pub rcs: usize,
    /// The SMS provider's fleet-wide cap, requests per second.
    #[arg(long, default_value_t = 4_600)]
    pub cap: u32,
    /// Its burst.
    #[arg(long, default_value_t = 46)]
    pub burst: u32,
    /// Kill the Redis primary once the provider has accepted this many messages.
    #[arg(long, default_value_t = 15_000)]
    pub kill_after: u64,
    /// Sender-workers.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Give up waiting for the messages after this many seconds.
    #[arg(long, default_value_t = 240)]
    pub timeout_seconds: u64,
    /// State directory of the local Redis (scripts/cluster.sh's SENDFLEET_CLUSTER_DIR).
    #[arg(long, default_value = "/tmp/sendfleet-cluster-bench")]
    pub cluster_dir: PathBuf,
}

const SMS_PATH: &str = "/sms/3/messages";
const RCS_PATH: &str = "/rcs/2/messages";
const NOT_CAPABLE_RATIO: f64 = 0.3;
const RCS_PER_REQUEST: usize = 125;
/// The longest silence at the provider after the kill that still passes.
const RESUME_BOUND: Duration = Duration::from_secs(10);

/// The local Redis primary, replica and Sentinels; stopped (state deleted) when dropped.
struct LocalRedis {
    script: PathBuf,
    dir: PathBuf,
}

impl LocalRedis {
    fn start(dir: &Path) -> anyhow::Result<LocalRedis> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster.sh");
        if !script.exists() {
            bail!("{} not found: run the bench from a checkout of sendfleet", script.display());
        }
        let redis = LocalRedis { script, dir: dir.to_owned() };
        redis.run("start-redis")?;
        Ok(redis)
    }

    fn run(&self, command: &str) -> anyhow::Result<String> {
        let output = Command::new("bash")
            .arg(&self.script)
            .arg(command)
            .env("SENDFLEET_CLUSTER_DIR", &self.dir)
            .output()
            .with_context(|| format!("running {}", self.script.display()))?;
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        if !output.status.success() {
            bail!("cluster.sh {command} failed: {text}");
        }
        Ok(text)
    }

    fn sentinel_urls() -> Vec<String> {
        (26391..=26393).map(|port| format!("redis://127.0.0.1:{port}")).collect()
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        if let Err(error) = self.run("stop") {
            eprintln!("stopping the local Redis: {error:#}");
        }
    }
}

fn sms_request(batch: usize) -> SendRequest {
    let recipients = (batch * 1_000..(batch + 1) * 1_000)
        .map(|i| Recipient {
            to: format!("+4471{i:08}"),
            message_id: Some(format!("rf-{i:06}")),
            variables: Default::default(),
            metadata: Default::default(),
        })
        .collect();
    request(Channel::Sms, recipients, None)
}

fn rcs_number(i: usize) -> String {
    format!("+4475{i:08}")
}

fn rcs_id(i: usize) -> String {
    format!("fb-{i:06}")
}

fn rcs_request(batch: usize, total: usize) -> SendRequest {
    let recipients = (batch * RCS_PER_REQUEST..((batch + 1) * RCS_PER_REQUEST).min(total))
        .map(|i| Recipient {
            to: rcs_number(i),
            message_id: Some(rcs_id(i)),
            variables: Default::default(),
            metadata: Default::default(),
        })
        .collect();
    let fallback = SmsFallback {
        text: "Your order shipped (SMS)".into(),
        sender: None,
        provider: None,
        regional: None,
        validity_period_seconds: None,
    };
    request(Channel::Rcs, recipients, Some(fallback))
}

fn request(channel: Channel, recipients: Vec<Recipient>, fallback: Option<SmsFallback>) -> SendRequest {
    SendRequest {
        priority: Default::default(),
        schema_version: sendfleet_protocol::SCHEMA_VERSION,
        message_id: None,
        channel,
        provider: None,
        to: None,
        recipients,
        sender: None,
        content: Some(Content::Text { text: "Your order shipped".into(), suggestions: vec![] }),
        template: None,
        options: Default::default(),
        fallback,
        metadata: Default::default(),
        trace_id: None,
    }
}

/// What the provider saw, split by path.
struct Seen {
    sms: Vec<String>,
    sms_times_us: Vec<i64>,
    rcs: HashSet<String>,
}

impl Seen {
    fn of(received: &[Received]) -> Seen {
        let mut seen = Seen { sms: Vec::new(), sms_times_us: Vec::new(), rcs: HashSet::new() };
        for request in received {
            match request.path.as_str() {
                SMS_PATH => {
                    seen.sms.extend(request.message_ids.iter().cloned());
                    seen.sms_times_us.push(request.at_us);
                }
                RCS_PATH => seen.rcs.extend(request.message_ids.iter().cloned()),
                _ => {}
            }
        }
        seen
    }

    fn fallbacks(&self) -> impl Iterator<Item = &str> {
        self.sms.iter().map(String::as_str).filter(|id| id.ends_with(".sms"))
    }
}

/// What a run ended with: the input of its checks.
struct Outcome {
    cap: u32,
    burst: u32,
    sms_total: usize,
    not_capable: HashSet<String>,
    seen: Seen,
    killed_at_us: i64,
    accepted: usize,
    total: usize,
    fallback_events: HashMap<String, HashSet<String>>,
    exits: Vec<(String, Option<i32>)>,
}

/// One check: passed or not, and what was measured.
struct Check {
    passed: bool,
    said: String,
}

impl Check {
    fn new(passed: bool, said: String) -> Check {
        Check { passed, said }
    }
}

impl Outcome {
    fn sorted_sms_times(&self) -> Vec<i64> {
        let mut times = self.seen.sms_times_us.clone();
        times.sort_unstable();
        times
    }

    /// The longest silence at the SMS provider from the kill on, µs (to the first
    /// request after it, then between requests).
    fn longest_pause_us(&self) -> i64 {
        let after: Vec<i64> = self.sorted_sms_times().into_iter().filter(|&t| t >= self.killed_at_us).collect();
        std::iter::once(after.first().copied().unwrap_or(self.killed_at_us) - self.killed_at_us)
            .chain(after.windows(2).map(|w| w[1] - w[0]))
            .max()
            .unwrap_or(0)
    }

    fn checks(&self) -> Vec<Check> {
        let seen = &self.seen;
        let distinct_sms: HashSet<&str> = seen.sms.iter().map(String::as_str).collect();
        let fallback_sms: Vec<&str> = seen.fallbacks().collect();
        let fallback_for: HashSet<String> =
            fallback_sms.iter().map(|id| id.trim_end_matches(".sms").to_owned()).collect();
        let sent_as_rcs = self.not_capable.iter().filter(|id| seen.rcs.contains(id.as_str())).count();
        let mut times = self.sorted_sms_times();
        let worst = sendfleet_limits::gcra::max_in_window(&mut times, 1_000_000);
        let pause_us = self.longest_pause_us();
        let (cap, burst, total) = (self.cap, self.burst, self.total);
        let expected_sms = self.sms_total + self.not_capable.len();
        let events = &self.fallback_events;
        vec![
            Check::new(
                worst <= (cap + burst) as usize,
                format!("worst 1-s window of SMS requests: {worst} (cap {cap} + burst {burst})"),
            ),
            Check::new(
                Duration::from_micros(pause_us.max(0) as u64) < RESUME_BOUND,
                format!("longest pause at the provider after the kill: {:.2} s (bound 10 s)", pause_us as f64 / 1e6),
            ),
            Check::new(
                distinct_sms.len() == expected_sms,
                format!(
                    "SMS messages at the provider: {} distinct of {expected_sms} ({} SMS + {} fallbacks)",
                    distinct_sms.len(),
                    self.sms_total,
                    self.not_capable.len()
                ),
            ),
            Check::new(
                self.accepted >= total,
                format!("messages with an accepted event: {} of {total}", self.accepted),
            ),
            Check::new(
                fallback_for == self.not_capable && fallback_sms.len() == self.not_capable.len(),
                format!(
                    "fallback SMS: {} sent for {} numbers, {} not capable ({sent_as_rcs} of them after an RCS attempt \
                     and its report)",
                    fallback_sms.len(),
                    fallback_for.len(),
                    self.not_capable.len()
                ),
            ),
            Check::new(
                events.keys().cloned().collect::<HashSet<_>>() == self.not_capable
                    && events.values().all(|ids| ids.len() == 1),
                format!(
                    "fallback_triggered: {} messages, {} with more than one event id",
                    events.len(),
                    events.values().filter(|ids| ids.len() > 1).count()
                ),
            ),
            Check::new(
                self.exits.iter().all(|(_, code)| *code == Some(0)),
                format!(
                    "exit codes on SIGTERM: {}",
                    self.exits.iter().map(|(name, code)| format!("{name} {code:?}")).collect::<Vec<_>>().join(", ")
                ),
            ),
        ]
    }
}

async fn received(client: &reqwest::Client, mock_url: &str) -> anyhow::Result<Vec<Received>> {
    Ok(client.get(format!("{mock_url}/mock/received")).send().await?.json().await?)
}

/// Runs the scenario once; returns whether every check passed.
pub async fn run(args: FailoverArgs, amqp_url: &str) -> anyhow::Result<bool> {
    procs::check_broker(amqp_url).await?;
    println!("starting the local Redis (primary 6391, replica 6392, Sentinels 26391-26393)");
    let redis = LocalRedis::start(&args.cluster_dir)?;
    let prefix = format!("sendfleet-failover-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let run_dir = std::env::temp_dir().join(&prefix);
    let spec = FleetSpec {
        amqp_url: amqp_url.to_owned(),
        // Only its password and database count: the Sentinels name the primary.
        redis_url: "redis://127.0.0.1:6391".into(),
        prefix: prefix.clone(),
        mock_latency_ms: 20,
        mock_jitter_ms: 0,
        delivery_reports: true,
        front: true,
        rate_limiter: "fleet",
        rate_per_second: args.cap,
        burst: Some(args.burst),
        concurrency: 512,
        request_timeout_ms: 2_000,
        // Started once the SMS backlog is in its queue, so the dispatcher's expansion of
        // the requests does not share the two cores with the run.
        workers: 0,
        status_store: true,
        run_dir: run_dir.clone(),
        failover: FailoverSetup {
            redis_sentinels: LocalRedis::sentinel_urls(),
            // Reports only for RCS: a message sent as RCS while the capability cache was
            // unreachable (the check fails open) gets its fallback from its report.
            sms_without_reports: true,
            rcs_capability_check: true,
            not_rcs_capable_ratio: NOT_CAPABLE_RATIO,
        },
    };
    println!(
        "starting mock-provider, dispatcher, callback-ingest and {} sender-workers (logs: {})",
        args.workers,
        run_dir.display()
    );
    let mut fleet = ProcessFleet::start(spec).await?;
    let tallier = traffic::Tallier::start(amqp_url, &prefix).await?;
    let client = reqwest::Client::new();
    let mock_url = fleet.mock_url();

    let behaviour = Behaviour { not_rcs_capable_ratio: NOT_CAPABLE_RATIO, ..Behaviour::default() };
    let not_capable: HashSet<String> =
        (0..args.rcs).filter(|&i| !behaviour.is_rcs_capable(&rcs_number(i))).map(rcs_id).collect();

    traffic::publish(amqp_url, &prefix, args.sms.div_ceil(1_000), sms_request, || {}).await?;
    let sms_total = args.sms.div_ceil(1_000) * 1_000;
    let dispatched_by = Instant::now() + Duration::from_secs(120);
    while (traffic::jobs_ready(amqp_url, &prefix, PROVIDERS[0]).await? as usize) < sms_total {
        if Instant::now() >= dispatched_by {
            bail!("the dispatcher did not queue {sms_total} SMS jobs within 120 s; see {}", run_dir.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    for _ in 0..args.workers {
        fleet.add_worker().await?;
    }
    let rcs_total = args.rcs;
    let rcs_load = {
        let (url, prefix) = (amqp_url.to_owned(), prefix.clone());
        tokio::spawn(async move {
            for batch in 0..rcs_total.div_ceil(RCS_PER_REQUEST) {
                traffic::publish(&url, &prefix, 1, |_| rcs_request(batch, rcs_total), || {}).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            anyhow::Ok(())
        })
    };

    let deadline = started + Duration::from_secs(args.timeout_seconds);
    while traffic::mock_accepted(&client, &mock_url).await.unwrap_or(0) < args.kill_after {
        if Instant::now() >= deadline {
            bail!("the provider never accepted {} messages; see {}", args.kill_after, run_dir.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed_at_us = now_ms() * 1_000;
    let said = redis.run("kill-redis-primary")?;
    println!("{} s in: {}", started.elapsed().as_secs(), said.lines().last().unwrap_or_default());
    let killed = Instant::now();

    // Every message accepted (a fallback's `accepted` carries its RCS message's id), then
    // every fallback at the provider (one sent as RCS during the failover gets its
    // fallback only after the RCS report).
    let total = sms_total + rcs_total;
    while tallier.tally().accepted < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut seen = Seen::of(&received(&client, &mock_url).await?);
    while seen.fallbacks().collect::<HashSet<_>>().len() < not_capable.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        seen = Seen::of(&received(&client, &mock_url).await?);
    }
    let settled_after = killed.elapsed();
    // Late duplicates would show up now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    seen = Seen::of(&received(&client, &mock_url).await?);
    rcs_load.await?.context("publishing the RCS requests")?;
    let tally = tallier.tally();
    let fallback_events = tallier.fallback_event_ids();
    let exits = fleet.stop().await;
    procs::delete_prefix(amqp_url, &prefix, &PROVIDERS.map(str::to_owned)).await;
    drop(redis);

    let outcome = Outcome {
        cap: args.cap,
        burst: args.burst,
        sms_total,
        not_capable,
        seen,
        killed_at_us,
        accepted: tally.accepted,
        total,
        fallback_events,
        exits,
    };
    let checks = outcome.checks();
    let times = outcome.sorted_sms_times();
    let span_s = match (times.first(), times.last()) {
        (Some(first), Some(last)) => (last - first) as f64 / 1e6,
        _ => 0.0,
    };
    let sms_rate = times.len() as f64 / span_s.max(0.001);
    println!();
    println!(
        "redis-failover: {} SMS + {rcs_total} RCS messages, {} workers, SMS cap {}/s; all settled {:.1} s after the kill",
        outcome.sms_total,
        args.workers,
        args.cap,
        settled_after.as_secs_f64()
    );
    println!(
        "  SMS requests at the provider: {} over {span_s:.1} s = {sms_rate:.0}/s ({:.1} % of the cap); duplicate SMS \
         sends {}",
        times.len(),
        100.0 * sms_rate / f64::from(args.cap),
        outcome.seen.sms.len() - outcome.seen.sms.iter().collect::<HashSet<_>>().len()
    );
    if let Some(&first) = times.first() {
        let mut per_second = vec![0u32; ((times.last().copied().unwrap_or(first) - first) / 1_000_000 + 1) as usize];
        for t in &times {
            per_second[((t - first) / 1_000_000) as usize] += 1;
        }
        let kill_second = (outcome.killed_at_us - first) / 1_000_000;
        let series: Vec<String> = per_second
            .iter()
            .enumerate()
            .map(|(second, n)| if second as i64 == kill_second { format!("[kill] {n}") } else { n.to_string() })
            .collect();
        println!("  SMS requests per second from the first: {}", series.join(" "));
        let near_cap = per_second.iter().filter(|&&n| f64::from(n) >= 0.95 * f64::from(args.cap)).count();
        println!("  seconds at 95 % of the cap or more: {near_cap} of {}", per_second.len());
    }
    let mut ok = true;
    for check in &checks {
        println!("  [{}] {}", if check.passed { "ok" } else { "FAILED" }, check.said);
        ok &= check.passed;
    }
    if !ok {
        println!("  logs: {}", run_dir.display());
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KILL_US: i64 = 10_000_000;

    /// 2 SMS messages a second apart around the kill, one RCS message with a fallback.
    fn outcome() -> Outcome {
        let sms = |id: &str, at_us: i64| Received {
            at_us,
            answered_us: at_us,
            path: SMS_PATH.into(),
            method: "POST".into(),
            headers: Default::default(),
            authorization: None,
            status: 200,
            message_ids: vec![id.into()],
            body: None,
        };
        let received =
            [sms("rf-0", KILL_US - 1_000_000), sms("rf-1", KILL_US + 2_000_000), sms("fb-0.sms", KILL_US + 3_000_000)];
        Outcome {
            cap: 10,
            burst: 1,
            sms_total: 2,
            not_capable: ["fb-0".to_owned()].into(),
            seen: Seen::of(&received),
            killed_at_us: KILL_US,
            accepted: 3,
            total: 3,
            fallback_events: [("fb-0".to_owned(), ["e1".to_owned()].into())].into(),
            exits: vec![("sender-worker-0".into(), Some(0))],
        }
    }

    fn failed(outcome: &Outcome) -> Vec<String> {
        outcome.checks().into_iter().filter(|c| !c.passed).map(|c| c.said).collect()
    }

    #[test]
    fn a_clean_run_passes_every_check() {
        let outcome = outcome();
        assert_eq!(failed(&outcome), Vec::<String>::new());
        assert_eq!(outcome.longest_pause_us(), 2_000_000);
    }

    #[test]
    fn a_fallback_sent_twice_fails() {
        let mut outcome = outcome();
        outcome.seen.sms.push("fb-0.sms".into());
        assert!(failed(&outcome).iter().any(|said| said.starts_with("fallback SMS: 2 sent")), "{:?}", failed(&outcome));
    }

    #[test]
    fn a_second_fallback_event_id_fails() {
        let mut outcome = outcome();
        outcome.fallback_events.get_mut("fb-0").unwrap().insert("e2".into());
        assert!(failed(&outcome).iter().any(|said| said.starts_with("fallback_triggered")));
    }

    #[test]
    fn a_lost_message_fails() {
        let mut outcome = outcome();
        outcome.seen.sms.retain(|id| id != "rf-1");
        assert!(failed(&outcome).iter().any(|said| said.starts_with("SMS messages at the provider: 2 distinct of 3")));
    }

    #[test]
    fn a_window_above_the_cap_and_burst_fails() {
        let mut outcome = outcome();
        outcome.seen.sms_times_us.extend((0..12).map(|i| KILL_US + 4_000_000 + i));
        assert!(failed(&outcome).iter().any(|said| said.starts_with("worst 1-s window of SMS requests: 1")));
    }

    #[test]
    fn a_long_silence_after_the_kill_fails() {
        let mut outcome = outcome();
        outcome.seen.sms_times_us = vec![KILL_US + 12_000_000];
        assert_eq!(outcome.longest_pause_us(), 12_000_000);
        assert!(failed(&outcome).iter().any(|said| said.starts_with("longest pause")));
    }
}

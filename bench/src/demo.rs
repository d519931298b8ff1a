//! The main job: the fleet end to end on the mock provider, with a summary.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    fleet::{FleetSpec, PROVIDERS, ProcessFleet},
    procs, traffic,
};

/// Demo settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Requests to push through.
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
    /// Mock provider latency, ms.
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// Give up waiting for outcomes after this many seconds.
    #[arg(long, default_value_t = 180)]
    pub timeout_seconds: u64,
}

/// Runs the demo; returns whether every message reached a final outcome and every
/// process exited 0.
pub async fn run(args: DemoArgs, amqp_url: &str, redis_url: &str) -> anyhow::Result<bool> {
    procs::check_broker(amqp_url).await?;
    let prefix = format!("sendfleet-demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let run_dir = std::env::temp_dir().join(&prefix);
    let spec = FleetSpec {
        amqp_url: amqp_url.to_owned(),
        redis_url: redis_url.to_owned(),
        prefix: prefix.clone(),
        mock_latency_ms: args.latency_ms,
        mock_jitter_ms: args.latency_ms / 2,
        delivery_reports: true,
        front: true,
        rate_limiter: "fleet",
        rate_per_second: 4_600,
        burst: None,
        concurrency: 256,
        request_timeout_ms: 2_000,
        workers: 1,
        status_store: true,
        run_dir: run_dir.clone(),
        failover: Default::default(),
    };
    println!("starting mock-provider, dispatcher, callback-ingest and one sender-worker (logs: {})", run_dir.display());
    let fleet = ProcessFleet::start(spec).await?;
    let tallier = traffic::Tallier::start(amqp_url, &prefix).await?;

    let bar = ProgressBar::new(args.messages as u64 * 2);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    bar.set_message("publishing requests");
    traffic::publish(amqp_url, &prefix, args.messages, traffic::demo_request, || bar.inc(1)).await?;
    let published_in = started.elapsed();
    bar.set_message("waiting for delivery reports");
    let tally = tallier
        .wait_terminal(args.messages, Duration::from_secs(args.timeout_seconds), |done| {
            bar.set_position((args.messages + done) as u64)
        })
        .await;
    let wall = started.elapsed();
    bar.finish_and_clear();

    let stats: sendfleet_mock_provider::Stats =
        reqwest::get(format!("{}/mock/stats", fleet.mock_url())).await?.json().await?;
    let exits = fleet.stop().await;
    procs::delete_prefix(amqp_url, &prefix, &PROVIDERS.map(str::to_owned)).await;

    let mut latencies = tally.delivered_latency_ms.clone();
    let p50 = traffic::percentile(&mut latencies, 50.0).unwrap_or(0);
    let p99 = traffic::percentile(&mut latencies, 99.0).unwrap_or(0);
    println!();
    println!(
        "sendfleet demo — {} requests through RabbitMQ, mock provider latency {} ms",
        args.messages, args.latency_ms
    );
    println!("  {:<34}{:>10}", "requests published (confirmed)", args.messages);
    println!("  {:<34}{:>10}", "provider requests received", stats.requests);
    println!("  {:<34}{:>10}", "accepted by provider", tally.accepted);
    println!("  {:<34}{:>10}", "delivered (delivery report)", tally.delivered);
    println!("  {:<34}{:>10}", "undelivered", tally.undelivered);
    println!("  {:<34}{:>10}", "failed", tally.failed);
    println!("  {:<34}{:>10}", "duplicate sends seen by provider", stats.duplicate_message_ids);
    println!("  {:<34}{:>9.2}s", "publish time", published_in.as_secs_f64());
    println!("  {:<34}{:>9.2}s", "wall time (to last report)", wall.as_secs_f64());
    println!("  {:<34}{:>8.0}/s", "rate (delivered / wall time)", tally.delivered as f64 / wall.as_secs_f64());
    println!("  {:<34}{:>7} ms", "publish → delivered p50", p50);
    println!("  {:<34}{:>7} ms", "publish → delivered p99", p99);
    let clean_exit = exits.iter().all(|(_, code)| *code == Some(0));
    for (name, code) in &exits {
        if *code != Some(0) {
            println!("  {name} exited with {code:?} (see {}/{name}.log)", run_dir.display());
        }
    }
    let complete = tally.terminal() >= args.messages;
    println!("  {:<34}{:>10}", "result", if complete && clean_exit { "OK" } else { "INCOMPLETE" });
    Ok(complete && clean_exit)
}

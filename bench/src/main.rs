//! sendfleet-bench: the demo (the fleet end to end with a summary) and the load harness.

mod callbacks;
mod demo;
mod failover;
mod fleet;
mod measure;
mod procs;
mod report;
mod scenario;
mod traffic;

use clap::{Parser, Subcommand};

/// Runs the real sendfleet binaries against the mock provider through the real broker.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// RabbitMQ URL.
    #[arg(long, env = "SENDFLEET_AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f", global = true)]
    amqp_url: String,
    /// Redis URL.
    #[arg(long, env = "SENDFLEET_REDIS_URL", default_value = "redis://127.0.0.1:6379", global = true)]
    redis_url: String,
    /// RabbitMQ queue type of every run: `quorum` (sendfleet's production setting, and
    /// steadier confirm latency) or `classic`.
    #[arg(long, default_value = "quorum", value_parser = ["quorum", "classic"], global = true)]
    queue_type: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Push requests through the whole fleet and print a summary.
    Demo(demo::DemoArgs),
    /// Run load scenarios and write a report (table, JSON, plots).
    Run(RunArgs),
    /// List the scenarios.
    List,
    /// The fleet at the full cap across a `kill -9` of the Redis primary (starts and stops
    /// the local Redis of scripts/cluster.sh); exits 1 unless every check passes.
    RedisFailover(failover::FailoverArgs),
}

/// `run` settings.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenarios to run (default: all). See `list`.
    scenarios: Vec<String>,
    /// Runs of each scenario; figures are medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where the report goes (a timestamped directory inside).
    #[arg(long, default_value = "reports")]
    out: std::path::PathBuf,
    /// Override the per-worker concurrency of the chosen worker scenarios (prefetch
    /// follows at twice this).
    #[arg(long)]
    concurrency: Option<u32>,
    /// Override the providers' `request_timeout_ms` (default 2,000) of the chosen worker
    /// scenarios.
    #[arg(long)]
    request_timeout_ms: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    procs::set_queue_type(if args.queue_type == "classic" {
        sendfleet_config::QueueType::Classic
    } else {
        sendfleet_config::QueueType::Quorum
    });
    let ok = match args.command {
        Command::Demo(demo) => demo::run(demo, &args.amqp_url, &args.redis_url).await?,
        Command::Run(run) => run_scenarios(run, &args.amqp_url, &args.redis_url).await?,
        Command::RedisFailover(failover) => failover::run(failover, &args.amqp_url).await?,
        Command::List => {
            for scenario in scenario::defaults() {
                println!("{:<16} {}", scenario.name, scenario.description);
            }
            true
        }
    };
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

async fn run_scenarios(args: RunArgs, amqp_url: &str, redis_url: &str) -> anyhow::Result<bool> {
    procs::check_broker(amqp_url).await?;
    let all = scenario::defaults();
    let chosen: Vec<scenario::Scenario> = if args.scenarios.is_empty() {
        all
    } else {
        let mut chosen = Vec::new();
        for name in &args.scenarios {
            let found = all.iter().find(|s| s.name == name);
            chosen.push(found.cloned().ok_or_else(|| anyhow::anyhow!("unknown scenario '{name}' (see `list`)"))?);
        }
        chosen
    };
    let chosen: Vec<scenario::Scenario> = chosen
        .into_iter()
        .map(|mut scenario| {
            if let Some(concurrency) = args.concurrency
                && scenario.workers > 0
            {
                scenario.concurrency = concurrency;
            }
            if let Some(timeout) = args.request_timeout_ms {
                scenario.request_timeout_ms = timeout;
            }
            scenario
        })
        .collect();
    let stamp = chrono_like_stamp();
    let dir = args.out.join(&stamp);
    let total = (chosen.len() * args.runs) as u64;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut runs = Vec::new();
    // Rounds, not scenario blocks: each round runs every scenario once, so ratios
    // (uncapped vs bare) compare runs made close together on this noisy machine.
    for round in 0..args.runs {
        for scenario in &chosen {
            bar.set_message(format!("round {} · {}", round + 1, scenario.name));
            let result = scenario::run_once(scenario, amqp_url, redis_url, &dir.join("logs")).await?;
            let line = format!(
                "round {} {:<16} jobs/s {:>7.0}  steady {:>7.0}/s  max 1 s window {:>5}",
                round + 1,
                scenario.name,
                result.jobs_per_second,
                result.steady_rate,
                result.max_window
            );
            // Without a terminal the bar is hidden and swallows println: print plainly.
            if bar.is_hidden() {
                println!("{line}")
            } else {
                bar.println(line)
            }
            runs.push(result);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let report = report::Report {
        machine: machine_description(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        summaries: report::summarise(&chosen, &runs),
        uncapped_vs_bare: report::ratio_vs_bare(&runs, |r| r.jobs_per_second),
        cpu_vs_bare: report::ratio_vs_bare(&runs, |r| r.cpu_seconds_per_1000),
        status_on_vs_off: report::StatusCost::of(&runs),
        runs,
    };
    report::print_table(&report);
    for path in report::write(&report, &dir)? {
        println!("wrote {}", path.display());
    }
    let within_caps = report.summaries.iter().all(|s| s.cap.is_none_or(|cap| s.max_window as u32 <= cap + s.burst));
    Ok(within_caps && report.summaries.iter().all(|s| s.clean_exits))
}

fn chrono_like_stamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("run-{secs}")
}

fn machine_description() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned()))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024 / 1024)
        .unwrap_or(0);
    format!("{cpus} CPUs ({model}), {memory} GiB RAM; RabbitMQ, Redis, mock provider and workers on the same machine")
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Args::command().debug_assert();
    }
}

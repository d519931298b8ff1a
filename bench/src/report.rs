//! The report: medians over runs, a table, a JSON file and SVG plots.

use std::{collections::BTreeMap, path::Path};

use plotters::prelude::*;
use serde::Serialize;

use crate::scenario::{RunResult, Scenario};

/// Medians of one scenario over its runs.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioSummary {
    /// Name.
    pub scenario: String,
    /// What it shows.
    pub description: String,
    /// Cap (None: limiter off).
    pub cap: Option<u32>,
    /// Burst.
    pub burst: u32,
    /// Runs.
    pub runs: usize,
    /// Median jobs/s.
    pub jobs_per_second: f64,
    /// Median steady provider-side rate.
    pub steady_rate: f64,
    /// Steady rate as a share of the cap.
    pub steady_share_of_cap: Option<f64>,
    /// Worst 1-second window over every run.
    pub max_window: usize,
    /// Median p50 latency, ms.
    pub latency_p50_ms: Option<f64>,
    /// Median p99 latency, ms.
    pub latency_p99_ms: Option<f64>,
    /// Median CPU seconds per 1,000 jobs.
    pub cpu_seconds_per_1000: f64,
    /// Largest peak RSS, MiB.
    pub peak_rss_mib: f64,
    /// Duplicates over all runs.
    pub duplicates: u64,
    /// Every worker exited 0 on SIGTERM in every run.
    pub clean_exits: bool,
    /// The provider's concurrency, and the most requests in flight at it over every run
    /// (scenarios that measure it).
    pub in_flight: Option<(usize, u32)>,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// When and where.
    pub machine: String,
    /// The command line.
    pub command: String,
    /// Per-scenario medians.
    pub summaries: Vec<ScenarioSummary>,
    /// `uncapped` jobs/s ÷ `bare` jobs/s, median of the per-round ratios.
    pub uncapped_vs_bare: Option<f64>,
    /// `uncapped` CPU per job ÷ `bare` CPU per job, median of the per-round ratios.
    pub cpu_vs_bare: Option<f64>,
    /// Status store on ÷ off, medians of per-round ratios: `uncapped` jobs/s, `uncapped`
    /// CPU per job, `capped` CPU per job.
    pub status_on_vs_off: StatusCost,
    /// Every run.
    pub runs: Vec<RunResult>,
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable_by(f64::total_cmp);
    values[values.len() / 2]
}

fn median_opt(values: Vec<Option<f64>>) -> Option<f64> {
    let present: Vec<f64> = values.into_iter().flatten().collect();
    (!present.is_empty()).then(|| median(present))
}

/// Summarises the runs of each scenario.
pub fn summarise(scenarios: &[Scenario], runs: &[RunResult]) -> Vec<ScenarioSummary> {
    scenarios
        .iter()
        .filter_map(|scenario| {
            let mine: Vec<&RunResult> = runs.iter().filter(|r| r.scenario == scenario.name).collect();
            if mine.is_empty() {
                return None;
            }
            let steady_rate = median(mine.iter().map(|r| r.steady_rate).collect());
            Some(ScenarioSummary {
                scenario: scenario.name.to_owned(),
                description: scenario.description.to_owned(),
                cap: scenario.cap,
                burst: scenario.burst,
                runs: mine.len(),
                jobs_per_second: median(mine.iter().map(|r| r.jobs_per_second).collect()),
                steady_rate,
                steady_share_of_cap: scenario.cap.map(|cap| steady_rate / f64::from(cap)),
                max_window: mine.iter().map(|r| r.max_window).max().unwrap_or(0),
                latency_p50_ms: median_opt(mine.iter().map(|r| r.latency_p50_ms).collect()),
                latency_p99_ms: median_opt(mine.iter().map(|r| r.latency_p99_ms).collect()),
                cpu_seconds_per_1000: median(mine.iter().map(|r| r.cpu_seconds_per_1000).collect()),
                peak_rss_mib: mine.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max),
                duplicates: mine.iter().map(|r| r.duplicates).sum(),
                clean_exits: mine.iter().all(|r| r.exit_codes.iter().all(|c| *c == Some(0))),
                in_flight: scenario
                    .in_flight
                    .then(|| (mine.iter().filter_map(|r| r.max_in_flight).max().unwrap_or(0), scenario.concurrency)),
            })
        })
        .collect()
}

/// What the status store costs: on ÷ off, medians of the per-round ratios.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusCost {
    /// `uncapped` ÷ `uncapped-status-off` jobs/s.
    pub uncapped_throughput: Option<f64>,
    /// `uncapped` ÷ `uncapped-status-off` worker CPU per job.
    pub uncapped_cpu_per_job: Option<f64>,
    /// `capped` ÷ `capped-status-off` worker CPU per job.
    pub capped_cpu_per_job: Option<f64>,
}

impl StatusCost {
    /// The ratios of `runs`.
    pub fn of(runs: &[RunResult]) -> StatusCost {
        StatusCost {
            uncapped_throughput: ratio(runs, "uncapped", "uncapped-status-off", |r| r.jobs_per_second),
            uncapped_cpu_per_job: ratio(runs, "uncapped", "uncapped-status-off", |r| r.cpu_seconds_per_1000),
            capped_cpu_per_job: ratio(runs, "capped", "capped-status-off", |r| r.cpu_seconds_per_1000),
        }
    }
}

/// Median over rounds of `uncapped.metric / bare.metric`.
pub fn ratio_vs_bare(runs: &[RunResult], metric: impl Fn(&RunResult) -> f64) -> Option<f64> {
    ratio(runs, "uncapped", "bare", metric)
}

/// Median over rounds of `a.metric / b.metric` (the n-th run of each in a round).
fn ratio(runs: &[RunResult], a: &str, b: &str, metric: impl Fn(&RunResult) -> f64) -> Option<f64> {
    let first: Vec<f64> = runs.iter().filter(|r| r.scenario == a).map(&metric).collect();
    let second: Vec<f64> = runs.iter().filter(|r| r.scenario == b).map(&metric).collect();
    let ratios: Vec<f64> = first.iter().zip(&second).filter(|(_, y)| **y > 0.0).map(|(x, y)| x / y).collect();
    (!ratios.is_empty()).then(|| median(ratios))
}

/// Prints the table.
pub fn print_table(report: &Report) {
    println!();
    println!(
        "{:<14} {:>5} {:>10} {:>10} {:>8} {:>12} {:>10} {:>10} {:>11} {:>9} {:>5}",
        "scenario",
        "runs",
        "jobs/s",
        "steady/s",
        "of cap",
        "max 1s win",
        "p50 ms",
        "p99 ms",
        "cpu s/1k",
        "rss MiB",
        "exit"
    );
    for s in &report.summaries {
        let limit =
            s.cap.map(|c| format!("{}/{}", s.max_window, c + s.burst)).unwrap_or_else(|| s.max_window.to_string());
        println!(
            "{:<14} {:>5} {:>10.0} {:>10.0} {:>8} {:>12} {:>10} {:>10} {:>11.3} {:>9.1} {:>5}",
            s.scenario,
            s.runs,
            s.jobs_per_second,
            s.steady_rate,
            s.steady_share_of_cap.map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_else(|| "-".into()),
            limit,
            s.latency_p50_ms.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into()),
            s.latency_p99_ms.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into()),
            s.cpu_seconds_per_1000,
            s.peak_rss_mib,
            if s.clean_exits { "0" } else { "FAIL" },
        );
    }
    for s in &report.summaries {
        if let Some((max, concurrency)) = s.in_flight {
            println!("{}: at most {max} requests in flight at the provider (concurrency {concurrency})", s.scenario);
        }
    }
    if let Some(ratio) = report.uncapped_vs_bare {
        println!("uncapped / bare throughput: {:.2} (median of per-round ratios)", ratio);
    }
    if let Some(ratio) = report.cpu_vs_bare {
        println!("uncapped / bare CPU per job: {:.2}", ratio);
    }
    let status = &report.status_on_vs_off;
    for (what, ratio) in [
        ("uncapped throughput", status.uncapped_throughput),
        ("uncapped worker CPU per job", status.uncapped_cpu_per_job),
        ("capped worker CPU per job", status.capped_cpu_per_job),
    ] {
        if let Some(ratio) = ratio {
            println!("status store on / off, {what}: {ratio:.3} (median of per-round ratios)");
        }
    }
}

/// Writes `report.json` and one SVG per capped scenario into `dir`.
pub fn write(report: &Report, dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = vec![dir.join("report.json")];
    std::fs::write(&written[0], serde_json::to_vec_pretty(report)?)?;
    let mut by_scenario: BTreeMap<&str, Vec<&RunResult>> = BTreeMap::new();
    for run in &report.runs {
        by_scenario.entry(run.scenario.as_str()).or_default().push(run);
    }
    for summary in &report.summaries {
        let (Some(cap), Some(runs)) = (summary.cap, by_scenario.get(summary.scenario.as_str())) else { continue };
        // Plot the run whose steady rate is the median one.
        let mut sorted = runs.clone();
        sorted.sort_by(|a, b| a.steady_rate.total_cmp(&b.steady_rate));
        let run = sorted[sorted.len() / 2];
        let path = dir.join(format!("{}.svg", summary.scenario));
        plot(run, cap, summary.burst, &summary.description, &path)?;
        written.push(path);
    }
    Ok(written)
}

fn plot(run: &RunResult, cap: u32, burst: u32, description: &str, path: &Path) -> anyhow::Result<()> {
    let buckets = &run.rate_series;
    let seconds = buckets.len() as f64 / 10.0;
    // Requests in the 1-second window ending at each 100 ms step: what the cap bounds.
    let window: Vec<(f64, f64)> = (10..=buckets.len())
        .map(|end| (end as f64 / 10.0, buckets[end - 10..end].iter().map(|&c| f64::from(c)).sum()))
        .collect();
    let per_100ms: Vec<(f64, f64)> =
        buckets.iter().enumerate().map(|(i, &c)| (i as f64 / 10.0, f64::from(c) * 10.0)).collect();
    let top = per_100ms.iter().map(|p| p.1).fold(f64::from(cap + burst), f64::max) * 1.15;

    let root = SVGBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{} — {}: provider-side requests/s", run.scenario, description), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..seconds.max(1.0), 0.0..top)?;
    chart.configure_mesh().x_desc("seconds since the first provider request").y_desc("requests/s").draw()?;
    chart
        .draw_series(LineSeries::new(per_100ms, RGBColor(160, 190, 230).stroke_width(1)))?
        .label("per 100 ms (×10)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(160, 190, 230)));
    chart
        .draw_series(LineSeries::new(window, BLUE.stroke_width(2)))?
        .label("requests in the trailing 1 s window")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    let cap_line = vec![(0.0, f64::from(cap)), (seconds, f64::from(cap))];
    chart
        .draw_series(LineSeries::new(cap_line, RED.stroke_width(2)))?
        .label(format!("cap {cap}/s"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    let burst_line = vec![(0.0, f64::from(cap + burst)), (seconds, f64::from(cap + burst))];
    chart
        .draw_series(LineSeries::new(burst_line, RED.mix(0.4).stroke_width(1)))?
        .label(format!("cap + burst {}", cap + burst))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.mix(0.4)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

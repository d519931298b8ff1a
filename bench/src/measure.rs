//! Turning what the mock saw and what /proc says into figures.

use sendfleet_limits::gcra::max_in_window;
use sendfleet_mock_provider::{Received, Stats};

use crate::{
    procs::Proc,
    scenario::{RunResult, Scenario},
    traffic::percentile_f,
};

/// CPU and memory of one worker process.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// User + system CPU seconds so far.
    pub cpu_seconds: f64,
    /// Peak resident set (VmHWM), KiB.
    pub peak_rss_kib: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` (Linux).
pub fn sample(proc: &Proc) -> Option<ProcSample> {
    let pid = proc.pid()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    // USER_HZ is 100 on every Linux this runs on.
    Some(ProcSample { cpu_seconds: ticks / 100.0, peak_rss_kib })
}

/// Publish → provider arrival latencies, from ids `bench-<i>-<published ms>`.
pub fn latencies_ms(received: &[Received]) -> Vec<f64> {
    received
        .iter()
        .filter(|r| r.status == 200)
        .flat_map(|r| {
            r.message_ids.iter().filter_map(move |id| {
                let published: i64 = id.rsplit('-').next()?.parse().ok()?;
                Some((r.at_us as f64 / 1_000.0) - published as f64)
            })
        })
        .collect()
}

/// The figures of one run.
pub fn summarise(
    scenario: &Scenario,
    stats: &Stats,
    latencies: Option<Vec<f64>>,
    samples: &[ProcSample],
    exit_codes: Vec<Option<i32>>,
) -> RunResult {
    let mut arrivals = stats.arrivals_us.clone();
    arrivals.sort_unstable();
    let first = arrivals.first().copied().unwrap_or(0);
    let last = arrivals.last().copied().unwrap_or(0);
    let span_s = ((last - first) as f64 / 1e6).max(1e-6);
    let jobs = stats.accepted;
    let (steady_from, steady_to) = (first + 2_000_000, last - 1_000_000);
    let steady_rate = if steady_to > steady_from {
        let count = arrivals.iter().filter(|&&t| t >= steady_from && t < steady_to).count();
        count as f64 / ((steady_to - steady_from) as f64 / 1e6)
    } else {
        jobs as f64 / span_s
    };
    let mut rate_series = vec![0u32; ((last - first) / 100_000 + 1).max(0) as usize];
    for t in &arrivals {
        if let Some(bucket) = rate_series.get_mut(((t - first) / 100_000) as usize) {
            *bucket += 1;
        }
    }
    let max_window = max_in_window(&mut arrivals, 1_000_000);
    let cpu: f64 = samples.iter().map(|s| s.cpu_seconds).sum();
    let peak_rss_kib = samples.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0);
    let (latency_p50_ms, latency_p99_ms) = match latencies {
        Some(mut l) => (percentile_f(&mut l, 50.0), percentile_f(&mut l, 99.0)),
        None => (None, None),
    };
    RunResult {
        scenario: scenario.name.to_owned(),
        jobs,
        jobs_per_second: jobs.saturating_sub(1) as f64 / span_s,
        steady_rate,
        max_window,
        rate_series,
        latency_p50_ms,
        latency_p99_ms,
        cpu_seconds_per_1000: if jobs > 0 { cpu / (jobs as f64 / 1_000.0) } else { 0.0 },
        peak_rss_mib: peak_rss_kib as f64 / 1_024.0,
        duplicates: stats.duplicate_message_ids,
        exit_codes,
        max_in_flight: None,
    }
}

//! The `callback-ingest` scenarios: delivery reports posted at a real callback-ingest
//! process over keep-alive connections, each answered only after the broker confirmed
//! its events — on a fixed schedule (offered load, latency from when each POST was due)
//! or back to back (the ingest's peak).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use parking_lot::Mutex;

use crate::{
    fleet::{FleetSpec, PROVIDERS, ProcessFleet},
    measure,
    procs::{self, CALLBACK_TOKEN},
    scenario::{RunResult, Scenario},
    traffic::percentile_f,
};

/// One delivery-report body of `batch` results (Infobip SMS v3 shape), with message ids
/// unique per connection and request.
fn report_body(connection: usize, request: u64, batch: usize) -> String {
    let results: Vec<String> = (0..batch)
        .map(|i| {
            format!(
                r#"{{"bulkId":"bench","messageId":"cb-{connection}-{request}-{i}","to":"919876543210","sender":"SENDFLEET","sentAt":"2026-01-15T10:30:01.120+0000","doneAt":"2026-01-15T10:30:04.870+0000","messageCount":1,"price":{{"pricePerMessage":0.0021,"currency":"EUR"}},"status":{{"groupId":3,"groupName":"DELIVERED","id":5,"name":"DELIVERED_TO_HANDSET","description":"Message delivered to handset"}},"error":{{"groupId":0,"groupName":"OK","id":0,"name":"NO_ERROR","permanent":false}}}}"#
            )
        })
        .collect();
    format!(r#"{{"results":[{}]}}"#, results.join(","))
}

/// How the reports are posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CallbackLoad {
    /// Reports to post (the run also ends at `max_seconds`).
    pub reports: u64,
    /// Concurrent keep-alive connections (at most this many POSTs in flight).
    pub connections: usize,
    /// Reports per POST (Infobip batches up to 100).
    pub batch: usize,
    /// Offered load in reports/s: POSTs are due on a fixed schedule and latency is
    /// measured from when each was due (no coordinated omission). `None`: every
    /// connection posts back to back, as fast as the ingest answers.
    pub per_second: Option<u32>,
}

impl CallbackLoad {
    /// When POST number `index` is due after the start (`None`: at once).
    fn due(&self, index: u64) -> Option<Duration> {
        let rate = u64::from(self.per_second?.max(1));
        Some(Duration::from_micros(index * self.batch as u64 * 1_000_000 / rate))
    }
}

/// Runs the scenario once: `load.connections` clients take POSTs of `load.batch` reports
/// in turn until `load.reports` were posted or `scenario.max_seconds` passed.
pub async fn run_once(
    scenario: &Scenario,
    load: CallbackLoad,
    amqp_url: &str,
    redis_url: &str,
    run_dir: &std::path::Path,
) -> anyhow::Result<RunResult> {
    let prefix = format!("sendfleet-bench-{}-{}", scenario.name, &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let spec = FleetSpec {
        amqp_url: amqp_url.to_owned(),
        redis_url: redis_url.to_owned(),
        prefix: prefix.clone(),
        mock_latency_ms: 0,
        mock_jitter_ms: 0,
        delivery_reports: false,
        front: true,
        rate_limiter: "off",
        rate_per_second: 4_600,
        burst: None,
        concurrency: 1,
        request_timeout_ms: 2_000,
        workers: 0,
        status_store: true,
        run_dir: run_dir.join(&prefix),
        failover: Default::default(),
    };
    let fleet = ProcessFleet::start(spec).await?;
    let url = format!("{}/callbacks/{}/{CALLBACK_TOKEN}/delivery", fleet.ingest_url(), PROVIDERS[0]);
    let CallbackLoad { reports, connections, batch, .. } = load;
    // One pooled client: connections stay open between requests (keep-alive).
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()
        .context("http client")?;
    let accepted = Arc::new(AtomicU64::new(0));
    let next_post = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    // (ms after the start the POST was due or sent, latency ms)
    let timeline = Arc::new(Mutex::new(Vec::<(f64, f64)>::new()));
    let deadline = Instant::now() + Duration::from_secs(scenario.max_seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for connection in 0..connections {
        let (client, url) = (client.clone(), url.clone());
        let (accepted, refused, timeline) = (accepted.clone(), refused.clone(), timeline.clone());
        let next_post = next_post.clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let request = next_post.fetch_add(1, Ordering::Relaxed);
                if request * batch as u64 >= reports || Instant::now() >= deadline {
                    break;
                }
                let body = report_body(connection, request, batch);
                // Latency counts from when the POST was due, so a slow answer that
                // delays the next POSTs shows in their latency too.
                let sent = match load.due(request) {
                    Some(due) => {
                        let due = started + due;
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                let answer = client.post(&url).header("content-type", "application/json").body(body).send().await;
                match answer {
                    Ok(response) if response.status().is_success() => {
                        mine.push(((sent - started).as_secs_f64() * 1_000.0, sent.elapsed().as_secs_f64() * 1_000.0));
                        accepted.fetch_add(batch as u64, Ordering::Relaxed);
                    }
                    _ => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            timeline.lock().extend(mine);
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64().max(1e-6);
    let sample = fleet.ingest.as_ref().and_then(measure::sample);
    let mut fleet = fleet;
    let ingest_exit = match fleet.ingest.as_mut() {
        Some(ingest) => ingest.terminate(Duration::from_secs(30)).await,
        None => None,
    };
    fleet.ingest = None;
    fleet.stop().await;
    procs::delete_prefix(amqp_url, &prefix, &PROVIDERS.map(str::to_owned)).await;

    let refused = refused.load(Ordering::Relaxed);
    if refused > 0 {
        bail!("callback-ingest refused {refused} requests (see the logs in {})", run_dir.display());
    }
    let done = accepted.load(Ordering::Relaxed);
    let mut timeline = std::mem::take(&mut *timeline.lock());
    timeline.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Every POST's latency by when it was due: where the slow ones cluster in time.
    let csv: String = timeline.iter().map(|(at, latency)| format!("{at:.3},{latency:.3}\n")).collect();
    let csv_path = run_dir.join(format!("{prefix}-latency.csv"));
    if let Err(err) = std::fs::write(&csv_path, format!("due_ms,latency_ms\n{csv}")) {
        eprintln!("could not write {}: {err}", csv_path.display());
    }
    let mut latencies: Vec<f64> = timeline.iter().map(|(_, latency)| *latency).collect();
    let cpu = sample.map_or(0.0, |s| s.cpu_seconds);
    Ok(RunResult {
        scenario: scenario.name.to_owned(),
        jobs: done,
        jobs_per_second: done as f64 / elapsed,
        steady_rate: done as f64 / elapsed,
        max_window: 0,
        rate_series: Vec::new(),
        latency_p50_ms: percentile_f(&mut latencies, 50.0),
        latency_p99_ms: percentile_f(&mut latencies, 99.0),
        cpu_seconds_per_1000: if done > 0 { cpu / (done as f64 / 1_000.0) } else { 0.0 },
        peak_rss_mib: sample.map_or(0.0, |s| s.peak_rss_kib as f64 / 1_024.0),
        duplicates: 0,
        exit_codes: vec![ingest_exit],
        max_in_flight: None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::CallbackLoad;

    #[test]
    fn offered_load_spaces_posts_by_batch_over_rate() {
        let load = CallbackLoad { reports: 100, connections: 4, batch: 10, per_second: Some(10_000) };
        assert_eq!(load.due(0), Some(Duration::ZERO));
        assert_eq!(load.due(1), Some(Duration::from_millis(1)));
        assert_eq!(load.due(1_000), Some(Duration::from_secs(1)));
        let back_to_back = CallbackLoad { per_second: None, ..load };
        assert_eq!(back_to_back.due(5), None);
    }

    #[test]
    fn a_report_body_parses_as_an_infobip_delivery_report_batch() {
        let body = super::report_body(3, 7, 2);
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        let results = value["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[1]["messageId"], "cb-3-7-1");
        assert_eq!(results[0]["status"]["groupId"], 3);
    }
}

//! Load in (requests published with confirms) and outcomes out (events tallied).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures_util::{StreamExt, stream};
use parking_lot::Mutex;
use sendfleet_broker::{
    Outgoing, Publisher, Topology,
    lapin::options::{BasicAckOptions, BasicQosOptions},
};
use sendfleet_config::{BrokerConfig, EventsQueueConfig, RedactedUrl};
use sendfleet_protocol::{Channel, Content, Event, EventKind, Priority, SendJob, SendRequest, decode, encode, now_ms};

/// The broker config of a run. The bench tallies every event, so its events queue is
/// unbounded (a tally that lags must not lose events); the fleet's config says the same
/// (`fleet.rs`), or the fleet's declaration would not match the bench's.
fn broker(url: &str, prefix: &str) -> BrokerConfig {
    BrokerConfig {
        url: RedactedUrl::new(url).into(),
        prefix: prefix.to_owned(),
        queue_type: crate::procs::queue_type(),
        events_queue: EventsQueueConfig {
            max_length: 0,
            max_length_bytes: 0,
            message_ttl_seconds: 0,
            ..Default::default()
        },
        ..BrokerConfig::default()
    }
}

/// The `i`-th demo request: alternating SMS and RCS text, each with its own number.
pub fn demo_request(i: usize) -> SendRequest {
    let channel = if i.is_multiple_of(2) { Channel::Sms } else { Channel::Rcs };
    SendRequest {
        priority: Default::default(),
        schema_version: sendfleet_protocol::SCHEMA_VERSION,
        message_id: Some(format!("demo-{i:07}-{}", uuid::Uuid::new_v4().simple())),
        channel,
        provider: None,
        // UK mobile numbers (+44 71…): valid in the numbering plan the dispatcher checks.
        to: Some(format!("+4471{:08}", i % 100_000_000)),
        recipients: vec![],
        sender: None,
        content: Some(Content::Text { text: format!("Hello from sendfleet, message {i}"), suggestions: vec![] }),
        template: None,
        options: Default::default(),
        fallback: None,
        metadata: [("published_at_ms".to_owned(), now_ms().to_string())].into(),
        trace_id: None,
    }
}

/// Publishes `count` requests made by `make`, 512 confirms in flight; calls `progress`
/// after each confirm.
pub async fn publish(
    url: &str,
    prefix: &str,
    count: usize,
    make: impl Fn(usize) -> SendRequest,
    progress: impl Fn(),
) -> anyhow::Result<()> {
    let config = broker(url, prefix);
    let connection = sendfleet_broker::connect_once(&config, "bench-load").await?;
    let publisher = Publisher::open(&connection).await?;
    let exchange = Topology::new(&config).requests_exchange();
    let bodies = (0..count).map(|i| encode(&make(i)));
    let mut confirms = stream::iter(bodies)
        .map(|body| {
            let publisher = publisher.clone();
            let exchange = exchange.clone();
            async move { publisher.publish(Outgoing::new(&exchange, "", &body)).await }
        })
        .buffer_unordered(512);
    while let Some(result) = confirms.next().await {
        result?;
        progress();
    }
    let _ = connection.close(200, "".into()).await;
    Ok(())
}

/// Counts of what happened, by unique message id.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Messages with an accepted event.
    pub accepted: usize,
    /// Messages delivered.
    pub delivered: usize,
    /// Messages with a final non-delivered report.
    pub undelivered: usize,
    /// Messages failed at send time.
    pub failed: usize,
    /// Retry events.
    pub retries: usize,
    /// Events that were not decodable.
    pub undecodable: usize,
    /// Publish → delivered-event latency samples, ms.
    pub delivered_latency_ms: Vec<i64>,
}

impl Tally {
    /// Messages with a final outcome.
    pub fn terminal(&self) -> usize {
        self.delivered + self.undelivered + self.failed
    }
}

#[derive(Default)]
struct Seen {
    tally: Tally,
    by_kind: HashMap<EventKind, HashSet<String>>,
    fallback_event_ids: HashMap<String, HashSet<String>>,
}

/// Consumes a prefix's events queue and tallies outcomes.
#[derive(Clone)]
pub struct Tallier {
    seen: Arc<Mutex<Seen>>,
}

impl Tallier {
    /// Starts consuming (the queue must exist).
    pub async fn start(url: &str, prefix: &str) -> anyhow::Result<Tallier> {
        let config = broker(url, prefix);
        let connection = sendfleet_broker::connect_once(&config, "bench-events").await?;
        let channel = connection.create_channel().await?;
        channel.basic_qos(2_000, BasicQosOptions::default()).await?;
        let mut consumer = channel
            .basic_consume(
                Topology::new(&config).events_queue().as_str().into(),
                "bench-events".into(),
                Default::default(),
                Default::default(),
            )
            .await?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sink = seen.clone();
        tokio::spawn(async move {
            let _connection = connection;
            while let Some(Ok(delivery)) = consumer.next().await {
                let event = decode::<Event>(&delivery.data);
                record(&sink, event.ok());
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            }
        });
        Ok(Tallier { seen })
    }

    /// The tally so far.
    pub fn tally(&self) -> Tally {
        self.seen.lock().tally.clone()
    }

    /// The event ids of every `fallback_triggered` event, by message id (a fallback
    /// reported again keeps its event id, so each set should hold one).
    pub fn fallback_event_ids(&self) -> HashMap<String, HashSet<String>> {
        self.seen.lock().fallback_event_ids.clone()
    }

    /// Waits until `terminal() >= count` or `timeout`, calling `progress` with the
    /// terminal count every 100 ms.
    pub async fn wait_terminal(&self, count: usize, timeout: Duration, progress: impl Fn(usize)) -> Tally {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let tally = self.tally();
            progress(tally.terminal());
            if tally.terminal() >= count || tokio::time::Instant::now() >= deadline {
                return tally;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn record(seen: &Mutex<Seen>, event: Option<Event>) {
    let mut seen = seen.lock();
    let Some(event) = event else {
        seen.tally.undecodable += 1;
        return;
    };
    if event.kind == EventKind::FallbackTriggered
        && let Some(id) = &event.message_id
    {
        seen.fallback_event_ids.entry(id.clone()).or_default().insert(event.event_id.clone());
    }
    if event.kind == EventKind::Retrying {
        seen.tally.retries += 1;
        return;
    }
    let Some(id) = event.message_id.clone() else { return };
    if !seen.by_kind.entry(event.kind).or_default().insert(id) {
        return;
    }
    let now = now_ms();
    let tally = &mut seen.tally;
    match event.kind {
        EventKind::Accepted => tally.accepted += 1,
        EventKind::Delivered => {
            tally.delivered += 1;
            if let Some(published) = event.metadata.get("published_at_ms").and_then(|v| v.parse::<i64>().ok()) {
                tally.delivered_latency_ms.push(now - published);
            }
        }
        EventKind::Undelivered => tally.undelivered += 1,
        EventKind::Failed => tally.failed += 1,
        _ => {}
    }
}

/// The `p`-th percentile (0–100) of float samples (sorted in place).
pub fn percentile_f(samples: &mut [f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable_by(f64::total_cmp);
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples.get(rank).copied()
}

/// The `p`-th percentile (0–100) of `samples` (sorted in place).
pub fn percentile(samples: &mut [i64], p: f64) -> Option<i64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples.get(rank).copied()
}

/// Messages ready in a provider's job queue of the normal lane.
pub async fn jobs_ready(url: &str, prefix: &str, provider: &str) -> anyhow::Result<u32> {
    let config = broker(url, prefix);
    let connection = sendfleet_broker::connect_once(&config, "bench-depth").await?;
    let channel = connection.create_channel().await?;
    let queue = Topology::new(&config).jobs_queue(provider);
    let options = sendfleet_broker::lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    let declared = channel.queue_declare(queue.as_str().into(), options, Default::default()).await?;
    let _ = connection.close(200, "".into()).await;
    Ok(declared.message_count())
}

/// Declares the prefix's topology (the bench feeds job queues before workers start).
pub async fn declare(url: &str, prefix: &str) -> anyhow::Result<()> {
    let config = broker(url, prefix);
    let connection = sendfleet_broker::connect_once(&config, "bench-declare").await?;
    let channel = connection.create_channel().await?;
    let providers: Vec<String> = crate::fleet::PROVIDERS.iter().map(|p| (*p).to_owned()).collect();
    Topology::new(&config).declare(&channel, &providers).await?;
    let _ = connection.close(200, "".into()).await;
    Ok(())
}

fn bench_job(provider: &str, i: usize, lane: Priority) -> SendJob {
    // High jobs are named in the id: the lanes scenario measures them apart.
    let name = if lane == Priority::High { "high" } else { "bench" };
    SendJob {
        priority: lane,
        schema_version: sendfleet_protocol::SCHEMA_VERSION,
        // The publish time rides in the id, so latency needs no side table.
        message_id: format!("{name}-{i:08}-{}", now_ms()),
        provider: provider.to_owned(),
        channel: Channel::Sms,
        to: format!("+1555{:07}", i % 10_000_000),
        sender: "SENDFLEET".into(),
        content: Content::Text { text: format!("Benchmark message {i}"), suggestions: vec![] },
        options: Default::default(),
        fallback: None,
        metadata: Default::default(),
        trace_id: format!("bench-trace-{i}"),
        attempts: 0,
        first_attempt_at_ms: None,
        created_at_ms: now_ms(),
        fallback_for: None,
    }
}

/// Publishes `count` SMS jobs of a lane straight to the provider's queue of that lane,
/// 2,000 confirms in flight over two channels.
pub async fn preload_jobs(url: &str, prefix: &str, provider: &str, count: usize, lane: Priority) -> anyhow::Result<()> {
    let config = broker(url, prefix);
    let connection = sendfleet_broker::connect_once(&config, "bench-preload").await?;
    let publishers = [Publisher::open(&connection).await?, Publisher::open(&connection).await?];
    let exchange = Topology::new(&config).jobs_exchange();
    let key = Topology::job_routing_key(provider, lane);
    let mut confirms = stream::iter(0..count)
        .map(|i| {
            let publisher = publishers[i % 2].clone();
            let (exchange, body) = (exchange.clone(), encode(&bench_job(provider, i, lane)));
            let key = key.clone();
            async move { publisher.publish(Outgoing::new(&exchange, &key, &body)).await }
        })
        .buffer_unordered(2_000);
    while let Some(result) = confirms.next().await {
        result?;
    }
    let _ = connection.close(200, "".into()).await;
    Ok(())
}

/// Publishes SMS jobs at `per_second` for `seconds` (open load, for latency).
pub async fn paced_jobs(url: &str, prefix: &str, provider: &str, per_second: u32, seconds: u64) -> anyhow::Result<()> {
    let config = broker(url, prefix);
    let connection = sendfleet_broker::connect_once(&config, "bench-paced").await?;
    let publisher = Publisher::open(&connection).await?;
    let exchange = Topology::new(&config).jobs_exchange();
    let started = tokio::time::Instant::now();
    let total = u64::from(per_second) * seconds;
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    for i in 0..total {
        let due = started + Duration::from_micros(i * 1_000_000 / u64::from(per_second.max(1)));
        tokio::time::sleep_until(due).await;
        let (publisher, exchange) = (publisher.clone(), exchange.clone());
        // Open load is the default (normal) lane, on the provider's one-word key.
        let body = encode(&bench_job(provider, i as usize, Priority::Normal));
        in_flight.push(async move { publisher.publish(Outgoing::new(&exchange, provider, &body)).await });
        while in_flight.len() > 1_000 {
            if let Some(result) = in_flight.next().await {
                result?;
            }
        }
    }
    while let Some(result) = in_flight.next().await {
        result?;
    }
    let _ = connection.close(200, "".into()).await;
    Ok(())
}

/// The mock's accepted count (cheap endpoint, for polling).
pub async fn mock_accepted(client: &reqwest::Client, mock_url: &str) -> anyhow::Result<u64> {
    let counts: serde_json::Value = client.get(format!("{mock_url}/mock/count")).send().await?.json().await?;
    Ok(counts["accepted"].as_u64().unwrap_or(0))
}

//! Putting dead letters and rejected requests back, losing nothing.
//!
//! Each chosen message is published again **with publisher confirms** (mandatory: an
//! unroutable copy is an error), and the original is acked only after the broker
//! confirmed its copy. A replay that is cancelled or killed at any point leaves every
//! message whose copy was not confirmed in the queue; one killed between a confirm and
//! its ack leaves the original too, and running the replay again publishes a second
//! copy under the **same message id**, which the worker's send claim and sent record
//! keep from being sent twice (and a replayed request plans the same ids, see
//! [`crate::entry`]).

use std::time::Duration;

use futures_util::future::join_all;
use sendfleet_broker::{
    Outgoing, Publisher, TRACE_HEADER, Topology,
    lapin::{message::Delivery, options::BasicAckOptions},
};
use sendfleet_config::Config;
use sendfleet_protocol::{SendJob, encode, now_ms};
use serde::Serialize;

use crate::{CliError, Entry, Filters, Source, entry::Republish, scan::Scan};

/// Copies in flight (awaiting their confirm) at once.
const WINDOW: usize = 64;

/// How to replay.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub limit: Option<usize>,
    pub dry_run: bool,
    pub rate: Option<u32>,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
}

/// What a replay did.
#[derive(Debug, Default, Serialize)]
pub struct ReplaySummary {
    /// The queue read.
    pub queue: String,
    /// Where copies went.
    pub published_to: String,
    /// Messages looked at.
    pub scanned: u64,
    /// Chosen by the filters.
    pub matched: u64,
    /// Published again (confirmed) and removed from the queue.
    pub replayed: u64,
    /// Chosen but not replayable (undecodable jobs); left in the queue.
    pub skipped: u64,
    /// Chosen but not confirmed by the broker (e.g. unroutable: no such provider any
    /// more); left in the queue.
    pub failed: u64,
    /// Status records reset to `replayed` (dead letters, with the status store on).
    pub status_reset: u64,
    /// `--dry-run`: nothing was published or removed.
    pub dry_run: bool,
    /// `--dry-run`: the ids that would be replayed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_replay: Vec<String>,
    /// The first error, when `failed` > 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl ReplaySummary {
    /// Whether every chosen message was replayed (or, dry, could be).
    pub fn complete(&self) -> bool {
        self.skipped == 0 && self.failed == 0
    }
}

struct Chosen {
    entry: Entry,
    delivery: Delivery,
}

/// Replays what `filters` chooses from `source`.
pub(crate) async fn run(
    config: &Config,
    source: Source,
    filters: &Filters,
    options: Options,
) -> Result<ReplaySummary, CliError> {
    let mut scan = Scan::open(config, source).await?;
    let mut summary = ReplaySummary {
        queue: source.queue(config),
        published_to: source.target(config),
        dry_run: options.dry_run,
        ..ReplaySummary::default()
    };
    let bar = progress_bar(options.progress, scan.depth);
    let result = replay_all(config, source, filters, options, &mut scan, &mut summary, &bar).await;
    bar.finish_and_clear();
    // Whatever was not acked goes back to the queue here (or when the process dies).
    scan.close().await;
    result.map(|()| summary)
}

async fn replay_all(
    config: &Config,
    source: Source,
    filters: &Filters,
    options: Options,
    scan: &mut Scan,
    summary: &mut ReplaySummary,
    bar: &indicatif::ProgressBar,
) -> Result<(), CliError> {
    let publisher = if options.dry_run { None } else { Some(Publisher::open(&scan.connection).await?) };
    let status = (source == Source::DeadLetters && config.status.enabled && !options.dry_run)
        .then(|| sendfleet_status::StatusStore::connect(config))
        .transpose()?;
    // With a rate, small windows spread the copies out instead of bursting a window.
    let window = options.rate.map_or(WINDOW, |rate| (rate as usize / 10).clamp(1, WINDOW));
    let mut pacing = options.rate.map(|rate| {
        let mut interval = tokio::time::interval(Duration::from_secs(1) / rate);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut chosen: Vec<Chosen> = Vec::with_capacity(window);
    let topology = Topology::new(&config.broker);
    while options.limit.is_none_or(|limit| summary.matched < limit as u64) {
        let Some((entry, delivery)) = scan.next().await? else { break };
        summary.scanned += 1;
        bar.inc(1);
        if !filters.matches(&entry) {
            continue;
        }
        summary.matched += 1;
        if !entry.replayable {
            summary.skipped += 1;
            continue;
        }
        if options.dry_run {
            summary.would_replay.push(entry.id.clone());
            continue;
        }
        if let Some(pacing) = pacing.as_mut() {
            pacing.tick().await;
        }
        chosen.push(Chosen { entry, delivery });
        if chosen.len() >= window
            && let Some(publisher) = &publisher
        {
            replay_window(publisher, &topology, status.as_ref(), &mut chosen, summary).await?;
            bar.set_message(format!("{} replayed", summary.replayed));
        }
    }
    if let Some(publisher) = &publisher {
        replay_window(publisher, &topology, status.as_ref(), &mut chosen, summary).await?;
    }
    Ok(())
}

/// Resets the window's status records, publishes its copies concurrently and acks each
/// original whose copy was confirmed. Unconfirmed ones stay held (handed back at the end).
async fn replay_window(
    publisher: &Publisher,
    topology: &Topology,
    status: Option<&sendfleet_status::StatusStore>,
    chosen: &mut Vec<Chosen>,
    summary: &mut ReplaySummary,
) -> Result<(), CliError> {
    if chosen.is_empty() {
        return Ok(());
    }
    // Before the copies exist: a worker's update about a copy must land after the reset.
    if let Some(status) = status {
        let ids: Vec<&str> = chosen
            .iter()
            .filter(|c| matches!(c.entry.republish, Republish::Job(_)))
            .map(|c| c.entry.id.as_str())
            .collect();
        match status.reset_for_replay(&ids, now_ms()).await {
            Ok(()) => summary.status_reset += ids.len() as u64,
            // Informational only: the replay goes on.
            Err(err) => eprintln!("status records not reset ({err}); replaying anyway"),
        }
    }
    let copies: Vec<(Vec<u8>, String, &Chosen)> =
        chosen.iter().map(|c| (copy_bytes(&c.entry.republish), routing_key(&c.entry.republish), c)).collect();
    let exchanges = (topology.jobs_exchange(), topology.requests_exchange());
    let published = join_all(copies.iter().map(|(bytes, key, chosen)| {
        let outgoing = outgoing(&exchanges, &chosen.entry, key, bytes);
        publisher.publish(outgoing)
    }))
    .await;
    for (result, chosen) in published.into_iter().zip(chosen.drain(..)) {
        match result {
            Ok(()) => {
                chosen.delivery.acker.ack(BasicAckOptions::default()).await?;
                summary.replayed += 1;
            }
            Err(err) => {
                summary.failed += 1;
                summary.first_error.get_or_insert_with(|| format!("{}: {err}", chosen.entry.id));
            }
        }
    }
    Ok(())
}

/// The bytes a replay publishes: a job with attempts and age reset, a request as it was.
fn copy_bytes(copy: &Republish) -> Vec<u8> {
    match copy {
        Republish::Job(job) => encode(&SendJob { attempts: 0, first_attempt_at_ms: None, ..(**job).clone() }),
        Republish::Request { bytes, .. } => bytes.clone(),
        Republish::Not => Vec::new(),
    }
}

/// Where a copy goes on its exchange: a job to its provider's queue of its lane.
fn routing_key(copy: &Republish) -> String {
    match copy {
        Republish::Job(job) => Topology::job_routing_key(&job.provider, job.priority),
        Republish::Request { .. } | Republish::Not => String::new(),
    }
}

fn outgoing<'a>(exchanges: &'a (String, String), entry: &'a Entry, key: &'a str, bytes: &'a [u8]) -> Outgoing<'a> {
    let mut outgoing = match &entry.republish {
        Republish::Job(job) => Outgoing::new(&exchanges.0, key, bytes).message_id(&job.message_id),
        Republish::Request { message_id, timestamp, .. } => {
            let mut outgoing = Outgoing::new(&exchanges.1, "", bytes);
            if let Some(id) = message_id {
                outgoing = outgoing.message_id(id);
            }
            if let Some(seconds) = timestamp {
                outgoing = outgoing.timestamp(*seconds);
            }
            outgoing
        }
        Republish::Not => Outgoing::new(&exchanges.0, "", bytes),
    };
    if let Some(trace) = &entry.trace_id {
        outgoing = outgoing.header(TRACE_HEADER, trace.clone());
    }
    outgoing
}

fn progress_bar(show: bool, depth: u32) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(u64::from(depth));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} scanned, {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

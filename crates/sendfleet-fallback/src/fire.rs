//! Firing and disarming: what the worker and callback-ingest call.

use std::time::Duration;

use metrics::counter;
use sendfleet_broker::{Publisher, Topology};
use sendfleet_config::Config;
use sendfleet_failpoints::Point;
use sendfleet_protocol::{Channel, Event, EventKind, SendJob, now_ms};
use sendfleet_telemetry::metrics::FALLBACKS_TOTAL;

use crate::{
    FallbackError, FallbackReason, FallbackStore, ReportAction, classify_report,
    store::{ArmState, Settled, Taken},
};

/// How long a claim is exclusive (see [`Fallbacks::with_claim_timeout`]): long enough for
/// a confirmed publish under load, short enough that a crashed claimer's SMS goes out
/// on the provider's next callback retry or the job's next redelivery.
pub const DEFAULT_CLAIM_TIMEOUT: Duration = Duration::from_secs(30);

/// What a fire did.
#[derive(Debug, Clone, PartialEq)]
pub enum FireOutcome {
    /// This caller published the SMS job (and the `fallback_triggered` event), both
    /// confirmed by the broker.
    Published(Box<SendJob>),
    /// Another trigger holds the claim and is publishing the SMS (or died doing so):
    /// **not settled**. Nothing was published by this call; try again after
    /// `retry_after` (when the claim's deadline passes and it can be taken over).
    /// callback-ingest answers 503 so the provider retries; the worker parks the job.
    InProgress {
        /// Time left until the other claim's deadline.
        retry_after: Duration,
    },
    /// Another trigger fired it before: nothing published.
    AlreadyFired,
    /// The RCS message was delivered or seen before: nothing published.
    Disarmed,
    /// No fallback was armed for this message (none requested, or it expired).
    NotArmed,
}

/// The fallback service of one process: the Redis store plus where to publish.
#[derive(Clone)]
pub struct Fallbacks {
    store: FallbackStore,
    topology: Topology,
    claim_timeout: Duration,
}

impl Fallbacks {
    /// Fallbacks on an existing Redis pool (the worker's).
    pub fn new(pool: sendfleet_redis::RedisPool, config: &Config) -> Fallbacks {
        Fallbacks {
            store: FallbackStore::new(pool, &config.redis.key_prefix),
            topology: Topology::new(&config.broker),
            claim_timeout: DEFAULT_CLAIM_TIMEOUT,
        }
    }

    /// Fallbacks with a pool of their own (callback-ingest). Connections are opened on
    /// first use, so this fails only on a Redis URL that cannot be parsed.
    pub fn connect(config: &Config) -> Result<Fallbacks, FallbackError> {
        let pool =
            sendfleet_redis::RedisPool::new(&config.redis, 32).map_err(|e| FallbackError::Store(e.to_string()))?;
        Ok(Fallbacks::new(pool, config))
    }

    /// The same fallbacks with another claim timeout (default [`DEFAULT_CLAIM_TIMEOUT`]):
    /// how long a trigger's claim keeps others out before they may take it over. The
    /// SMS publish is given up after half of it, so a live claimer finishes (or
    /// releases) well before anyone takes over. Every process of a fleet should use the
    /// same value; tests shorten it.
    pub fn with_claim_timeout(mut self, timeout: Duration) -> Fallbacks {
        self.claim_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// The store (arming, disarming).
    pub fn store(&self) -> &FallbackStore {
        &self.store
    }

    /// Arms `sms` for the RCS message `message_id` (see [`FallbackStore::arm`]).
    pub async fn arm(&self, message_id: &str, sms: &SendJob, ttl: Duration) -> Result<ArmState, FallbackError> {
        self.store.arm(message_id, sms, ttl).await
    }

    /// Fires the fallback of RCS message `message_id` (of RCS provider `rcs_provider`),
    /// in two phases so no crash, lost reply or cancellation loses the SMS:
    ///
    /// 1. **claim** it with a deadline (exactly one caller fleet-wide gets it; the job
    ///    stays in Redis; a claim past its deadline is taken over);
    /// 2. publish the SMS job to the SMS provider's queue and a `fallback_triggered`
    ///    event, both **confirmed** by the broker;
    /// 3. **mark** it fired (compare-and-set on our claim).
    ///
    /// If the publish is not confirmed the claim is released and the error returned, so
    /// the caller fails and its trigger comes again. If this future is dropped, or the
    /// process dies, anywhere in between, the claim lapses at its deadline and the next
    /// trigger fires it. That may publish the SMS job a second time (the first publish
    /// may have reached the queue unconfirmed, or have been confirmed just before the
    /// crash); both copies carry the deterministic message id `<rcs id>.sms`, and the
    /// worker checks every job's sent record before sending, so the SMS is sent once.
    pub async fn fire(
        &self,
        publisher: &Publisher,
        message_id: &str,
        rcs_provider: &str,
        reason: FallbackReason,
        detail: &str,
    ) -> Result<FireOutcome, FallbackError> {
        let claim = match self.store.claim(message_id, self.claim_timeout).await? {
            Taken::Claimed(claim) => claim,
            Taken::InProgress { retry_after } => return Ok(FireOutcome::InProgress { retry_after }),
            Taken::AlreadyFired => return Ok(FireOutcome::AlreadyFired),
            Taken::Disarmed => return Ok(FireOutcome::Disarmed),
            Taken::NotArmed => return Ok(FireOutcome::NotArmed),
        };
        if claim.reclaimed {
            tracing::info!(message_id, "SMS fallback claim lapsed unfinished; firing it again");
        }
        // An injected error here is a lost claim reply: the claim stays until its deadline.
        sendfleet_failpoints::hit(Point::FallbackTaken).await?;
        let mut job = claim.job;
        job.created_at_ms = now_ms();
        let event = triggered_event(&job, message_id, rcs_provider, reason, detail);
        // Bounded well inside the claim, so a live claimer settles before anyone may take over.
        let published = match tokio::time::timeout(self.claim_timeout / 2, self.publish(publisher, &job, &event)).await
        {
            Ok(result) => result,
            Err(_) => Err(FallbackError::ConfirmTimeout(self.claim_timeout / 2)),
        };
        // An injected error here is a confirm lost after the broker enqueued the job.
        let published = match published {
            Ok(()) => sendfleet_failpoints::hit(Point::FallbackPublished).await.map_err(FallbackError::from),
            Err(err) => Err(err),
        };
        if let Err(err) = published {
            // Not confirmed: give the claim back so the next trigger (the provider
            // retrying the callback, the broker redelivering the job) fires it at once.
            match self.store.release(message_id, &claim.token).await {
                Ok(Settled::Done) => {}
                Ok(found) => tracing::info!(message_id, ?found, "SMS fallback claim was no longer ours to release"),
                Err(release) => {
                    tracing::warn!(message_id, error = %release, "SMS fallback claim not released; it lapses at its deadline");
                }
            }
            return Err(err);
        }
        counter!(FALLBACKS_TOTAL, "provider" => rcs_provider.to_owned(), "reason" => reason.as_str()).increment(1);
        tracing::debug!(message_id, reason = reason.as_str(), sms_provider = %job.provider, "SMS fallback published");
        // The SMS is confirmed, so the outcome is Published whatever marking says: if the
        // mark is lost the claim lapses and a later trigger may publish the same job id
        // again, which the worker's sent record suppresses.
        match self.store.mark_fired(message_id, &claim.token).await {
            Ok(Settled::Done) => {}
            Ok(found) => tracing::info!(message_id, ?found, "SMS fallback published, but the claim was no longer ours"),
            Err(err) => {
                tracing::warn!(message_id, error = %err, "SMS fallback published but not marked fired; its claim lapses");
            }
        }
        // An injected error here is a lost mark reply: handled as above.
        if let Err(err) = sendfleet_failpoints::hit(Point::FallbackMarked).await {
            tracing::warn!(message_id, error = %err, "SMS fallback published but not marked fired; its claim lapses");
        }
        Ok(FireOutcome::Published(job))
    }

    async fn publish(&self, publisher: &Publisher, job: &SendJob, event: &Event) -> Result<(), FallbackError> {
        let (job_result, event_result) = futures_util::future::join(
            publisher.publish_job(&self.topology, job),
            publisher.publish_event(&self.topology, event),
        )
        .await;
        job_result.and(event_result).map_err(FallbackError::from)
    }

    /// Acts on one report: fires on a failure the table says falls back, disarms on
    /// delivered/seen, ignores the rest. Call before answering the callback 2xx; an
    /// error means "answer 503" so the provider retries, including
    /// [`FallbackError::InProgress`] (another trigger's claim is not settled yet).
    pub async fn on_report(&self, publisher: Option<&Publisher>, event: &Event) -> Result<(), FallbackError> {
        let Some(message_id) = event.message_id.as_deref() else { return Ok(()) };
        match classify_report(event) {
            ReportAction::Ignore => Ok(()),
            ReportAction::Disarm(why) => {
                if self.store.disarm(message_id).await? {
                    tracing::debug!(message_id, why, "SMS fallback disarmed");
                }
                Ok(())
            }
            ReportAction::Fire(reason) => {
                let publisher = publisher.ok_or(FallbackError::NotConnected)?;
                let detail = report_detail(event);
                match self.fire(publisher, message_id, &event.provider, reason, &detail).await? {
                    FireOutcome::InProgress { retry_after } => {
                        Err(FallbackError::InProgress { message_id: message_id.to_owned(), retry_after })
                    }
                    FireOutcome::Published(_)
                    | FireOutcome::AlreadyFired
                    | FireOutcome::Disarmed
                    | FireOutcome::NotArmed => Ok(()),
                }
            }
        }
    }

    /// [`Fallbacks::on_report`] for every event of a callback, concurrently. Every report
    /// runs to completion, whatever its siblings do: a sibling's error must not cancel a
    /// fire halfway. Then the first error is returned (a hard one before "in progress",
    /// so the caller's answer names the real problem).
    pub async fn on_reports(&self, publisher: Option<&Publisher>, events: &[Event]) -> Result<(), FallbackError> {
        let results = futures_util::future::join_all(events.iter().map(|event| self.on_report(publisher, event))).await;
        let mut in_progress = None;
        for result in results {
            match result {
                Ok(()) => {}
                Err(err @ FallbackError::InProgress { .. }) => {
                    // The longest wait, so the provider's retry finds every claim lapsed or done.
                    if in_progress.as_ref().is_none_or(|held: &FallbackError| held.retry_after() < err.retry_after()) {
                        in_progress = Some(err);
                    }
                }
                Err(err) => return Err(err),
            }
        }
        in_progress.map_or(Ok(()), Err)
    }
}

/// "delivery report: UNDELIVERABLE_REJECTED_OPERATOR / EC_UNKNOWN_USER (7002)".
fn report_detail(event: &Event) -> String {
    let status = event.status.as_ref().and_then(|s| s.name.clone()).unwrap_or_else(|| "no status".into());
    match &event.error {
        Some(error) => {
            format!("delivery report: {status} / {} ({})", error.name.as_deref().unwrap_or("error"), error.id)
        }
        None => format!("delivery report: {status}"),
    }
}

fn triggered_event(job: &SendJob, message_id: &str, rcs_provider: &str, reason: FallbackReason, detail: &str) -> Event {
    let mut event = Event::new(EventKind::FallbackTriggered, rcs_provider, Channel::Rcs);
    // One per RCS message: a repeat after a crash carries the same id.
    event.event_id = Event::outcome_id(message_id, EventKind::FallbackTriggered);
    event.message_id = Some(message_id.to_owned());
    event.to = Some(job.to.clone());
    event.reason = Some(format!("{}: {detail}", reason.as_str()));
    event.details.insert("reason_code".into(), reason.as_str().into());
    event.details.insert("fallback_provider".into(), job.provider.clone());
    event.details.insert("fallback_message_id".into(), job.message_id.clone());
    event.metadata = job.metadata.clone();
    event.trace_id = Some(job.trace_id.clone());
    event
}

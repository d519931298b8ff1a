//! Firing and disarming: what the worker and callback-ingest call.

use std::time::Duration;

use metrics::counter;
use sendfleet_broker::{Outgoing, Publisher, TRACE_HEADER, Topology};
use sendfleet_config::Config;
use sendfleet_protocol::{Channel, Event, EventKind, SendJob, encode, now_ms};
use sendfleet_telemetry::metrics::FALLBACKS_TOTAL;

use crate::{
    FallbackError, FallbackReason, FallbackStore, ReportAction, classify_report,
    store::{ArmState, Taken},
};

/// What a fire did.
#[derive(Debug, Clone, PartialEq)]
pub enum FireOutcome {
    /// This caller published the SMS job (and the `fallback_triggered` event).
    Published(Box<SendJob>),
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
    restore_ttl: Duration,
}

impl Fallbacks {
    /// Fallbacks on an existing Redis pool (the worker's).
    pub fn new(pool: deadpool_redis::Pool, config: &Config) -> Fallbacks {
        Fallbacks {
            store: FallbackStore::new(pool, &config.redis.key_prefix),
            topology: Topology::new(&config.broker),
            restore_ttl: Duration::from_secs(config.worker.fallback_ttl_margin_seconds.max(60)),
        }
    }

    /// Fallbacks with a pool of their own (callback-ingest). Connections are opened on
    /// first use, so this fails only on a Redis URL that cannot be parsed.
    pub fn connect(config: &Config) -> Result<Fallbacks, FallbackError> {
        let mut pool_config = deadpool_redis::Config::from_url(config.redis.url.expose());
        pool_config.pool = Some(deadpool_redis::PoolConfig::new(32));
        let pool = pool_config
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map_err(|e| FallbackError::Store(format!("{e} ({})", config.redis.url)))?;
        Ok(Fallbacks::new(pool, config))
    }

    /// The store (arming, disarming).
    pub fn store(&self) -> &FallbackStore {
        &self.store
    }

    /// Arms `sms` for the RCS message `message_id` (see [`FallbackStore::arm`]).
    pub async fn arm(&self, message_id: &str, sms: &SendJob, ttl: Duration) -> Result<ArmState, FallbackError> {
        self.store.arm(message_id, sms, ttl).await
    }

    /// Fires the fallback of RCS message `message_id` (of RCS provider `rcs_provider`):
    /// takes it (exactly one caller fleet-wide gets it), publishes the SMS job to the
    /// SMS provider's queue and a `fallback_triggered` event, both with confirms. If
    /// either is not confirmed the job is put back and the error returned, so the
    /// caller fails and its trigger comes again.
    pub async fn fire(
        &self,
        publisher: &Publisher,
        message_id: &str,
        rcs_provider: &str,
        reason: FallbackReason,
        detail: &str,
    ) -> Result<FireOutcome, FallbackError> {
        let mut job = match self.store.take(message_id).await? {
            Taken::Job(job) => job,
            Taken::AlreadyFired => return Ok(FireOutcome::AlreadyFired),
            Taken::Disarmed => return Ok(FireOutcome::Disarmed),
            Taken::NotArmed => return Ok(FireOutcome::NotArmed),
        };
        job.created_at_ms = now_ms();
        let event = triggered_event(&job, message_id, rcs_provider, reason, detail);
        match self.publish(publisher, &job, &event).await {
            Ok(()) => {
                counter!(FALLBACKS_TOTAL, "provider" => rcs_provider.to_owned(), "reason" => reason.as_str())
                    .increment(1);
                tracing::debug!(message_id, reason = reason.as_str(), sms_provider = %job.provider, "SMS fallback published");
                Ok(FireOutcome::Published(job))
            }
            Err(err) => {
                // Not confirmed: put it back so the next trigger (the provider retrying
                // the callback, the broker redelivering the job) fires it.
                if let Err(restore) = self.store.restore(message_id, &job, self.restore_ttl).await {
                    tracing::error!(message_id, error = %restore, "SMS fallback taken but neither published nor restored");
                }
                Err(err)
            }
        }
    }

    async fn publish(&self, publisher: &Publisher, job: &SendJob, event: &Event) -> Result<(), FallbackError> {
        let job_bytes = encode(job);
        let event_bytes = encode(event);
        let jobs = self.topology.jobs_exchange();
        let events = self.topology.events_exchange();
        let job_key = Topology::job_routing_key(&job.provider);
        let event_key = event.routing_key();
        let outgoing_job = Outgoing::new(&jobs, &job_key, &job_bytes)
            .message_id(&job.message_id)
            .header(TRACE_HEADER, job.trace_id.clone());
        let outgoing_event = Outgoing::new(&events, &event_key, &event_bytes).optional();
        let (job_result, event_result) =
            futures_util::future::join(publisher.publish(outgoing_job), publisher.publish(outgoing_event)).await;
        job_result.and(event_result).map_err(FallbackError::from)
    }

    /// Acts on one report: fires on a failure the table says falls back, disarms on
    /// delivered/seen, ignores the rest. Call before answering the callback 2xx; an
    /// error means "answer 503" so the provider retries.
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
                self.fire(publisher, message_id, &event.provider, reason, &detail).await.map(|_| ())
            }
        }
    }

    /// [`Fallbacks::on_report`] for every event of a callback, concurrently.
    pub async fn on_reports(&self, publisher: Option<&Publisher>, events: &[Event]) -> Result<(), FallbackError> {
        futures_util::future::try_join_all(events.iter().map(|event| self.on_report(publisher, event))).await?;
        Ok(())
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

//! One job, from delivery to ack.

use std::{sync::Arc, time::Instant};

use sendfleet_broker::{BrokerError, Inbound, Publisher, Topology};
use sendfleet_config::{Config, FallbackMode};
use sendfleet_failpoints::Point;
use sendfleet_fallback::{ArmState, FallbackReason, Fallbacks, FireOutcome, fallback_job, fallback_ttl};
use sendfleet_protocol::{Channel, Event, EventKind, SendJob, decode, now_ms};
use sendfleet_providers::{Capability, SendOutcome, TransientCode};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    ProviderRuntime, metrics,
    outcome::{Next, ReasonCode, decide},
    pause::Pass,
    sent::{Claim, ClaimToken},
};

/// What every job of a broker session shares.
pub(crate) struct SessionContext {
    pub event_metrics: metrics::EventMetrics,
    pub sent: crate::sent::SentLog,
    pub fallbacks: Fallbacks,
    /// Status records: every event published, and fired fallbacks (never waited for).
    pub status: sendfleet_status::StatusWriter,
    pub config: Arc<Config>,
    pub topology: Topology,
    pub publisher: Publisher,
}

/// Handles one delivery. Never panics; on any broker failure the job is left for the
/// broker to redeliver (requeued if the channel still lives).
pub(crate) async fn handle(ctx: Arc<SessionContext>, provider: Arc<ProviderRuntime>, inbound: Inbound) {
    let job: SendJob = match decode(inbound.data()) {
        Ok(job) => job,
        Err(err) => {
            tracing::warn!(provider = provider.id(), reason = %err, "undecodable job; dead-lettering");
            metrics::dead_lettered(provider.id(), err.label());
            let dead = ctx.topology.dead_exchange();
            let reason = err.to_string();
            if let Err(broker) =
                Box::pin(inbound.dead_letter(&ctx.publisher, &dead, Topology::dead_letter_key(), err.label(), &reason))
                    .await
            {
                tracing::warn!(error = %broker, "could not dead-letter; the broker will redeliver");
            }
            return;
        }
    };
    // At INFO so every log line about the message carries its trace id (OPERATIONS.md);
    // its cost is inside the bench figures (PERFORMANCE.md).
    let span = tracing::info_span!("job", message_id = %job.message_id, provider = provider.id(), trace_id = %job.trace_id, attempt = job.attempts + 1);
    process(ctx, provider, inbound, job).instrument(span).await;
}

// Each stage is boxed: a worker holds up to its prefetch (2 × concurrency) of these
// futures at once, most of them waiting for a permit, and unboxed the whole state
// machine (~16 KiB) would be held by each one (~16 MiB at a prefetch of 1,024).
async fn process(ctx: Arc<SessionContext>, provider: Arc<ProviderRuntime>, inbound: Inbound, job: SendJob) {
    provider.metrics.queue_lag(job.created_at_ms);
    let next = match Box::pin(already_sent(&ctx, &inbound, &job)).await {
        Some(next) => next,
        None => match Box::pin(prepare_rcs(&ctx, &provider, &job)).await {
            Some(next) => next,
            None => match Box::pin(send(&ctx, &provider, &inbound, &job)).await {
                Sent::Decided(next) => next,
                Sent::HoldExpired => {
                    // Held past the pause limit: back to the queue, untouched.
                    drop(Box::pin(inbound.requeue()).await);
                    return;
                }
                Sent::Abandoned => {
                    // The session is gone (the broker redelivers the job, maybe elsewhere)
                    // or the answer was lost: settle nothing. Dropped, the delivery is
                    // requeued if its channel still lives.
                    tracing::info!(message_id = %job.message_id, "job abandoned before it was settled; the broker redelivers it");
                    return;
                }
            },
        },
    };
    tracing::debug!(next = ?next, "send finished");
    if let Err(err) = Box::pin(settle(&ctx, &provider, inbound, &job, next)).await {
        tracing::warn!(message_id = %job.message_id, trace_id = %job.trace_id, error = %err, "could not settle job; it will be redelivered");
    }
}

/// A job that may have been sent before (redelivered, or retried after an unknown
/// outcome) is looked up in the sent record first. `Some` when it must not be sent.
async fn already_sent(ctx: &SessionContext, inbound: &Inbound, job: &SendJob) -> Option<Next> {
    if !inbound.redelivered() && job.attempts == 0 {
        return None;
    }
    match ctx.sent.was_sent(&job.message_id).await {
        Ok(true) => {
            tracing::info!(message_id = %job.message_id, trace_id = %job.trace_id, "already accepted by the provider; not sending again");
            metrics::duplicate_suppressed(&job.provider);
            Some(Next::Accepted { status: None, duplicate: true })
        }
        Ok(false) => None,
        // Unknown: sending could duplicate. Park it in a retry tier instead.
        Err(err) => Some(Next::Defer { code: ReasonCode::SentStoreUnavailable, reason: err.to_string() }),
    }
}

/// Before an RCS request: resolves the fleet-managed SMS fallback, checks capability
/// (when the provider does) and arms the fallback, so a report arriving however fast
/// finds it. `Some` when no RCS request is to be made.
async fn prepare_rcs(ctx: &SessionContext, provider: &ProviderRuntime, job: &SendJob) -> Option<Next> {
    if job.channel != Channel::Rcs {
        return None;
    }
    let sms = match fallback_job(&ctx.config, job) {
        Ok(sms) => sms,
        Err(err) => {
            return Some(Next::Failed {
                code: ReasonCode::InvalidFallback,
                reason: err.to_string(),
                status: None,
                error: None,
                dead_letter: true,
            });
        }
    };
    // With the provider's own smsFailover a negative check changes nothing: the
    // provider falls back by itself, so the throttled check is not spent.
    let provider_failover = provider.adapter.config().fallback_mode == FallbackMode::Provider && job.fallback.is_some();
    let capability = match &provider.capability {
        Some(checker) if !provider_failover => checker.lookup(&job.sender, &job.to).await,
        _ => Capability::Unknown,
    };
    if capability == Capability::InvalidNumber {
        return Some(Next::Failed {
            code: ReasonCode::InvalidDestination,
            reason: "the provider's capability check says the number is invalid".into(),
            status: None,
            error: None,
            dead_letter: false,
        });
    }
    let not_capable = capability == Capability::NotCapable;
    let Some(sms) = sms else {
        return not_capable.then(|| Next::Failed {
            code: ReasonCode::NotRcsCapable,
            reason: "the capability check says the number cannot receive RCS, and the request has no SMS fallback"
                .into(),
            status: None,
            error: None,
            dead_letter: false,
        });
    };
    match ctx.fallbacks.arm(&job.message_id, &sms, fallback_ttl(&ctx.config, job)).await {
        Ok(ArmState::Armed) if not_capable => Some(Next::FallBack {
            reason: FallbackReason::NotCapable,
            detail: "capability check: not RCS capable".into(),
        }),
        Ok(ArmState::Armed) => None,
        // Fired by an earlier delivery of this job or by a report: never twice, and no
        // RCS request either.
        Ok(ArmState::AlreadyFired) => {
            Some(Next::FallBack { reason: FallbackReason::NotCapable, detail: "already fired".into() })
        }
        Ok(ArmState::Disarmed) => Some(Next::Accepted { status: None, duplicate: true }),
        // A trigger claimed the fallback and has not settled it (or died doing so): no
        // RCS request. Firing takes over a lapsed claim, and parks the job while the
        // claim is live (`FireOutcome::InProgress`), so it is not settled until fired.
        Ok(ArmState::InProgress) => {
            Some(Next::FallBack { reason: FallbackReason::NotCapable, detail: "fallback in progress".into() })
        }
        // Without the armed fallback a failure report could not send the SMS.
        Err(err) => Some(Next::Defer { code: ReasonCode::FallbackStoreUnavailable, reason: err.to_string() }),
    }
}

/// The fallback a failed RCS send fires, by the failure's code; `None` when the failure
/// is not the RCS channel's (bad fallback, invalid number, not capable without one).
fn failure_fallback(job: &SendJob, ctx: &SessionContext, code: ReasonCode) -> Option<FallbackReason> {
    if job.channel != Channel::Rcs || job.fallback.is_none() {
        return None;
    }
    if ctx.config.provider(&job.provider).is_some_and(|p| p.fallback_mode == FallbackMode::Provider) {
        return None;
    }
    match code {
        ReasonCode::InvalidFallback | ReasonCode::InvalidDestination | ReasonCode::NotRcsCapable => None,
        ReasonCode::RetriesExhausted | ReasonCode::MaxAge => Some(FallbackReason::RetriesExhausted),
        _ => Some(FallbackReason::SendRejected),
    }
}

/// Fires the job's fallback; `Err` (after the store released its claim) when not confirmed.
async fn fire(
    ctx: &SessionContext,
    job: &SendJob,
    reason: FallbackReason,
    detail: &str,
) -> Result<FireOutcome, sendfleet_broker::BrokerError> {
    match ctx.fallbacks.fire(&ctx.publisher, &job.message_id, &job.provider, reason, detail).await {
        Ok(outcome) => {
            if let FireOutcome::Published(sms) = &outcome {
                ctx.event_metrics.published(EventKind::FallbackTriggered);
                ctx.status.record(sendfleet_status::StatusUpdate::fallback_triggered(
                    job,
                    sms,
                    reason.as_str(),
                    now_ms(),
                ));
            }
            Ok(outcome)
        }
        Err(sendfleet_fallback::FallbackError::Broker(err)) => Err(err),
        Err(other) => {
            // Redis failed: the job goes back to the queue and comes here again.
            tracing::warn!(message_id = %job.message_id, error = %other, "SMS fallback not fired; the job will be redelivered");
            Err(sendfleet_broker::BrokerError::ConnectionLost)
        }
    }
}

/// How a send ended.
enum Sent {
    /// What follows, decided.
    Decided(Next),
    /// Held by a paused provider for too long: requeue untouched.
    HoldExpired,
    /// Stopped before it could be settled (session lost, answer lost): leave it to the broker.
    Abandoned,
}

/// Sends through the pause gate, the concurrency limit, the message's claim and the
/// rate, and decides what follows. Every wait ends early if the broker session is lost:
/// the broker redelivers the job, so this task must not send it too.
async fn send(ctx: &SessionContext, provider: &ProviderRuntime, inbound: &Inbound, job: &SendJob) -> Sent {
    let id = provider.id();
    let (outcome, claim) = loop {
        let pass = tokio::select! {
            pass = provider.pause.pass() => pass,
            () = inbound.session_lost() => return Sent::Abandoned,
        };
        if matches!(pass, Pass::HoldExpired) {
            return Sent::HoldExpired;
        }
        // The claim is asked for while the task waits for its concurrency permit, so its
        // round trip is not spent holding a permit (measured: with the claim after the
        // permit the uncapped worker ran at 0.81 of the bare loop, see PERFORMANCE.md).
        // The permit comes before the rate slot: a slot is only taken by a task that can
        // use it at once, so leased slots are not wasted.
        let claimed_at = Instant::now();
        let (permit, claim) = tokio::join!(
            async {
                tokio::select! {
                    permit = provider.jobs(job.priority).acquire() => Some(permit),
                    () = inbound.session_lost() => None,
                }
            },
            ctx.sent.claim(&job.message_id, provider.claim_ttl)
        );
        let claim = match claim {
            Ok(Claim::Mine(claim)) => claim,
            Ok(Claim::AlreadySent) => {
                tracing::info!(message_id = %job.message_id, trace_id = %job.trace_id, "already accepted by the provider; not sending again");
                metrics::duplicate_suppressed(&job.provider);
                return Sent::Decided(Next::Accepted { status: None, duplicate: true });
            }
            Ok(Claim::HeldElsewhere) => {
                return Sent::Decided(Next::Defer {
                    code: ReasonCode::SendInProgress,
                    reason: "another delivery of this message is being sent now".into(),
                });
            }
            Err(err) => {
                return Sent::Decided(Next::Defer { code: ReasonCode::SentStoreUnavailable, reason: err.to_string() });
            }
        };
        let Some(permit) = permit else {
            release(ctx, job, claim).await;
            return Sent::Abandoned;
        };
        // A long wait for the permit ate into the claim's life: renew it before the
        // send, or give up if it lapsed and is someone else's now.
        if claimed_at.elapsed() > provider.claim_ttl / 4 {
            match ctx.sent.renew(&job.message_id, &claim, provider.claim_ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    return Sent::Decided(Next::Defer {
                        code: ReasonCode::SendInProgress,
                        reason: "the send claim lapsed while waiting for a concurrency permit".into(),
                    });
                }
                Err(err) => {
                    release(ctx, job, claim).await;
                    return Sent::Decided(Next::Defer {
                        code: ReasonCode::SentStoreUnavailable,
                        reason: err.to_string(),
                    });
                }
            }
        }
        let outcome = match Box::pin(attempt(provider, job, inbound.session())).await {
            Attempt::Answered(outcome) => outcome,
            Attempt::SessionLost => {
                release(ctx, job, claim).await;
                return Sent::Abandoned;
            }
            Attempt::NoSlot(reason) => {
                // Never sent without a slot, and no attempt counted for it.
                release(ctx, job, claim).await;
                return Sent::Decided(Next::Defer {
                    code: ReasonCode::Transient(TransientCode::RateStoreUnavailable),
                    reason,
                });
            }
        };
        drop(permit);
        if sendfleet_failpoints::hit(Point::WorkerProviderAnswered).await.is_err() {
            // As if the answer had been lost: the claim stays until it expires, since
            // the provider may have accepted the message.
            return Sent::Abandoned;
        }
        match &outcome {
            SendOutcome::AuthFailure { reason, .. } => {
                // Not the job's fault: hold it, pause the provider, probe, resume.
                release(ctx, job, claim).await;
                provider.pause.pause(id, reason);
                continue;
            }
            SendOutcome::Transient { code, .. } if code.is_provider_pressure() => {
                // The provider is under pressure whatever the lane.
                provider.concurrency.iter().for_each(sendfleet_limits::ConcurrencyLimit::on_overload);
            }
            SendOutcome::Accepted { .. } | SendOutcome::Rejected { .. } => provider.jobs(job.priority).on_success(),
            SendOutcome::Transient { .. } => {}
        }
        if matches!(pass, Pass::Probe) {
            provider.pause.resume(id);
        }
        break (outcome, claim);
    };
    if matches!(outcome, SendOutcome::Accepted { .. }) {
        let recorded = match ctx.sent.record(&job.message_id).await {
            Ok(()) => sendfleet_failpoints::hit(Point::WorkerSentRecorded).await.map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        if let Err(err) = recorded {
            // Sent and accepted: the outcome stands. The claim still guards the id until
            // it expires; only a redelivery after that could repeat the send.
            tracing::warn!(message_id = %job.message_id, error = %err, "could not record the sent message");
        }
    } else {
        release(ctx, job, claim).await;
    }
    let config = provider.adapter.config();
    Sent::Decided(decide(outcome, job, &config.retry, &provider.backoff, now_ms(), rand::random::<f64>()))
}

/// Gives the message's claim back: nothing was sent, or the provider did not take it.
async fn release(ctx: &SessionContext, job: &SendJob, claim: ClaimToken) {
    if let Err(err) = ctx.sent.release(&job.message_id, claim).await {
        // The claim then runs out by itself.
        tracing::debug!(message_id = %job.message_id, error = %err, "could not release the send claim");
    }
}

/// How an attempt ended.
#[derive(Debug, PartialEq)]
enum Attempt {
    /// The provider (or its token endpoint) answered, or no answer came in time.
    Answered(SendOutcome),
    /// No rate slot could be had (the store is unreachable): nothing was sent.
    NoSlot(String),
    /// The broker session was lost while waiting for the slot: nothing was sent.
    SessionLost,
}

/// One request within the rate: gets the adapter ready, waits for a slot, sends,
/// records the metrics. `session` ends the wait for the slot when it is lost.
async fn attempt(provider: &ProviderRuntime, job: &SendJob, session: Option<&CancellationToken>) -> Attempt {
    // Before the slot: a task that took its slot and then queued on a token fetch would
    // send late, all at once with the other waiters, above the cap. The fetch itself
    // takes a slot of its own through the adapter's gate (the same limiter).
    let preparing = Instant::now();
    if let Err(outcome) = provider.adapter.prepare().await {
        return match outcome {
            SendOutcome::Transient { code: TransientCode::RateStoreUnavailable, reason, .. } => Attempt::NoSlot(reason),
            outcome => {
                // The token endpoint answered: counted like a send's answer.
                provider.metrics.request(outcome.label(), preparing.elapsed());
                Attempt::Answered(outcome)
            }
        };
    }
    let waiting = Instant::now();
    // The slot first, then the request's permit (the provider's concurrency, fleet-wide):
    // a permit covers the request alone, since a permit held while waiting for a slot is
    // a request the provider could have had. A slot must be used within its lateness
    // bound (later, sends would bunch above the rate): when the permit takes longer, the
    // slot is left unused and a fresh one taken after the permit.
    let _request = loop {
        // The lane's turn first (high jobs take the next slot), held only while the slot
        // is taken; a rated sender's slot is good for its rate and the provider's.
        let slot = tokio::select! {
            slot = crate::rate::take_slot(provider, job) => slot,
            () = session_lost(session) => return Attempt::SessionLost,
        };
        if let Err(err) = slot {
            return Attempt::NoSlot(err.to_string());
        }
        let permit = tokio::select! {
            permit = provider.requests.acquire_within(provider.rate.stale_after()) => permit,
            () = session_lost(session) => return Attempt::SessionLost,
        };
        match permit {
            Some(permit) => break permit,
            None if !provider.requests.is_short() => {
                tracing::debug!(provider = %job.provider, "slot went stale waiting for a request permit; taking a fresh one")
            }
            None => {
                // The provider's concurrency binds (the fleet gives this worker fewer
                // permits than it asks for), so the rate has room: wait for the permit
                // first and take a fresh slot holding it, which comes at once. Going
                // back to the slot queue instead leaves permits idle whenever this
                // worker's tasks are all between slots (91 % instead of 86 % of C ÷ L in
                // the fleet-concurrency bench). While the rate binds, a worker is not
                // short of permits, and none is held waiting for a slot.
                tracing::debug!(provider = %job.provider, "slot went stale waiting for a request permit; permit first");
                let permit = tokio::select! {
                    permit = provider.requests.acquire() => permit,
                    () = session_lost(session) => return Attempt::SessionLost,
                };
                let slot = tokio::select! {
                    slot = crate::rate::take_slot(provider, job) => slot,
                    () = session_lost(session) => return Attempt::SessionLost,
                };
                if let Err(err) = slot {
                    return Attempt::NoSlot(err.to_string());
                }
                break permit;
            }
        }
    };
    provider.metrics.rate_wait(waiting.elapsed());
    if session.is_some_and(CancellationToken::is_cancelled) {
        return Attempt::SessionLost;
    }
    provider.metrics.inflight(1.0);
    let started = Instant::now();
    let outcome = provider.adapter.send(job).await;
    provider.metrics.inflight(-1.0);
    provider.metrics.request(outcome.label(), started.elapsed());
    match outcome {
        // The adapter's own extra request (a resend after a 401, a token refresh)
        // found no slot: nothing was accepted.
        SendOutcome::Transient { code: TransientCode::RateStoreUnavailable, reason, .. } => Attempt::NoSlot(reason),
        outcome => Attempt::Answered(outcome),
    }
}

/// Resolves when the session is lost (never without one).
async fn session_lost(session: Option<&CancellationToken>) {
    match session {
        Some(lost) => lost.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Publishes the consequences of `next` with confirms, then acks. If a publish fails
/// the job is requeued (when its channel still lives) and nothing is acked.
async fn settle(
    ctx: &SessionContext,
    provider: &ProviderRuntime,
    inbound: Inbound,
    job: &SendJob,
    next: Next,
) -> Result<(), sendfleet_broker::BrokerError> {
    let published = match publish_consequences(ctx, provider, job, next).await {
        Ok(()) => sendfleet_failpoints::hit(Point::WorkerConsequencesConfirmed).await.map_err(BrokerError::from),
        Err(err) => Err(err),
    };
    match published {
        Ok(()) => {
            sendfleet_failpoints::hit(Point::WorkerBeforeAck).await?;
            inbound.ack().await
        }
        Err(err) => {
            // Best effort: on a dead channel the broker requeues by itself.
            drop(inbound.requeue().await);
            Err(err)
        }
    }
}

async fn publish_consequences(
    ctx: &SessionContext,
    provider: &ProviderRuntime,
    job: &SendJob,
    next: Next,
) -> Result<(), sendfleet_broker::BrokerError> {
    let attempt = job.attempts + 1;
    match next {
        Next::Accepted { status, duplicate } => {
            let mut event = job_event(job, EventKind::Accepted, attempt);
            event.status = status;
            if duplicate {
                event.details.insert("duplicate_suppressed".into(), "true".into());
            }
            publish_event(ctx, &event).await
        }
        Next::FallBack { reason, detail } => match fire(ctx, job, reason, &detail).await? {
            FireOutcome::Published(_) | FireOutcome::AlreadyFired | FireOutcome::Disarmed => Ok(()),
            FireOutcome::InProgress { retry_after } => park_in_progress(ctx, provider, job, retry_after).await,
            FireOutcome::NotArmed => {
                // Expired between arming and firing: say so rather than go silent.
                let mut event = job_event(job, EventKind::Failed, attempt);
                event.reason = Some(format!("{detail}; the SMS fallback had expired"));
                event.details.insert("reason_code".into(), ReasonCode::FallbackExpired.as_str().into());
                publish_event(ctx, &event).await
            }
        },
        Next::Failed { code, reason, status, error, dead_letter } => {
            let mut event = job_event(job, EventKind::Failed, attempt);
            event.status = status;
            event.error = error;
            event.reason = Some(reason.clone());
            event.details.insert("reason_code".into(), code.as_str().to_owned());
            if let Some(fallback) = failure_fallback(job, ctx, code) {
                match fire(ctx, job, fallback, &reason).await? {
                    FireOutcome::Published(sms) => {
                        event.details.insert("fallback_message_id".into(), sms.message_id.clone());
                    }
                    // Not settled: no outcome yet. The parked job arms, finds the claim
                    // and fires (or takes it over) on its next delivery.
                    FireOutcome::InProgress { retry_after } => {
                        return park_in_progress(ctx, provider, job, retry_after).await;
                    }
                    FireOutcome::AlreadyFired | FireOutcome::Disarmed | FireOutcome::NotArmed => {}
                }
            }
            if !dead_letter {
                return publish_event(ctx, &event).await;
            }
            provider.metrics.dead_lettered(code.as_str());
            let copy = after_attempt(job);
            let dead = ctx.publisher.publish_dead_letter(&ctx.topology, &copy, code.as_str(), &reason);
            let (dead_result, event_result) = tokio::join!(dead, publish_event(ctx, &event));
            dead_result.and(event_result)
        }
        Next::Defer { code, reason } => publish_deferral(ctx, provider, job, DEFER_TIER, code, reason).await,
        Next::Retry { tier, delay, code, reason } => publish_retry(ctx, provider, job, tier, delay, code, reason).await,
    }
}

/// Where a deferred job waits: long enough for a Redis failover or another delivery's
/// send to finish, short enough that an outage's end is noticed soon.
const DEFER_TIER: sendfleet_broker::RetryTier = sendfleet_broker::RETRY_TIERS[1];

/// Another trigger holds the fallback's claim: park the job until the claim is settled
/// or lapses (then its next delivery fires or finds it fired). No attempt is counted.
async fn park_in_progress(
    ctx: &SessionContext,
    provider: &ProviderRuntime,
    job: &SendJob,
    retry_after: std::time::Duration,
) -> Result<(), sendfleet_broker::BrokerError> {
    let delay = retry_after.max(std::time::Duration::from_secs(1));
    let tier = sendfleet_broker::RetryTier::for_delay_ms(delay.as_millis() as u64);
    let reason = "the SMS fallback is being fired by another trigger".to_owned();
    publish_deferral(ctx, provider, job, tier, ReasonCode::FallbackInProgress, reason).await
}

/// Parks the job in a retry tier after an attempt, and publishes `retrying`, both confirmed.
async fn publish_retry(
    ctx: &SessionContext,
    provider: &ProviderRuntime,
    job: &SendJob,
    tier: sendfleet_broker::RetryTier,
    delay: std::time::Duration,
    code: ReasonCode,
    reason: String,
) -> Result<(), sendfleet_broker::BrokerError> {
    let mut event = job_event(job, EventKind::Retrying, job.attempts + 1);
    event.details.insert("retry_in_ms".into(), delay.as_millis().to_string());
    park(ctx, provider, &after_attempt(job), tier, code, reason, event).await
}

/// Parks the job unchanged: no request was made, so neither `attempts` nor the first
/// attempt's time change (`retrying` with `details.deferred = "true"`).
async fn publish_deferral(
    ctx: &SessionContext,
    provider: &ProviderRuntime,
    job: &SendJob,
    tier: sendfleet_broker::RetryTier,
    code: ReasonCode,
    reason: String,
) -> Result<(), sendfleet_broker::BrokerError> {
    let mut event = job_event(job, EventKind::Retrying, job.attempts + 1);
    event.details.insert("deferred".into(), "true".into());
    event.details.insert("retry_in_ms".into(), tier.delay_ms.to_string());
    park(ctx, provider, job, tier, code, reason, event).await
}

/// Publishes `copy` to `tier` and the `retrying` event, both confirmed.
async fn park(
    ctx: &SessionContext,
    provider: &ProviderRuntime,
    copy: &SendJob,
    tier: sendfleet_broker::RetryTier,
    code: ReasonCode,
    reason: String,
    mut event: Event,
) -> Result<(), sendfleet_broker::BrokerError> {
    provider.metrics.retry(tier.name);
    event.reason = Some(reason);
    event.details.insert("reason_code".into(), code.as_str().to_owned());
    event.details.insert("retry_tier".into(), tier.name.to_owned());
    let retry = ctx.publisher.publish_retry(&ctx.topology, copy, tier);
    let (retry_result, event_result) = tokio::join!(retry, publish_event(ctx, &event));
    retry_result.and(event_result)
}

/// The job as it travels to its next stop: one more attempt made.
fn after_attempt(job: &SendJob) -> SendJob {
    let mut next = job.clone();
    next.attempts += 1;
    next.first_attempt_at_ms.get_or_insert_with(now_ms);
    next
}

pub(crate) fn job_event(job: &SendJob, kind: EventKind, attempt: u32) -> Event {
    let mut event = Event::new(kind, &job.provider, job.channel);
    if matches!(kind, EventKind::Accepted | EventKind::Failed) {
        event.event_id = Event::outcome_id(&job.message_id, kind);
    }
    // An SMS fallback's events are about the RCS message it replaces (as with the
    // provider's own failover); its own id stays in the details.
    match &job.fallback_for {
        Some(original) => {
            event.message_id = Some(original.clone());
            event.details.insert("fallback_message_id".into(), job.message_id.clone());
        }
        None => event.message_id = Some(job.message_id.clone()),
    }
    event.to = Some(job.to.clone());
    event.sender = Some(job.sender.clone());
    event.attempt = Some(attempt);
    event.metadata = job.metadata.clone();
    event.trace_id = Some(job.trace_id.clone());
    event
}

pub(crate) async fn publish_event(ctx: &SessionContext, event: &Event) -> Result<(), sendfleet_broker::BrokerError> {
    ctx.publisher.publish_event(&ctx.topology, event).await?;
    ctx.event_metrics.published(event.kind);
    ctx.status.record_event(event);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use futures_util::future::BoxFuture;
    use parking_lot::Mutex;
    use sendfleet_config::{Config, ProviderConfig};
    use sendfleet_limits::{FleetLimiter, Lease, LeaseSource, LimitError, SlotParams, gcra::Gcra};
    use sendfleet_protocol::Content;
    use sendfleet_providers::{CallbackError, ParsedCallback, Provider};
    use tokio::time::Instant;

    use super::*;
    use crate::rate::RateGate;

    type Log = Arc<Mutex<Vec<&'static str>>>;

    /// Slots from an in-process GCRA on the tokio clock; every lease is logged.
    struct Slots {
        log: Log,
        params: SlotParams,
        gcra: Mutex<Gcra>,
        base: Instant,
    }

    impl LeaseSource for Slots {
        fn lease(&self, wanted: u32) -> BoxFuture<'_, Result<Lease, LimitError>> {
            self.log.lock().push("slot");
            let now = (Instant::now() - self.base).as_micros() as i64;
            let lease = self.gcra.lock().lease(&self.params, wanted, now);
            Box::pin(std::future::ready(Ok(lease)))
        }
    }

    /// An adapter that logs what the worker asks of it.
    struct Logged {
        config: ProviderConfig,
        log: Log,
        prepared: Result<(), SendOutcome>,
    }

    impl Provider for Logged {
        fn config(&self) -> &ProviderConfig {
            &self.config
        }

        fn prepare(&self) -> BoxFuture<'_, Result<(), SendOutcome>> {
            self.log.lock().push("prepare");
            Box::pin(std::future::ready(self.prepared.clone()))
        }

        fn send<'a>(&'a self, _job: &'a SendJob) -> BoxFuture<'a, SendOutcome> {
            self.log.lock().push("send");
            Box::pin(std::future::ready(SendOutcome::Accepted { status: None }))
        }

        fn parse_callback(
            &self,
            _request: &sendfleet_providers::CallbackRequest<'_>,
        ) -> Result<ParsedCallback, CallbackError> {
            Ok(ParsedCallback::default())
        }
    }

    fn runtime(prepared: Result<(), SendOutcome>) -> (ProviderRuntime, Log) {
        let toml = "[[providers]]\nid = \"p\"\nkind = \"infobip_sms\"\nbase_url = \"http://127.0.0.1:9\"\n\
                    api_key_env = \"K\"\nsender_ids = [\"S\"]\n";
        let config = Config::from_toml(toml, &|_| Some("key".into()), &sendfleet_providers::VENDORS).unwrap();
        let log = Log::default();
        let params = SlotParams::new(1_000, 10);
        let slots = Slots { log: log.clone(), params, gcra: Mutex::new(Gcra::default()), base: Instant::now() };
        let runtime = ProviderRuntime {
            adapter: Arc::new(Logged { config: config.providers[0].clone(), log: log.clone(), prepared }),
            concurrency: sendfleet_protocol::Priority::ALL.map(|_| sendfleet_limits::ConcurrencyLimit::new(4)),
            requests: crate::permits::RequestPermits::Local(Arc::new(tokio::sync::Semaphore::new(4))),
            rate: Arc::new(RateGate::Fleet(FleetLimiter::new(Arc::new(slots), params, 1))),
            backoff: sendfleet_limits::Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).unwrap(),
            lanes: sendfleet_limits::LaneGate::new(8, vec![0.0, 0.1, 0.05]),
            senders: crate::rate::SenderRates::Local(Default::default()),
            prefetch: 8,
            claim_ttl: Duration::from_secs(30),
            metrics: metrics::ProviderMetrics::new("p"),
            pause: crate::pause::PauseGate::new("p", Duration::from_secs(30), Duration::from_secs(300)),
            capability: None,
        };
        (runtime, log)
    }

    fn job() -> SendJob {
        SendJob {
            priority: Default::default(),
            schema_version: 1,
            message_id: "m".into(),
            provider: "p".into(),
            channel: Channel::Sms,
            to: "+15551234567".into(),
            sender: "S".into(),
            content: Content::Text { text: "t".into(), suggestions: vec![] },
            options: Default::default(),
            fallback: None,
            metadata: BTreeMap::new(),
            trace_id: "t".into(),
            attempts: 0,
            first_attempt_at_ms: None,
            created_at_ms: 0,
            fallback_for: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_adapter_is_prepared_before_the_slot_is_taken() {
        // A token fetch waited out on a slot already taken would send on a stale slot.
        let (runtime, log) = runtime(Ok(()));
        assert_eq!(attempt(&runtime, &job(), None).await, Attempt::Answered(SendOutcome::Accepted { status: None }));
        assert_eq!(*log.lock(), ["prepare", "slot", "send"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_session_stops_the_wait_for_a_slot_and_nothing_is_sent() {
        // 1 request/s, burst 1: the first attempt takes the only slot at hand, the second
        // waits for one; the broker session is lost meanwhile (its job is redelivered
        // elsewhere), so it must give up rather than send.
        let (mut runtime, log) = runtime(Ok(()));
        let params = SlotParams::new(1, 1);
        let slots = Slots { log: log.clone(), params, gcra: Mutex::new(Gcra::default()), base: Instant::now() };
        runtime.rate = Arc::new(RateGate::Fleet(FleetLimiter::new(Arc::new(slots), params, 1)));
        let lost = CancellationToken::new();
        assert_eq!(
            attempt(&runtime, &job(), Some(&lost)).await,
            Attempt::Answered(SendOutcome::Accepted { status: None })
        );
        let cancel = lost.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            cancel.cancel();
        });
        assert_eq!(attempt(&runtime, &job(), Some(&lost)).await, Attempt::SessionLost);
        assert_eq!(log.lock().iter().filter(|entry| **entry == "send").count(), 1, "{:?}", log.lock());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_preparation_takes_no_slot_and_sends_nothing() {
        let refused = SendOutcome::AuthFailure { http_status: 401, reason: "token endpoint refused".into() };
        let (runtime, log) = runtime(Err(refused.clone()));
        assert_eq!(attempt(&runtime, &job(), None).await, Attempt::Answered(refused));
        assert_eq!(*log.lock(), ["prepare"]);
    }
}

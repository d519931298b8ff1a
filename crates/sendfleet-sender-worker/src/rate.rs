//! Holding each provider to its rate: fleet-wide slot leases (default) or a local
//! token bucket.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use sendfleet_config::{Config, ProviderConfig, RateLimiterKind, default_burst};
use sendfleet_limits::{FleetLimiter, LimitError, LocalLimiter, RedisLeases, SenderRate, SlotParams};
use sendfleet_protocol::SendJob;
use sendfleet_providers::{GateError, RequestGate};
use sendfleet_telemetry::metrics::RedisStore;
use tokio_util::sync::CancellationToken;

use crate::ProviderRuntime;

/// How long a job waits for a slot while Redis is unreachable before it is parked in a
/// retry tier instead (it is never sent without a slot).
pub(crate) const SLOT_WAIT_LIMIT: Duration = Duration::from_secs(10);

/// A provider's rate, enforced before every request.
pub(crate) enum RateGate {
    /// Shared by the fleet through Redis.
    Fleet(FleetLimiter),
    /// This process only.
    Local(LocalLimiter, u32),
    /// No limit (benchmarks against the mock).
    Off,
}

impl RateGate {
    pub fn new(config: &Config, provider: &ProviderConfig, redis: &sendfleet_redis::RedisPool) -> RateGate {
        if config.worker.rate_limiter == RateLimiterKind::Off {
            tracing::warn!(provider = %provider.id, "rate limiter is off: never run like this against a real provider");
            return RateGate::Off;
        }
        let (rate, burst) = (provider.rate_per_second, provider.effective_burst());
        match config.worker.rate_limiter {
            RateLimiterKind::Fleet => {
                let params = SlotParams::new(rate, burst);
                let key = rate_key(config, provider);
                RateGate::Fleet(FleetLimiter::new(
                    Arc::new(RedisLeases::new(redis.clone(), key, params)),
                    params,
                    FleetLimiter::batch_for(rate),
                ))
            }
            RateLimiterKind::Local => RateGate::Local(LocalLimiter::new(rate, burst), rate),
            RateLimiterKind::Off => RateGate::Off,
        }
    }

    /// Waits for the right to send one request.
    pub async fn acquire(&self) -> Result<(), LimitError> {
        match self {
            RateGate::Fleet(limiter) => limiter.acquire(SLOT_WAIT_LIMIT).await.map(drop),
            RateGate::Local(limiter, _) => {
                limiter.acquire().await;
                Ok(())
            }
            RateGate::Off => Ok(()),
        }
    }

    /// How long after its time a slot may still be used; a task that waited longer
    /// (for its request permit) takes a fresh slot. Only the fleet limiter's slots go
    /// stale.
    pub fn stale_after(&self) -> Duration {
        match self {
            RateGate::Fleet(limiter) => limiter.max_lateness(),
            _ => Duration::MAX,
        }
    }

    /// Slots leased, slots that expired unused, and failed lease calls (fleet limiter only).
    pub fn slot_counts(&self) -> Option<SlotCounts> {
        match self {
            RateGate::Fleet(limiter) => Some(SlotCounts {
                leased: limiter.granted(),
                expired: limiter.expired(),
                lease_errors: limiter.lease_errors(),
            }),
            _ => None,
        }
    }

    /// Whether a cap is enforced at all (`off` enforces none, so exports no cap).
    fn enforced(&self) -> bool {
        !matches!(self, RateGate::Off)
    }

    fn share_per_second(&self) -> f64 {
        match self {
            RateGate::Fleet(limiter) => f64::from(limiter.share_per_second()),
            RateGate::Local(_, rate) => f64::from(*rate),
            RateGate::Off => 0.0,
        }
    }
}

/// The rates of single senders under a provider's (`sender_rates`), by sender id.
pub(crate) enum SenderRates {
    /// Joint slots from Redis: a slot free under the provider's rate and the sender's.
    Fleet(HashMap<String, SenderRate>),
    /// A token bucket per sender in this process, taken before the provider's.
    Local(HashMap<String, LocalLimiter>),
}

impl SenderRates {
    /// The senders' rates of `provider`, under its `rate` (their joint slots use its
    /// slot stream).
    pub fn new(
        config: &Config,
        provider: &ProviderConfig,
        rate: &RateGate,
        redis: &sendfleet_redis::RedisPool,
    ) -> SenderRates {
        let senders = provider.sender_rates.iter().map(|(sender, rate)| (sender, *rate, default_burst(*rate)));
        match rate {
            RateGate::Fleet(limiter) => {
                let provider_key = rate_key(config, provider);
                let joint = senders.map(|(sender, rate, burst)| {
                    let sender_key = format!("{provider_key}:sender:{sender}");
                    let params = SlotParams::new(rate, burst);
                    let limit =
                        SenderRate::new(redis.clone(), provider_key.clone(), limiter.params(), sender_key, params);
                    (sender.clone(), limit)
                });
                SenderRates::Fleet(joint.collect())
            }
            RateGate::Local(..) => SenderRates::Local(
                senders.map(|(sender, rate, burst)| (sender.clone(), LocalLimiter::new(rate, burst))).collect(),
            ),
            // No limit at all, the senders' neither.
            RateGate::Off => SenderRates::Local(HashMap::new()),
        }
    }
}

/// Waits for the job's rate slot: its lane's turn, then a slot of the provider's rate —
/// for a sender with a rate of its own, one slot good for both (see
/// `sendfleet_limits::SenderRate`), the lane's turn let go while the sender is busy.
pub(crate) async fn take_slot(provider: &ProviderRuntime, job: &SendJob) -> Result<(), LimitError> {
    let lane = job.priority.index();
    match &provider.senders {
        SenderRates::Fleet(senders) if let Some(sender) = senders.get(&job.sender) => {
            let taken = sender.acquire(SLOT_WAIT_LIMIT, || provider.lanes.enter(lane)).await?;
            if taken.expired > 0 {
                tracing::debug!(provider = %job.provider, expired = taken.expired, "sender slots reached too late");
            }
            Ok(())
        }
        SenderRates::Local(senders) if let Some(sender) = senders.get(&job.sender) => {
            // Token buckets hold no slot while waiting: the sender's first loses nothing.
            sender.acquire().await;
            let _turn = provider.lanes.enter(lane).await;
            provider.rate.acquire().await
        }
        _ => {
            let _turn = provider.lanes.enter(lane).await;
            provider.rate.acquire().await
        }
    }
}

/// The Redis key of a provider's slot stream (its TAT).
fn rate_key(config: &Config, provider: &ProviderConfig) -> String {
    format!("{}:rate:{}", config.redis.key_prefix, provider.id)
}

/// The adapter's slots for requests beyond a send's first (token fetches, resends)
/// come from the same limiter as the worker's: the cap counts every request.
impl RequestGate for RateGate {
    fn acquire(&self) -> BoxFuture<'_, Result<(), GateError>> {
        Box::pin(async move { RateGate::acquire(self).await.map_err(|e| GateError::Unavailable(e.to_string())) })
    }
}

/// A fleet limiter's running totals.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SlotCounts {
    pub leased: u64,
    pub expired: u64,
    pub lease_errors: u64,
}

/// Exports each provider's configured cap once, then every second its current share of
/// the rate, its slots leased and expired, and failed lease calls (as Redis errors).
pub(crate) fn spawn_rate_gauges(providers: &[Arc<ProviderRuntime>], shutdown: CancellationToken) {
    let providers = providers.to_vec();
    for provider in &providers {
        let config = provider.adapter.config();
        if provider.rate.enforced() {
            provider.metrics.rate_config(config.rate_per_second, config.effective_burst());
        }
    }
    tokio::spawn(async move {
        let mut lease_errors_counted = 0;
        loop {
            let mut lease_errors = 0;
            for provider in &providers {
                provider.metrics.rate_share(provider.rate.share_per_second());
                if let Some(counts) = provider.rate.slot_counts() {
                    provider.metrics.rate_slots(counts.leased, counts.expired);
                    lease_errors += counts.lease_errors;
                }
            }
            RedisStore::RateLeases.failed(lease_errors - lease_errors_counted);
            lease_errors_counted = lease_errors;
            tokio::select! {
                () = shutdown.cancelled() => {
                    for provider in &providers {
                        if let Some(SlotCounts { leased, expired, .. }) = provider.rate.slot_counts() {
                            tracing::info!(provider = %provider.adapter.config().id, leased, expired, "rate slots leased");
                        }
                    }
                    return;
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use sendfleet_limits::{Lease, LeaseSource};

    use super::*;

    /// A lease store that never answers, as Redis down.
    struct Down;

    impl LeaseSource for Down {
        fn lease(&self, _wanted: u32) -> BoxFuture<'_, Result<Lease, LimitError>> {
            Box::pin(std::future::ready(Err(LimitError::Unavailable("connection refused".into()))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_adapters_gate_fails_closed_with_a_transient_outcome() {
        let params = SlotParams::new(100, 10);
        let gate: Arc<dyn RequestGate> = Arc::new(RateGate::Fleet(FleetLimiter::new(Arc::new(Down), params, 1)));
        let err = gate.acquire().await.expect_err("no slot while the store is down");
        let sendfleet_providers::SendOutcome::Transient { code, reason, .. } = err.outcome() else { panic!("{err:?}") };
        assert_eq!(code, sendfleet_providers::TransientCode::RateStoreUnavailable);
        assert!(reason.contains("connection refused"), "{reason}");
        let open: Arc<dyn RequestGate> = Arc::new(RateGate::Off);
        assert_eq!(open.acquire().await, Ok(()));
    }
}

//! The sender-worker.
//!
//! For each provider it serves, the worker consumes `jobs.<provider>` and its priority
//! lanes (`jobs.<provider>.high`, `.bulk`), each with a prefetch of `jobs_per_worker`,
//! lets the highest lane take the next rate slot, sends each job through the provider's adapter
//! while holding one of the provider's concurrency permits, and publishes what follows
//! (accepted/failed event, retry, dead letter, SMS fallback) **with publisher confirms
//! before it acks** the job. Before an RCS request it optionally checks capability
//! (batched, cached fleet-wide, failing open) and arms the job's SMS fallback. A lost broker connection ends the session: unacked jobs are redelivered,
//! and the worker reconnects with backoff.
//!
//! `run` is what the binary calls and what tests call in-process.

mod capability;
mod metrics;
mod outcome;
mod pause;
mod permits;
mod pipeline;
mod rate;
mod sent;
mod session;

use std::{sync::Arc, time::Duration};

use sendfleet_config::Config;
use sendfleet_providers::{AdapterError, AdapterSettings, Provider};
use sendfleet_telemetry::Readiness;
use tokio_util::sync::CancellationToken;

/// Why the worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A provider adapter could not be built.
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    /// The ops listener failed.
    #[error("ops server: {0}")]
    Io(#[from] std::io::Error),
    /// A provider's retry policy is impossible (caught by config validation first).
    #[error("provider {0}: invalid retry policy")]
    RetryPolicy(String),
    /// The Redis URL cannot be used.
    #[error("redis: {0}")]
    Redis(String),
    /// The broker cannot be used as configured (a queue exists with other arguments).
    #[error(transparent)]
    Broker(#[from] sendfleet_broker::BrokerError),
}

/// One provider as the worker drives it.
pub(crate) struct ProviderRuntime {
    pub adapter: Arc<dyn Provider>,
    /// Jobs this worker works on at once (`jobs_per_worker`) per lane, shrunk on
    /// overload (AIMD). Per lane, so jobs of a lower lane never hold the places a higher
    /// lane's jobs wait for; which job sends next is the lane gate's choice.
    pub concurrency: [sendfleet_limits::ConcurrencyLimit; 3],
    /// Requests in flight to the provider (`concurrency`): fleet-wide, held only for
    /// the HTTP request itself.
    pub requests: permits::RequestPermits,
    /// Shared with the adapter, which takes slots from it for its own extra requests
    /// (OAuth token fetches, the resend after a 401).
    pub rate: Arc<rate::RateGate>,
    /// Which waiting job takes the next rate slot: the highest lane first, the lower
    /// lanes keeping their minimum shares.
    pub lanes: sendfleet_limits::LaneGate,
    /// Rates of single senders (`sender_rates`), taken with the provider's.
    pub senders: rate::SenderRates,
    pub backoff: sendfleet_limits::Backoff,
    pub prefetch: u16,
    /// How long a send may hold its message's claim (see `sent`).
    pub claim_ttl: Duration,
    pub metrics: metrics::ProviderMetrics,
    pub pause: pause::PauseGate,
    /// Present when the provider checks RCS capability before sending.
    pub capability: Option<capability::CapabilityChecker>,
}

impl ProviderRuntime {
    fn id(&self) -> &str {
        &self.adapter.config().id
    }

    /// The jobs-at-once limit of a lane.
    fn jobs(&self, lane: sendfleet_protocol::Priority) -> &sendfleet_limits::ConcurrencyLimit {
        &self.concurrency[lane.index()]
    }
}

/// The longest a send holds its message's claim: a rate-slot wait and a request, twice
/// (a refreshed token's resend), and a margin. A claim outlives its send only when the
/// worker died, and then it delays the redelivered job by at most this long.
fn claim_ttl(provider: &sendfleet_config::ProviderConfig) -> Duration {
    2 * (rate::SLOT_WAIT_LIMIT + Duration::from_millis(provider.request_timeout_ms)) + Duration::from_secs(5)
}

/// The lane gate of a provider: about 20 ms of the provider's rate may be reserved
/// ahead of a newly arrived high job (at least 8 slots, so the gate never slows the
/// slots down; at most 128).
fn lane_gate(provider: &sendfleet_config::ProviderConfig) -> sendfleet_limits::LaneGate {
    let width = (provider.rate_per_second / 50).clamp(8, 128) as usize;
    let shares = provider.lane_min_share;
    // Lane order as `Priority::index`: high, normal, bulk.
    sendfleet_limits::LaneGate::new(width, vec![0.0, shares.normal, shares.bulk])
}

/// The Redis pool (rate leases and the sent-message record).
fn redis_pool(config: &Config) -> Result<sendfleet_redis::RedisPool, WorkerError> {
    sendfleet_redis::RedisPool::new(&config.redis, 16).map_err(|e| WorkerError::Redis(e.to_string()))
}

/// Runs the worker until `shutdown` is cancelled: serves `/metrics` and `/health` on
/// `ops_listener`, consumes and sends. On shutdown it stops consuming, lets in-flight
/// jobs finish for at most `worker.shutdown_grace_seconds`, and returns.
pub async fn run(
    config: Arc<Config>,
    ops_listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let metrics = sendfleet_telemetry::metrics::install();
    sendfleet_telemetry::metrics::record_process("sender-worker", &config.broker);
    {
        use sendfleet_telemetry::metrics::RedisStore;
        RedisStore::register(&[
            RedisStore::RateLeases,
            RedisStore::SentRecord,
            RedisStore::CapabilityCache,
            RedisStore::Fallback,
        ]);
    }
    let readiness = Readiness::default();
    let settings = AdapterSettings { callback_base_url: config.callback_ingest.public_base_url.clone() };
    let redis = redis_pool(&config)?;
    let sent = sent::SentLog::start(
        redis.clone(),
        &config.redis.key_prefix,
        Duration::from_secs(config.worker.sent_record_ttl_seconds),
    );
    let mut providers = Vec::new();
    for provider in &config.providers {
        if !config.worker.providers.is_empty() && !config.worker.providers.contains(&provider.id) {
            continue;
        }
        let backoff = sendfleet_limits::Backoff::new(
            Duration::from_millis(provider.retry.initial_delay_ms),
            Duration::from_millis(provider.retry.max_delay_ms),
        )
        .map_err(|_| WorkerError::RetryPolicy(provider.id.clone()))?;
        let rate = Arc::new(rate::RateGate::new(&config, provider, &redis));
        let adapter = sendfleet_providers::build(provider, &settings, rate.clone())?;
        let batch = adapter.capability_batch_size();
        let capability = (provider.capability_check
            && provider.channel() == sendfleet_protocol::Channel::Rcs
            && batch > 0)
            .then(|| {
                capability::CapabilityChecker::start(
                    &provider.id,
                    adapter.clone(),
                    redis.clone(),
                    &config.redis.key_prefix,
                    capability::CheckerSettings::from_config(&config.worker, batch),
                )
            });
        providers.push(Arc::new(ProviderRuntime {
            adapter,
            capability,
            concurrency: sendfleet_protocol::Priority::ALL
                .map(|_| sendfleet_limits::ConcurrencyLimit::new(provider.effective_jobs_per_worker() as usize)),
            requests: permits::RequestPermits::new(&config, provider, &redis),
            senders: rate::SenderRates::new(&config, provider, &rate, &redis),
            rate,
            lanes: lane_gate(provider),
            metrics: metrics::ProviderMetrics::new(&provider.id),
            pause: pause::PauseGate::new(
                &provider.id,
                Duration::from_secs(config.worker.pause_probe_seconds),
                Duration::from_secs(config.worker.pause_max_hold_seconds),
            ),
            backoff,
            claim_ttl: claim_ttl(provider),
            // The prefetch is the hard bound on jobs held by this process.
            prefetch: u16::try_from(provider.effective_jobs_per_worker()).unwrap_or(u16::MAX),
        }));
    }
    // The ops server and the gauges stop with the service, also when the sessions end
    // on a fatal broker error.
    let stopped = shutdown.child_token();
    rate::spawn_rate_gauges(&providers, stopped.clone());
    let router = sendfleet_telemetry::ops_router(metrics, readiness.clone());
    let server = tokio::spawn(sendfleet_telemetry::serve(ops_listener, router, stopped.clone()));
    let fallbacks = sendfleet_fallback::Fallbacks::new(redis.clone(), &config);
    let status = sendfleet_status::StatusWriter::start(&config).map_err(|e| WorkerError::Redis(e.to_string()))?;
    let runtimes = providers.clone();
    let sessions = session::run_sessions(config, providers, sent, fallbacks, status.clone(), readiness, shutdown).await;
    stopped.cancel();
    // Every request has ended: hand the fleet permits back rather than let them lapse.
    for runtime in &runtimes {
        runtime.requests.leave().await;
    }
    // The last jobs' status updates, written before the process ends (bounded).
    status.flush(Duration::from_secs(2)).await;
    server.await.ok().transpose()?;
    sessions?;
    Ok(())
}

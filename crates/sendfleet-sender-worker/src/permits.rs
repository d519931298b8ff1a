//! The provider's concurrency: requests in flight to it. Fleet-wide through Redis (the
//! default, with the fleet rate limiter), or per process with the local one.

use std::{sync::Arc, time::Duration};

use sendfleet_config::{Config, ProviderConfig, RateLimiterKind};
use sendfleet_limits::{FleetPermit, FleetPermits, PermitSettings, RedisPermits};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Where a request's permit comes from.
pub(crate) enum RequestPermits {
    /// `concurrency` for the whole fleet, leased in Redis.
    Fleet(FleetPermits),
    /// `concurrency` for this process (local rate limiter: no Redis coordination).
    Local(Arc<Semaphore>),
}

/// The right to have one request in flight; dropping it gives it back.
pub(crate) enum RequestPermit {
    /// A fleet permit.
    Fleet(#[allow(dead_code)] FleetPermit),
    /// A local permit.
    Local(#[allow(dead_code)] Option<OwnedSemaphorePermit>),
}

impl RequestPermits {
    /// The provider's permits: fleet-wide unless the worker runs the local (or no) rate
    /// limiter, which means it coordinates nothing through Redis.
    pub fn new(config: &Config, provider: &ProviderConfig, redis: &sendfleet_redis::RedisPool) -> RequestPermits {
        let limit = provider.concurrency.max(1);
        if config.worker.rate_limiter != RateLimiterKind::Fleet {
            return RequestPermits::Local(Arc::new(Semaphore::new(limit as usize)));
        }
        let key = format!("{}:concurrency:{}", config.redis.key_prefix, provider.id);
        let store = Arc::new(RedisPermits::new(redis.clone(), &key, limit));
        let holder = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        let settings = PermitSettings::for_timeout(Duration::from_millis(provider.request_timeout_ms));
        RequestPermits::Fleet(FleetPermits::start(store, holder, settings))
    }

    /// Waits for a permit.
    pub async fn acquire(&self) -> RequestPermit {
        match self {
            RequestPermits::Fleet(permits) => RequestPermit::Fleet(permits.acquire().await),
            // Never closed, so acquiring cannot fail.
            RequestPermits::Local(semaphore) => RequestPermit::Local(semaphore.clone().acquire_owned().await.ok()),
        }
    }

    /// Whether the provider's concurrency, not the rate, holds this worker's requests
    /// back: the fleet gives it fewer permits than it asks for, or the local ones are
    /// all in use.
    pub fn is_short(&self) -> bool {
        match self {
            RequestPermits::Fleet(permits) => permits.is_short(),
            RequestPermits::Local(semaphore) => semaphore.available_permits() == 0,
        }
    }

    /// Waits at most `limit` for a permit (`Duration::MAX`: as long as it takes).
    pub async fn acquire_within(&self, limit: Duration) -> Option<RequestPermit> {
        if limit == Duration::MAX {
            return Some(self.acquire().await);
        }
        tokio::time::timeout(limit, self.acquire()).await.ok()
    }

    /// Gives the fleet permits back at shutdown (after the last request ended).
    pub async fn leave(&self) {
        if let RequestPermits::Fleet(permits) = self {
            permits.leave().await;
        }
    }
}

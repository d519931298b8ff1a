//! The worker's metrics. Hot-path handles are registered once per provider, so a job
//! records its figures without building label sets or allocating.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use sendfleet_protocol::EventKind;
use sendfleet_telemetry::metrics as names;

/// One provider's metric handles.
pub(crate) struct ProviderMetrics {
    provider: String,
    accepted: Counter,
    rejected: Counter,
    transient: Counter,
    auth_failure: Counter,
    duration: Histogram,
    inflight: Gauge,
    queue_lag: Histogram,
    rate_wait: Histogram,
    share: Gauge,
    rate_limit: Gauge,
    burst: Gauge,
    slots_leased: Counter,
    slots_expired: Counter,
}

impl ProviderMetrics {
    pub fn new(provider: &str) -> ProviderMetrics {
        let outcome = |o: &'static str| counter!(names::PROVIDER_REQUESTS_TOTAL, "provider" => provider.to_owned(), "outcome" => o);
        let label = || provider.to_owned();
        // Registered at zero so dashboards and alerts see every provider's series (and
        // `increase()` counts the first event) before anything has happened.
        for tier in sendfleet_broker::RETRY_TIERS {
            counter!(names::RETRIES_TOTAL, "provider" => label(), "tier" => tier.name).absolute(0);
        }
        for reason in crate::outcome::ReasonCode::DEAD_LETTER {
            counter!(names::DEAD_LETTERED_TOTAL, "provider" => label(), "reason" => reason.as_str()).absolute(0);
        }
        counter!(names::DUPLICATES_SUPPRESSED_TOTAL, "provider" => label()).absolute(0);
        for reason in sendfleet_fallback::FallbackReason::ALL {
            counter!(names::FALLBACKS_TOTAL, "provider" => label(), "reason" => reason.as_str()).absolute(0);
        }
        for result in sendfleet_telemetry::metrics::CAPABILITY_RESULTS {
            counter!(names::CAPABILITY_CHECKS_TOTAL, "provider" => label(), "result" => *result).absolute(0);
        }
        ProviderMetrics {
            provider: provider.to_owned(),
            accepted: outcome("accepted"),
            rejected: outcome("rejected"),
            transient: outcome("transient"),
            auth_failure: outcome("auth_failure"),
            duration: histogram!(names::PROVIDER_REQUEST_DURATION_SECONDS, "provider" => label()),
            inflight: gauge!(names::INFLIGHT_REQUESTS, "provider" => label()),
            queue_lag: histogram!(names::QUEUE_LAG_SECONDS, "provider" => label()),
            rate_wait: histogram!(names::RATE_LIMIT_WAIT_SECONDS, "provider" => label()),
            share: gauge!(names::RATE_SHARE_PER_SECOND, "provider" => label()),
            rate_limit: gauge!(names::RATE_LIMIT_PER_SECOND, "provider" => label()),
            burst: gauge!(names::RATE_BURST, "provider" => label()),
            slots_leased: zero(counter!(names::RATE_SLOTS_LEASED_TOTAL, "provider" => label())),
            slots_expired: zero(counter!(names::RATE_SLOTS_EXPIRED_TOTAL, "provider" => label())),
        }
    }

    /// The provider's configured cap: its fleet-wide rate and burst.
    pub fn rate_config(&self, rate_per_second: u32, burst: u32) {
        self.rate_limit.set(f64::from(rate_per_second));
        self.burst.set(f64::from(burst));
    }

    /// The fleet limiter's running totals of slots leased and expired unused.
    pub fn rate_slots(&self, leased: u64, expired: u64) {
        self.slots_leased.absolute(leased);
        self.slots_expired.absolute(expired);
    }

    pub fn request(&self, outcome: &'static str, took: Duration) {
        match outcome {
            "accepted" => &self.accepted,
            "rejected" => &self.rejected,
            "auth_failure" => &self.auth_failure,
            _ => &self.transient,
        }
        .increment(1);
        self.duration.record(took.as_secs_f64());
    }

    pub fn inflight(&self, delta: f64) {
        self.inflight.increment(delta);
    }

    pub fn queue_lag(&self, created_at_ms: i64) {
        let lag_ms = (sendfleet_protocol::now_ms() - created_at_ms).max(0);
        self.queue_lag.record(lag_ms as f64 / 1000.0);
    }

    pub fn rate_wait(&self, waited: Duration) {
        self.rate_wait.record(waited.as_secs_f64());
    }

    pub fn rate_share(&self, per_second: f64) {
        self.share.set(per_second);
    }

    pub fn retry(&self, tier: &'static str) {
        counter!(names::RETRIES_TOTAL, "provider" => self.provider.clone(), "tier" => tier).increment(1);
    }

    pub fn dead_lettered(&self, reason: &'static str) {
        dead_lettered(&self.provider, reason);
    }
}

/// A counter registered at zero.
fn zero(counter: Counter) -> Counter {
    counter.absolute(0);
    counter
}

pub(crate) fn dead_lettered(provider: &str, reason: &'static str) {
    counter!(names::DEAD_LETTERED_TOTAL, "provider" => provider.to_owned(), "reason" => reason).increment(1);
}

/// Events published, by kind; handles for the kinds the worker publishes per job.
pub(crate) struct EventMetrics {
    accepted: Counter,
    failed: Counter,
    retrying: Counter,
}

impl EventMetrics {
    pub fn new() -> EventMetrics {
        let kind = |k: EventKind| counter!(names::EVENTS_PUBLISHED_TOTAL, "kind" => k.as_str());
        EventMetrics {
            accepted: kind(EventKind::Accepted),
            failed: kind(EventKind::Failed),
            retrying: kind(EventKind::Retrying),
        }
    }

    pub fn published(&self, kind: EventKind) {
        match kind {
            EventKind::Accepted => self.accepted.increment(1),
            EventKind::Failed => self.failed.increment(1),
            EventKind::Retrying => self.retrying.increment(1),
            other => counter!(names::EVENTS_PUBLISHED_TOTAL, "kind" => other.as_str()).increment(1),
        }
    }
}

pub(crate) fn duplicate_suppressed(provider: &str) {
    counter!(names::DUPLICATES_SUPPRESSED_TOTAL, "provider" => provider.to_owned()).increment(1);
}

//! The metrics catalogue: every metric sendfleet exports, with its unit and help text.
//! `docs/METRICS.md` lists the same names with their labels; a test keeps them in step.
//!
//! Labels only ever take values from bounded sets (provider ids from the config,
//! outcome/reason codes from enums), never message ids or phone numbers.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Provider HTTP requests by `provider` and `outcome` (accepted, rejected, transient, auth_failure).
pub const PROVIDER_REQUESTS_TOTAL: &str = "sendfleet_provider_requests_total";
/// Provider HTTP request latency by `provider`.
pub const PROVIDER_REQUEST_DURATION_SECONDS: &str = "sendfleet_provider_request_duration_seconds";
/// Time a job waited for a rate-limit token, by `provider`.
pub const RATE_LIMIT_WAIT_SECONDS: &str = "sendfleet_rate_limit_wait_seconds";
/// This worker's current share of the provider's fleet-wide rate, requests/s, by `provider`.
pub const RATE_SHARE_PER_SECOND: &str = "sendfleet_rate_share_per_second";
/// Provider HTTP requests in flight in this worker, by `provider`.
pub const INFLIGHT_REQUESTS: &str = "sendfleet_inflight_requests";
/// Time from job creation to consumption by a worker, by `provider`.
pub const QUEUE_LAG_SECONDS: &str = "sendfleet_queue_lag_seconds";
/// Jobs scheduled for another attempt, by `provider` and `tier`.
pub const RETRIES_TOTAL: &str = "sendfleet_retries_total";
/// Jobs sent to the dead-letter queue, by `provider` and `reason`.
pub const DEAD_LETTERED_TOTAL: &str = "sendfleet_dead_lettered_total";
/// 1 while a provider is paused after an auth/config failure, by `provider`.
pub const PROVIDER_PAUSED: &str = "sendfleet_provider_paused";
/// SMS fallback jobs published, by `provider` (the RCS provider) and `reason`.
pub const FALLBACKS_TOTAL: &str = "sendfleet_fallbacks_total";
/// Redelivered jobs not sent again because the provider already accepted them, by `provider`.
pub const DUPLICATES_SUPPRESSED_TOTAL: &str = "sendfleet_duplicates_suppressed_total";
/// Callbacks received, by `provider`, `kind` and `outcome` (ok or the rejection reason).
pub const CALLBACKS_TOTAL: &str = "sendfleet_callbacks_total";
/// Reports of a callback body that could not be read (the body's other reports are
/// accepted), by `provider` and `reason` (malformed, unrecognised).
pub const CALLBACK_REPORTS_REJECTED_TOTAL: &str = "sendfleet_callback_reports_rejected_total";
/// Send requests by `outcome` (accepted, rejected) at the dispatcher.
pub const REQUESTS_TOTAL: &str = "sendfleet_requests_total";
/// Send requests rejected by the dispatcher, by `reason`.
pub const REQUESTS_REJECTED_TOTAL: &str = "sendfleet_requests_rejected_total";
/// Send jobs published by the dispatcher, by `provider`.
pub const JOBS_PUBLISHED_TOTAL: &str = "sendfleet_jobs_published_total";
/// Events published, by `kind`.
pub const EVENTS_PUBLISHED_TOTAL: &str = "sendfleet_events_published_total";
/// Broker (re)connections, by `service`.
pub const BROKER_CONNECTIONS_TOTAL: &str = "sendfleet_broker_connections_total";
/// Broker sessions started over because they looked stalled (a consumer received nothing
/// while its queue held messages, or a publish was nacked for a whole retry window), by
/// `service`.
pub const BROKER_SESSION_STALLS_TOTAL: &str = "sendfleet_broker_session_stalls_total";
/// RCS capability lookups, by `provider` and `result` (enabled, not_capable, unknown, cached, error).
pub const CAPABILITY_CHECKS_TOTAL: &str = "sendfleet_capability_checks_total";

/// The provider's configured fleet-wide rate (requests/s), by `provider`: the cap.
pub const RATE_LIMIT_PER_SECOND: &str = "sendfleet_rate_limit_per_second";
/// The provider's configured burst (requests beyond the steady rate), by `provider`.
pub const RATE_BURST: &str = "sendfleet_rate_burst";
/// Rate slots this worker leased from the fleet-wide limiter, by `provider`.
pub const RATE_SLOTS_LEASED_TOTAL: &str = "sendfleet_rate_slots_leased_total";
/// Leased rate slots that expired unused (capacity lost, never overshoot), by `provider`.
pub const RATE_SLOTS_EXPIRED_TOTAL: &str = "sendfleet_rate_slots_expired_total";
/// Always 1; `version`, `commit` and `binary` say what runs.
pub const BUILD_INFO: &str = "sendfleet_build_info";
/// Failed Redis calls, by `store` (see [`RedisStore`]).
pub const REDIS_ERRORS_TOTAL: &str = "sendfleet_redis_errors_total";
/// The configured `x-max-length` of the default events queue, by `queue`; exported only
/// when the queue is declared with a length bound.
pub const EVENTS_QUEUE_MAX_LENGTH: &str = "sendfleet_events_queue_max_length";
/// Message status updates by `outcome`: written (the record moved on), stale (refused:
/// the record is already in a later state), dropped (the writer's queue was full),
/// failed (Redis did not take them).
pub const STATUS_UPDATES_TOTAL: &str = "sendfleet_status_updates_total";

/// The `result` values of [`CAPABILITY_CHECKS_TOTAL`]: the provider's answer per number
/// (enabled, not_capable, invalid_number, unknown), answers from the fleet cache (cached),
/// numbers another worker was asking about (contended), and failed lookups sent anyway
/// (error, throttled).
pub const CAPABILITY_RESULTS: &[&str] =
    &["enabled", "not_capable", "invalid_number", "unknown", "cached", "contended", "error", "throttled"];

/// Every metric name, for catalogue checks.
pub const ALL: &[&str] = &[
    PROVIDER_REQUESTS_TOTAL,
    PROVIDER_REQUEST_DURATION_SECONDS,
    RATE_LIMIT_WAIT_SECONDS,
    RATE_SHARE_PER_SECOND,
    INFLIGHT_REQUESTS,
    QUEUE_LAG_SECONDS,
    RETRIES_TOTAL,
    DEAD_LETTERED_TOTAL,
    PROVIDER_PAUSED,
    FALLBACKS_TOTAL,
    DUPLICATES_SUPPRESSED_TOTAL,
    CALLBACKS_TOTAL,
    CALLBACK_REPORTS_REJECTED_TOTAL,
    REQUESTS_TOTAL,
    REQUESTS_REJECTED_TOTAL,
    JOBS_PUBLISHED_TOTAL,
    EVENTS_PUBLISHED_TOTAL,
    BROKER_CONNECTIONS_TOTAL,
    BROKER_SESSION_STALLS_TOTAL,
    CAPABILITY_CHECKS_TOTAL,
    RATE_LIMIT_PER_SECOND,
    RATE_BURST,
    RATE_SLOTS_LEASED_TOTAL,
    RATE_SLOTS_EXPIRED_TOTAL,
    BUILD_INFO,
    REDIS_ERRORS_TOTAL,
    EVENTS_QUEUE_MAX_LENGTH,
    STATUS_UPDATES_TOTAL,
];

/// What a failed Redis call was for: the `store` label of [`REDIS_ERRORS_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisStore {
    /// Fleet-wide rate slot leases (sender-worker).
    RateLeases,
    /// Send claims and sent records (sender-worker).
    SentRecord,
    /// The RCS capability cache (sender-worker).
    CapabilityCache,
    /// Armed SMS fallbacks (sender-worker, callback-ingest).
    Fallback,
}

impl RedisStore {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RedisStore::RateLeases => "rate_leases",
            RedisStore::SentRecord => "sent_record",
            RedisStore::CapabilityCache => "capability_cache",
            RedisStore::Fallback => "fallback",
        }
    }

    /// Registers the series of `stores` at zero, so `rate()` and alerts see them from the
    /// first scrape.
    pub fn register(stores: &[RedisStore]) {
        for store in stores {
            metrics::counter!(REDIS_ERRORS_TOTAL, "store" => store.as_str()).absolute(0);
        }
    }

    /// Counts `n` failed calls (a `rate()` above zero for a while fires the
    /// `SendfleetRedisUnreachable` alert).
    pub fn failed(self, n: u64) {
        metrics::counter!(REDIS_ERRORS_TOTAL, "store" => self.as_str()).increment(n);
    }
}

/// The commit the binary was built from: `SENDFLEET_GIT_COMMIT` at build time (the
/// Dockerfile passes it as a build argument), else `unknown`. Read from the environment
/// rather than from git so a commit does not rebuild every crate.
pub const GIT_COMMIT: &str = match option_env!("SENDFLEET_GIT_COMMIT") {
    Some(commit) if !commit.is_empty() => commit,
    _ => "unknown",
};

/// What every service exports about itself: [`BUILD_INFO`] for `binary`, and the
/// events queue's configured length bound.
pub fn record_process(binary: &'static str, broker: &sendfleet_config::BrokerConfig) {
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "commit" => GIT_COMMIT, "binary" => binary)
        .set(1.0);
    let events = &broker.events_queue;
    if events.declare && events.max_length > 0 {
        let queue = format!("{}.events", broker.prefix);
        metrics::gauge!(EVENTS_QUEUE_MAX_LENGTH, "queue" => queue).set(events.max_length as f64);
    }
}

/// Installs the Prometheus recorder once per process (later calls return the same
/// handle) and describes every metric.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
                )
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then ours stays unused
            // and /metrics renders empty, which the catalogue test would catch.
            drop(metrics::set_global_recorder(recorder));
            describe();
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

fn spawn_upkeep(handle: PrometheusHandle) {
    // Histograms need periodic upkeep; a plain thread keeps this independent of which
    // runtime (if any) is current when `install` is first called.
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                handle.run_upkeep();
            }
        })
        .ok();
}

fn describe() {
    describe_counter!(PROVIDER_REQUESTS_TOTAL, "Provider HTTP requests by outcome.");
    describe_histogram!(PROVIDER_REQUEST_DURATION_SECONDS, Unit::Seconds, "Provider HTTP request latency.");
    describe_histogram!(RATE_LIMIT_WAIT_SECONDS, Unit::Seconds, "Time a job waited for a rate-limit token.");
    describe_gauge!(
        RATE_SHARE_PER_SECOND,
        "This worker's current share of the provider's fleet-wide rate (requests/s)."
    );
    describe_gauge!(INFLIGHT_REQUESTS, "Provider HTTP requests in flight in this worker.");
    describe_histogram!(QUEUE_LAG_SECONDS, Unit::Seconds, "Time from job creation to consumption.");
    describe_counter!(RETRIES_TOTAL, "Jobs scheduled for another attempt, by retry tier.");
    describe_counter!(DEAD_LETTERED_TOTAL, "Jobs sent to the dead-letter queue, by reason.");
    describe_gauge!(PROVIDER_PAUSED, "1 while a provider is paused after an auth/config failure.");
    describe_counter!(FALLBACKS_TOTAL, "SMS fallback jobs published, by reason.");
    describe_counter!(DUPLICATES_SUPPRESSED_TOTAL, "Redelivered jobs not sent again (already accepted).");
    describe_counter!(CALLBACKS_TOTAL, "Provider callbacks by kind and outcome.");
    describe_counter!(
        CALLBACK_REPORTS_REJECTED_TOTAL,
        "Callback reports that could not be read (the rest of their body was accepted), by reason."
    );
    describe_counter!(REQUESTS_TOTAL, "Send requests handled by the dispatcher, by outcome.");
    describe_counter!(REQUESTS_REJECTED_TOTAL, "Send requests rejected by the dispatcher, by reason.");
    describe_counter!(JOBS_PUBLISHED_TOTAL, "Send jobs published by the dispatcher.");
    describe_counter!(EVENTS_PUBLISHED_TOTAL, "Events published, by kind.");
    describe_counter!(BROKER_CONNECTIONS_TOTAL, "Broker connections opened (first connect and reconnects).");
    describe_counter!(
        BROKER_SESSION_STALLS_TOTAL,
        "Broker sessions started over because they looked stalled: a consumer with room received nothing for 15 s \
         while its queue held messages, or the broker nacked a publish for 10 s on end."
    );
    describe_counter!(CAPABILITY_CHECKS_TOTAL, "RCS capability lookups by result.");
    describe_gauge!(RATE_LIMIT_PER_SECOND, "The provider's configured fleet-wide rate (requests/s): the cap.");
    describe_gauge!(RATE_BURST, "The provider's configured burst (requests beyond the steady rate).");
    describe_counter!(RATE_SLOTS_LEASED_TOTAL, "Rate slots this worker leased from the fleet-wide limiter.");
    describe_counter!(RATE_SLOTS_EXPIRED_TOTAL, "Leased rate slots that expired unused (capacity lost).");
    describe_gauge!(BUILD_INFO, "Always 1; the labels say which version, commit and binary run.");
    describe_counter!(REDIS_ERRORS_TOTAL, "Failed Redis calls, by what they were for.");
    describe_gauge!(EVENTS_QUEUE_MAX_LENGTH, "The configured x-max-length of the default events queue.");
    describe_counter!(STATUS_UPDATES_TOTAL, "Message status updates by outcome (written, stale, dropped, failed).");
}

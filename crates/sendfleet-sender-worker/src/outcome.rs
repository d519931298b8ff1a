//! What to do after a send: a pure decision from the provider's answer, the job's
//! history and the provider's retry policy.

use std::time::Duration;

use sendfleet_broker::RetryTier;
use sendfleet_config::RetryConfig;
use sendfleet_limits::Backoff;
use sendfleet_protocol::{ProviderErrorInfo, ProviderStatus, SendJob};
use sendfleet_providers::{RejectCode, SendOutcome, TransientCode};

/// The worker's next step for a job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Next {
    /// Publish `accepted`, ack. `duplicate`: it was accepted before and not sent again.
    Accepted { status: Option<ProviderStatus>, duplicate: bool },
    /// Publish `failed` (and dead-letter the job when `dead_letter`), ack.
    Failed {
        code: ReasonCode,
        reason: String,
        status: Option<ProviderStatus>,
        error: Option<ProviderErrorInfo>,
        dead_letter: bool,
    },
    /// Park the job in a retry tier, publish `retrying`, ack.
    Retry { tier: RetryTier, delay: Duration, code: ReasonCode, reason: String },
    /// No request was made (the store that guards sending is unreachable, or another
    /// delivery is sending this message now): park the job in a retry tier *without*
    /// counting an attempt, so an outage never exhausts retries or fires a fallback.
    Defer { code: ReasonCode, reason: String },
    /// No RCS request: fire the armed SMS fallback instead (publish the SMS job and
    /// `fallback_triggered`), ack. Also used when it was fired before (nothing to do).
    FallBack { reason: sendfleet_fallback::FallbackReason, detail: String },
}

/// Why a job failed, was parked or deferred: the `reason_code` of its event, its
/// dead-letter header and its metrics label. A bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ReasonCode {
    /// The provider refused the message for good.
    Rejected(RejectCode),
    /// The provider (or the way to it) failed for now.
    Transient(TransientCode),
    /// The provider refused the credentials (401, 403).
    AuthFailure,
    /// The provider's endpoint was not found (404): a configuration problem.
    NotFound,
    /// Attempts ran out.
    RetriesExhausted,
    /// The job grew older than the retry policy allows.
    MaxAge,
    /// The request's SMS fallback cannot be built (no SMS provider or sender).
    InvalidFallback,
    /// The capability check says the number is invalid.
    InvalidDestination,
    /// The capability check says no RCS, and there is no SMS fallback.
    NotRcsCapable,
    /// The sent records are unreachable: sending could duplicate.
    SentStoreUnavailable,
    /// The fallback store is unreachable: a failure report could not send the SMS.
    FallbackStoreUnavailable,
    /// Another delivery of the message is sending it now.
    SendInProgress,
    /// Another trigger is firing the message's SMS fallback now.
    FallbackInProgress,
    /// The SMS fallback expired before it could be fired.
    FallbackExpired,
}

impl ReasonCode {
    /// The codes a job is dead-lettered with (metric series registered at zero).
    pub(crate) const DEAD_LETTER: [ReasonCode; 2] = [ReasonCode::RetriesExhausted, ReasonCode::MaxAge];

    /// The snake_case code.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Rejected(code) => code.as_str(),
            ReasonCode::Transient(code) => code.as_str(),
            ReasonCode::AuthFailure => "auth_failure",
            ReasonCode::NotFound => "not_found",
            ReasonCode::RetriesExhausted => "retries_exhausted",
            ReasonCode::MaxAge => "max_age",
            ReasonCode::InvalidFallback => "invalid_fallback",
            ReasonCode::InvalidDestination => "invalid_destination",
            ReasonCode::NotRcsCapable => "not_rcs_capable",
            ReasonCode::SentStoreUnavailable => "sent_store_unavailable",
            ReasonCode::FallbackStoreUnavailable => "fallback_store_unavailable",
            ReasonCode::SendInProgress => "send_in_progress",
            ReasonCode::FallbackInProgress => "fallback_in_progress",
            ReasonCode::FallbackExpired => "fallback_expired",
        }
    }
}

/// Decides the next step. `attempts_made` includes the attempt just made.
pub(crate) fn decide(
    outcome: SendOutcome,
    job: &SendJob,
    policy: &RetryConfig,
    backoff: &Backoff,
    now_ms: i64,
    unit_random: f64,
) -> Next {
    let (code, reason, retry_after) = match outcome {
        SendOutcome::Accepted { status } => return Next::Accepted { status, duplicate: false },
        SendOutcome::Rejected { code, reason, status, error } => {
            return Next::Failed { code: ReasonCode::Rejected(code), reason, status, error, dead_letter: false };
        }
        SendOutcome::Transient { code, reason, retry_after } => (ReasonCode::Transient(code), reason, retry_after),
        SendOutcome::AuthFailure { http_status, reason } => {
            (if http_status == 404 { ReasonCode::NotFound } else { ReasonCode::AuthFailure }, reason, None)
        }
    };
    let attempts_made = job.attempts + 1;
    let first = job.first_attempt_at_ms.unwrap_or(now_ms);
    let age_ms = u64::try_from(now_ms - first).unwrap_or(0);
    if attempts_made >= policy.max_attempts {
        return Next::Failed {
            code: ReasonCode::RetriesExhausted,
            reason: format!("gave up after {attempts_made} attempts; last: {reason}"),
            status: None,
            error: None,
            dead_letter: true,
        };
    }
    let delay = backoff.delay_with(attempts_made, retry_after, unit_random);
    if age_ms.saturating_add(delay.as_millis() as u64) > policy.max_age_seconds.saturating_mul(1_000) {
        return Next::Failed {
            code: ReasonCode::MaxAge,
            reason: format!("older than {} s after {attempts_made} attempts; last: {reason}", policy.max_age_seconds),
            status: None,
            error: None,
            dead_letter: true,
        };
    }
    let tier = RetryTier::for_delay_ms(delay.as_millis() as u64);
    Next::Retry { tier, delay, code, reason }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sendfleet_protocol::{Channel, Content, SendOptions};

    use super::*;

    fn job(attempts: u32, first_attempt_at_ms: Option<i64>) -> SendJob {
        SendJob {
            priority: Default::default(),
            schema_version: 1,
            message_id: "m".into(),
            provider: "p".into(),
            channel: Channel::Sms,
            to: "+15551234567".into(),
            sender: "S".into(),
            content: Content::Text { text: "t".into(), suggestions: vec![] },
            options: SendOptions::default(),
            fallback: None,
            metadata: BTreeMap::new(),
            trace_id: "t".into(),
            attempts,
            first_attempt_at_ms,
            created_at_ms: 0,
            fallback_for: None,
        }
    }

    fn backoff() -> Backoff {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(300)).unwrap()
    }

    fn transient(retry_after: Option<Duration>) -> SendOutcome {
        SendOutcome::Transient { code: TransientCode::Throttled, reason: "429".into(), retry_after }
    }

    #[test]
    fn transient_failures_retry_in_the_tier_that_covers_the_delay() {
        let next =
            decide(transient(Some(Duration::from_secs(4))), &job(0, None), &RetryConfig::default(), &backoff(), 0, 0.0);
        assert_eq!(
            next,
            Next::Retry {
                tier: sendfleet_broker::RETRY_TIERS[1],
                delay: Duration::from_secs(4),
                code: ReasonCode::Transient(TransientCode::Throttled),
                reason: "429".into()
            }
        );
    }

    #[test]
    fn the_last_attempt_dead_letters() {
        let policy = RetryConfig { max_attempts: 3, ..RetryConfig::default() };
        let next = decide(transient(None), &job(2, Some(0)), &policy, &backoff(), 10, 0.5);
        assert!(matches!(next, Next::Failed { code: ReasonCode::RetriesExhausted, dead_letter: true, .. }), "{next:?}");
    }

    #[test]
    fn jobs_older_than_max_age_dead_letter() {
        let policy = RetryConfig { max_age_seconds: 60, ..RetryConfig::default() };
        let next = decide(transient(None), &job(1, Some(0)), &policy, &backoff(), 61_000, 0.5);
        assert!(matches!(next, Next::Failed { code: ReasonCode::MaxAge, dead_letter: true, .. }), "{next:?}");
    }

    #[test]
    fn permanent_rejections_fail_without_dead_letter() {
        let rejected =
            SendOutcome::Rejected { code: RejectCode::BadRequest, reason: "E400".into(), status: None, error: None };
        let next = decide(rejected, &job(0, None), &RetryConfig::default(), &backoff(), 0, 0.5);
        assert!(matches!(
            next,
            Next::Failed { code: ReasonCode::Rejected(RejectCode::BadRequest), dead_letter: false, .. }
        ));
    }

    #[test]
    fn reason_codes_have_distinct_snake_case_names() {
        let codes = [
            ReasonCode::Rejected(RejectCode::BadRequest),
            ReasonCode::Rejected(RejectCode::RejectedStatus),
            ReasonCode::Rejected(RejectCode::Http4xx),
            ReasonCode::Rejected(RejectCode::UnsupportedContent),
            ReasonCode::Rejected(RejectCode::UnsupportedOption),
            ReasonCode::Transient(TransientCode::Throttled),
            ReasonCode::Transient(TransientCode::ServerError),
            ReasonCode::Transient(TransientCode::Timeout),
            ReasonCode::Transient(TransientCode::Network),
            ReasonCode::Transient(TransientCode::RateStoreUnavailable),
            ReasonCode::AuthFailure,
            ReasonCode::NotFound,
            ReasonCode::RetriesExhausted,
            ReasonCode::MaxAge,
            ReasonCode::InvalidFallback,
            ReasonCode::InvalidDestination,
            ReasonCode::NotRcsCapable,
            ReasonCode::SentStoreUnavailable,
            ReasonCode::FallbackStoreUnavailable,
            ReasonCode::SendInProgress,
            ReasonCode::FallbackInProgress,
            ReasonCode::FallbackExpired,
        ];
        let names: std::collections::BTreeSet<&str> = codes.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), codes.len(), "{names:?}");
        assert!(names.iter().all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())));
    }
}

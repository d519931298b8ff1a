//! What to do after a send: a pure decision from the provider's answer, the job's
//! history and the provider's retry policy.

use std::time::Duration;

use sendfleet_broker::RetryTier;
use sendfleet_config::RetryConfig;
use sendfleet_limits::Backoff;
use sendfleet_protocol::{ProviderErrorInfo, ProviderStatus, SendJob};
use sendfleet_providers::SendOutcome;

/// The worker's next step for a job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Next {
    /// Publish `accepted`, ack. `duplicate`: it was accepted before and not sent again.
    Accepted { status: Option<ProviderStatus>, duplicate: bool },
    /// Publish `failed` (and dead-letter the job when `dead_letter`), ack.
    Failed {
        code: &'static str,
        reason: String,
        status: Option<ProviderStatus>,
        error: Option<ProviderErrorInfo>,
        dead_letter: bool,
    },
    /// Park the job in a retry tier, publish `retrying`, ack.
    Retry { tier: RetryTier, delay: Duration, code: &'static str, reason: String },
    /// No request was made (the store that guards sending is unreachable, or another
    /// delivery is sending this message now): park the job in a retry tier *without*
    /// counting an attempt, so an outage never exhausts retries or fires a fallback.
    Defer { code: &'static str, reason: String },
    /// No RCS request: fire the armed SMS fallback instead (publish the SMS job and
    /// `fallback_triggered`), ack. Also used when it was fired before (nothing to do).
    FallBack { reason: sendfleet_fallback::FallbackReason, detail: String },
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
            return Next::Failed { code, reason, status, error, dead_letter: false };
        }
        SendOutcome::Transient { code, reason, retry_after } => (code, reason, retry_after),
        SendOutcome::AuthFailure { http_status, reason } => {
            (if http_status == 404 { "not_found" } else { "auth_failure" }, reason, None)
        }
    };
    let attempts_made = job.attempts + 1;
    let first = job.first_attempt_at_ms.unwrap_or(now_ms);
    let age_ms = u64::try_from(now_ms - first).unwrap_or(0);
    if attempts_made >= policy.max_attempts {
        return Next::Failed {
            code: "retries_exhausted",
            reason: format!("gave up after {attempts_made} attempts; last: {reason}"),
            status: None,
            error: None,
            dead_letter: true,
        };
    }
    let delay = backoff.delay_with(attempts_made, retry_after, unit_random);
    if age_ms.saturating_add(delay.as_millis() as u64) > policy.max_age_seconds.saturating_mul(1_000) {
        return Next::Failed {
            code: "max_age",
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
        SendOutcome::Transient { code: "throttled", reason: "429".into(), retry_after }
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
                code: "throttled",
                reason: "429".into()
            }
        );
    }

    #[test]
    fn the_last_attempt_dead_letters() {
        let policy = RetryConfig { max_attempts: 3, ..RetryConfig::default() };
        let next = decide(transient(None), &job(2, Some(0)), &policy, &backoff(), 10, 0.5);
        assert!(matches!(next, Next::Failed { code: "retries_exhausted", dead_letter: true, .. }), "{next:?}");
    }

    #[test]
    fn jobs_older_than_max_age_dead_letter() {
        let policy = RetryConfig { max_age_seconds: 60, ..RetryConfig::default() };
        let next = decide(transient(None), &job(1, Some(0)), &policy, &backoff(), 61_000, 0.5);
        assert!(matches!(next, Next::Failed { code: "max_age", dead_letter: true, .. }), "{next:?}");
    }

    #[test]
    fn permanent_rejections_fail_without_dead_letter() {
        let rejected = SendOutcome::Rejected { code: "bad_request", reason: "E400".into(), status: None, error: None };
        let next = decide(rejected, &job(0, None), &RetryConfig::default(), &backoff(), 0, 0.5);
        assert!(matches!(next, Next::Failed { code: "bad_request", dead_letter: false, .. }));
    }
}

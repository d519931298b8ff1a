//! Exponential backoff with full jitter, clamped, honouring `Retry-After`.

use std::time::Duration;

/// A validated backoff policy: attempt `n` (1-based) waits a random time in
/// `[0, min(max, initial · 2^(n-1))]` ("full jitter", which spreads a fleet's retries
/// instead of synchronising them), but never less than the provider's `Retry-After`
/// and never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

/// An impossible policy.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackoffError {
    /// `initial` is zero or above `max`.
    #[error("initial delay must be > 0 and ≤ max delay")]
    Range,
}

impl Backoff {
    /// A policy from its bounds.
    pub fn new(initial: Duration, max: Duration) -> Result<Backoff, BackoffError> {
        if initial.is_zero() || initial > max {
            return Err(BackoffError::Range);
        }
        Ok(Backoff { initial, max })
    }

    /// The upper bound of the delay after `attempt` failed attempts (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        self.initial.saturating_mul(1u32 << doublings.min(31)).min(self.max)
    }

    /// The delay before the next attempt, given a random `unit` in `[0, 1)`.
    pub fn delay_with(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        let jittered = self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0));
        // Full jitter may pick ~0; keep a floor of the initial delay so a retry is never
        // immediate, and honour the provider's Retry-After.
        let floor = retry_after.unwrap_or(Duration::ZERO).max(self.initial.min(self.ceiling(attempt)));
        jittered.max(floor).min(self.max.max(retry_after.unwrap_or(Duration::ZERO)))
    }

    /// The delay before the next attempt, with thread-local randomness.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.delay_with(attempt, retry_after, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Backoff {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn ceiling_doubles_then_clamps() {
        let p = policy();
        assert_eq!(p.ceiling(1), Duration::from_secs(1));
        assert_eq!(p.ceiling(2), Duration::from_secs(2));
        assert_eq!(p.ceiling(6), Duration::from_secs(32));
        assert_eq!(p.ceiling(7), Duration::from_secs(60));
        assert_eq!(p.ceiling(1_000), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_floor_and_ceiling() {
        let p = policy();
        for unit in [0.0, 0.25, 0.5, 0.999] {
            for attempt in 1..20 {
                let d = p.delay_with(attempt, None, unit);
                assert!(d >= Duration::from_secs(1) && d <= p.ceiling(attempt).max(Duration::from_secs(1)), "{d:?}");
            }
        }
        assert_eq!(p.delay_with(5, None, 0.5), Duration::from_secs(8));
    }

    #[test]
    fn retry_after_is_honoured_even_above_the_ceiling() {
        let p = policy();
        assert_eq!(p.delay_with(1, Some(Duration::from_secs(7)), 0.0), Duration::from_secs(7));
        assert_eq!(p.delay_with(1, Some(Duration::from_secs(120)), 0.9), Duration::from_secs(120));
    }

    #[test]
    fn impossible_policies_are_refused() {
        assert_eq!(Backoff::new(Duration::ZERO, Duration::from_secs(1)), Err(BackoffError::Range));
        assert_eq!(Backoff::new(Duration::from_secs(2), Duration::from_secs(1)), Err(BackoffError::Range));
    }
}

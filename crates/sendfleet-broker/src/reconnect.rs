//! The one reconnect policy of every broker client: exponential backoff from 200 ms,
//! doubling to 5 s, each wait drawn at random from its upper half ("equal jitter"), so
//! a fleet that lost its broker at once does not come back in lockstep.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// First wait.
const INITIAL: Duration = Duration::from_millis(200);
/// Longest wait.
const MAX: Duration = Duration::from_secs(5);

/// Backoff state between reconnect attempts.
#[derive(Debug, Clone)]
pub struct Reconnect {
    next: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect::new()
    }
}

impl Reconnect {
    /// A fresh policy: the next wait is the shortest.
    pub fn new() -> Reconnect {
        Reconnect { next: INITIAL }
    }

    /// After a connection that worked: start from the shortest wait again.
    pub fn reset(&mut self) {
        self.next = INITIAL;
    }

    /// The next wait (jittered in `[d/2, d]`), and doubles `d` up to 5 s.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = (self.next * 2).min(MAX);
        let half = ceiling / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// Waits the next delay; `false` when `shutdown` came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_five_seconds_within_their_upper_half_and_reset() {
        let mut policy = Reconnect::new();
        let ceilings = [200, 400, 800, 1_600, 3_200, 5_000, 5_000];
        for ceiling in ceilings {
            let wait = policy.next_delay().as_millis() as u64;
            assert!((ceiling / 2..=ceiling).contains(&wait), "{wait} ms outside [{}, {ceiling}]", ceiling / 2);
        }
        policy.reset();
        assert!(policy.next_delay() <= INITIAL);
    }

    #[test]
    fn waits_are_spread() {
        let waits: std::collections::BTreeSet<u128> =
            (0..20).map(|_| Reconnect { next: MAX }.next_delay().as_micros()).collect();
        assert!(waits.len() > 10, "jittered waits differ: {waits:?}");
    }
}

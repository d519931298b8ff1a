//! A per-process token bucket, for a single worker without Redis.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// `rate` requests/s with `burst` extra, in this process only. Several workers each
/// with a `LocalLimiter` would multiply the rate: use it only with one worker per
/// provider (`worker.rate_limiter = "local"`).
pub struct LocalLimiter {
    limiter: DefaultDirectRateLimiter,
}

impl LocalLimiter {
    /// A bucket refilling at `rate_per_second` holding `burst` tokens.
    pub fn new(rate_per_second: u32, burst: u32) -> LocalLimiter {
        let rate = NonZeroU32::new(rate_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        LocalLimiter { limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)) }
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        self.limiter.until_ready().await;
    }
}

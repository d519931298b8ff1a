//! Limits: how fast, how wide and how often each provider is driven.
//!
//! - [`FleetLimiter`]: the provider's rate for the **whole fleet**, as leases of send
//!   slots from a GCRA in Redis ([`gcra`] explains the bound). Fails closed.
//! - [`LocalLimiter`]: a per-process token bucket (governor), for a single worker run
//!   without Redis.
//! - [`ConcurrencyLimit`]: the provider's "custom concurrency" as owned semaphore
//!   permits, shrunk on overload and grown back (AIMD).
//! - [`Backoff`]: exponential backoff with full jitter for retries.

mod backoff;
mod concurrency;
mod fleet;
pub mod gcra;
mod local;

pub use backoff::{Backoff, BackoffError};
pub use concurrency::{ConcurrencyLimit, ConcurrencyPermit};
pub use fleet::{FleetLimiter, LeaseSource, LimitError, Permit, RedisLeases};
pub use gcra::{Lease, SlotParams};
pub use local::LocalLimiter;

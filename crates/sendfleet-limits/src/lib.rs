//! Limits: how fast, how wide and how often each provider is driven.
//!
//! - [`FleetLimiter`]: the provider's rate for the **whole fleet**, as leases of send
//!   slots from a GCRA in Redis ([`gcra`] explains the bound). Fails closed.
//! - [`LocalLimiter`]: a per-process token bucket (governor), for a single worker run
//!   without Redis.
//! - [`FleetPermits`]: the provider's "custom concurrency" for the **whole fleet**:
//!   requests in flight summed over every worker, held as leased permits in Redis.
//! - [`ConcurrencyLimit`]: one worker's share of work as owned semaphore permits, shrunk
//!   on overload and grown back (AIMD).
//! - [`SenderRate`]: a sender's rate under its provider's, one joint slot for both.
//! - [`LaneGate`]: priority lanes within one provider's rate (which waiting job takes
//!   the next slot).
//! - [`Backoff`]: exponential backoff with full jitter for retries.

mod backoff;
mod concurrency;
mod fleet;
pub mod gcra;
mod joint;
mod lanes;
mod local;
mod permits;

pub use backoff::{Backoff, BackoffError};
pub use concurrency::{ConcurrencyLimit, ConcurrencyPermit};
pub use fleet::{FleetLimiter, LeaseSource, LimitError, Permit, RedisLeases};
pub use gcra::{Lease, SlotParams};
pub use joint::{LUA_JOINT_LEASE, SenderRate, SlotTaken};
pub use lanes::{LaneGate, LaneTicket};
pub use local::LocalLimiter;
pub use permits::{FleetPermit, FleetPermits, Holding, LUA_PERMITS, PermitSettings, PermitStore, RedisPermits};

//! The rate hook of an adapter.
//!
//! The fleet-wide rate cap counts HTTP requests, not jobs. The caller (the worker)
//! takes one slot for a send's first request before [`Provider::send`]; a request the
//! adapter makes beyond that (an OAuth token fetch, the resend after a refused token)
//! takes its own slot from the [`RequestGate`] the adapter was built with, at the
//! moment it is about to be made. A gate that cannot answer makes the adapter return a
//! transient `rate_store_unavailable` outcome: nothing is sent unguarded.
//!
//! [`Provider::send`]: crate::Provider::send

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::SendOutcome;

/// Hands out the right to make one HTTP request to a provider.
pub trait RequestGate: Send + Sync {
    /// Waits for one request's slot. Call it right before the request: a slot used
    /// late lets requests bunch above the cap.
    fn acquire(&self) -> BoxFuture<'_, Result<(), GateError>>;
}

/// Why a gate gave no slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// The slot store (Redis, for the fleet-wide rate) did not answer in time.
    #[error("{0}")]
    Unavailable(String),
}

impl GateError {
    /// The outcome an adapter returns instead of sending without a slot: transient, so
    /// the job is retried later.
    pub fn outcome(&self) -> SendOutcome {
        SendOutcome::Transient {
            code: crate::TransientCode::RateStoreUnavailable,
            reason: self.to_string(),
            retry_after: None,
        }
    }
}

/// A gate that never waits: for processes that build adapters without sending through
/// them (callback-ingest parses callbacks), and for one-off operator requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl RequestGate for Unlimited {
    fn acquire(&self) -> BoxFuture<'_, Result<(), GateError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// [`Unlimited`], ready to pass to [`crate::build`].
pub fn unlimited() -> Arc<dyn RequestGate> {
    Arc::new(Unlimited)
}

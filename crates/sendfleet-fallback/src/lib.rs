//! The SMS fallback of RCS messages, shared by the sender-worker and callback-ingest.
//!
//! A send job on an RCS provider may carry an [`SmsFallback`](sendfleet_protocol::SmsFallback).
//! Its life, keyed by our message id in Redis (`<key_prefix>:fallback:<message id>`):
//!
//! 1. **Armed** by the worker before the RCS request goes out ([`FallbackStore::arm`]):
//!    the fully resolved SMS [`SendJob`](sendfleet_protocol::SendJob) is stored, TTL =
//!    RCS validity + retry age + margin.
//! 2. **Fired** exactly once ([`Fallbacks::fire`]) when the capability check says "not
//!    capable", the RCS send fails for good, or a delivery report says undeliverable,
//!    expired or rejected ([`classify_report`]). Taking the value is one atomic Redis
//!    step that leaves a *fired* tombstone, so concurrent or duplicate triggers (two
//!    callback-ingest instances, a redelivered job) publish one SMS between them. If the
//!    publish is not confirmed, the value is restored and the caller fails (the provider
//!    retries the callback, the broker redelivers the job).
//! 3. **Disarmed** by a delivered or seen report ([`FallbackStore::disarm`]).
//!
//! The fallback itself is a normal SMS job on the SMS provider's queue (rate limit,
//! retries, dead letters apply) carrying `fallback_for` = the RCS message id; a
//! `fallback_triggered` event says why it was sent.

mod classify;
mod fire;
mod job;
mod store;

pub use classify::{FallbackReason, ReportAction, classify_report};
pub use fire::{Fallbacks, FireOutcome};
pub use job::{DEFAULT_VALIDITY_SECONDS, fallback_job, fallback_message_id, fallback_ttl};
pub use store::{ArmState, FallbackStore};

/// Why a fallback could not be armed, fired or restored.
#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    /// Redis could not be reached or refused a command.
    #[error("fallback store: {0}")]
    Store(String),
    /// The armed value in Redis is not a job this build can read.
    #[error("fallback store holds an unreadable job for {message_id}: {reason}")]
    Corrupt {
        /// Our message id.
        message_id: String,
        /// The decoder's reason.
        reason: String,
    },
    /// The request's fallback cannot be sent: no such SMS provider, unknown sender, ….
    #[error("invalid fallback: {0}")]
    Invalid(String),
    /// The SMS job or the event was not confirmed by the broker (the value was restored).
    #[error("fallback not published: {0}")]
    Broker(#[from] sendfleet_broker::BrokerError),
    /// A fallback had to be published but there is no broker connection.
    #[error("fallback not published: not connected to the broker")]
    NotConnected,
}

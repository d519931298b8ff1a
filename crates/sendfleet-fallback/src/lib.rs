//! The SMS fallback of RCS messages, shared by the sender-worker and callback-ingest.
//!
//! A send job on an RCS provider may carry an [`SmsFallback`](sendfleet_protocol::SmsFallback).
//! Its life, keyed by our message id in Redis (`<key_prefix>:fallback:<message id>`):
//!
//! 1. **Armed** by the worker before the RCS request goes out ([`FallbackStore::arm`]):
//!    the fully resolved SMS [`SendJob`](sendfleet_protocol::SendJob) is stored, TTL =
//!    RCS validity + retry age + margin.
//! 2. **Fired** ([`Fallbacks::fire`]) when the capability check says "not capable", the
//!    RCS send fails for good, or a delivery report says undeliverable, expired or
//!    rejected ([`classify_report`]). Firing is two-phase: the trigger **claims** the
//!    value with a deadline ([`DEFAULT_CLAIM_TIMEOUT`], Redis's clock), publishes the SMS
//!    job and a `fallback_triggered` event with confirms, then **marks** it fired. The
//!    job stays in Redis until its SMS is confirmed, so there is no state in which an
//!    armed fallback is gone but its SMS is not in the broker:
//!    - concurrent or duplicate triggers (two callback-ingest instances, a redelivered
//!      job) are serialised by Redis; exactly one claims, the others hear
//!      [`FireOutcome::InProgress`] (not settled: the caller retries later);
//!    - if the publish is not confirmed the claim is released and the caller fails (the
//!      provider retries the callback, the broker redelivers the job);
//!    - if the claimer dies, loses a Redis reply or is cancelled, its claim lapses at the
//!      deadline and the next trigger takes it over and fires.
//! 3. **Disarmed** by a delivered or seen report ([`FallbackStore::disarm`]), also while
//!    claimed (no SMS is due once the RCS got through).
//!
//! **At least once into the broker, once to the user.** A take-over after a crash, or a
//! release after a confirm that was lost although the broker had enqueued the job, can
//! publish the SMS job twice. Both copies carry the deterministic message id
//! `<rcs id>.sms` ([`fallback_message_id`]), and the worker checks the sent record (and
//! its pre-send claim) of every job before sending it, so the user gets one SMS. Only
//! that check makes the duplicate publish acceptable.
//!
//! The fallback itself is a normal SMS job on the SMS provider's queue (rate limit,
//! retries, dead letters apply) carrying `fallback_for` = the RCS message id; a
//! `fallback_triggered` event says why it was sent.
//!
//! What a caller does with each answer:
//!
//! | answer | worker | callback-ingest |
//! |---|---|---|
//! | [`ArmState::Armed`] | send the RCS | – |
//! | [`ArmState::InProgress`] | no RCS; fire (takes over a lapsed claim) | – |
//! | [`ArmState::AlreadyFired`] / [`ArmState::Disarmed`] | no RCS; settled | – |
//! | [`FireOutcome::Published`] / `AlreadyFired` / `Disarmed` / `NotArmed` | settled | settled (2xx) |
//! | [`FireOutcome::InProgress`] | not settled: park the job, try again later | 503 (`Retry-After`) |
//! | `Err(_)` | not settled: requeue / retry | 503 |

mod classify;
mod fire;
mod job;
mod store;

use std::time::Duration;

pub use classify::{FallbackReason, ReportAction, classify_report};
pub use fire::{DEFAULT_CLAIM_TIMEOUT, Fallbacks, FireOutcome};
pub use job::{DEFAULT_VALIDITY_SECONDS, fallback_job, fallback_message_id, fallback_ttl};
pub use store::{ArmState, FallbackStore};

/// Why a fallback could not be armed, fired or released.
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
    /// The SMS job or the event was not confirmed by the broker (the claim was released).
    #[error("fallback not published: {0}")]
    Broker(#[from] sendfleet_broker::BrokerError),
    /// The broker confirmed neither the SMS job nor its failure in time (the claim was
    /// released; the job may still be in the queue, see the crate docs).
    #[error("fallback not published: no confirm within {0:?}")]
    ConfirmTimeout(Duration),
    /// A fallback had to be published but there is no broker connection.
    #[error("fallback not published: not connected to the broker")]
    NotConnected,
    /// Another trigger's claim on this fallback is not settled yet: nothing was
    /// published by this call. Try again after `retry_after`.
    #[error("SMS fallback of {message_id} is being fired elsewhere; try again in {retry_after:?}")]
    InProgress {
        /// The RCS message id.
        message_id: String,
        /// Time left until that claim's deadline.
        retry_after: Duration,
    },
    /// A failpoint injected the failure of a step (fault tests only).
    #[error(transparent)]
    Injected(#[from] sendfleet_failpoints::Injected),
}

impl FallbackError {
    /// How long to wait before the next attempt, when the error says (in progress).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FallbackError::InProgress { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

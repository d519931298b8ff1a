//! The classification of a provider's answer.

use std::time::Duration;

use sendfleet_protocol::{ProviderErrorInfo, ProviderStatus};

/// What the worker does next, decided from the provider's answer alone.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// The provider took the message.
    Accepted {
        /// Per-message status from the answer, when given.
        status: Option<ProviderStatus>,
    },
    /// The provider refused it and resending unchanged would fail the same way.
    Rejected {
        /// Bounded code for metrics (`bad_request`, `rejected_status`, `http_4xx`).
        code: &'static str,
        /// Human-readable reason (violations, status description).
        reason: String,
        /// Per-message status, when the refusal came as a status.
        status: Option<ProviderStatus>,
        /// Provider error, when given.
        error: Option<ProviderErrorInfo>,
    },
    /// Try again later (429, 5xx, timeout, connection error).
    Transient {
        /// Bounded code for metrics (`throttled`, `server_error`, `timeout`, `network`).
        code: &'static str,
        /// Human-readable reason.
        reason: String,
        /// The provider's `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// Credentials or account configuration are wrong (401, 403, 404 path): no job
    /// can succeed until an operator acts, so the provider is paused, not the job failed.
    AuthFailure {
        /// HTTP status.
        http_status: u16,
        /// Human-readable reason.
        reason: String,
    },
}

impl SendOutcome {
    /// The metrics label of the outcome.
    pub fn label(&self) -> &'static str {
        match self {
            SendOutcome::Accepted { .. } => "accepted",
            SendOutcome::Rejected { .. } => "rejected",
            SendOutcome::Transient { .. } => "transient",
            SendOutcome::AuthFailure { .. } => "auth_failure",
        }
    }
}

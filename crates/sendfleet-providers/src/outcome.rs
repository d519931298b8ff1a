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
        /// Why, as a bounded code (metrics, `reason_code`).
        code: RejectCode,
        /// Human-readable reason (violations, status description).
        reason: String,
        /// Per-message status, when the refusal came as a status.
        status: Option<ProviderStatus>,
        /// Provider error, when given.
        error: Option<ProviderErrorInfo>,
    },
    /// Try again later (429, 5xx, timeout, connection error).
    Transient {
        /// Why, as a bounded code (metrics, `reason_code`).
        code: TransientCode,
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

/// Why a provider refused a message for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// The request was refused as invalid (400 with the vendor's validation error).
    BadRequest,
    /// The answer was a 2xx whose per-message status is a rejection.
    RejectedStatus,
    /// Another 4xx that resending will not change.
    Http4xx,
    /// The content cannot be expressed in the vendor's API (checked before sending).
    UnsupportedContent,
    /// A delivery option the vendor's API does not have (checked before sending).
    UnsupportedOption,
}

impl RejectCode {
    /// The snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::BadRequest => "bad_request",
            RejectCode::RejectedStatus => "rejected_status",
            RejectCode::Http4xx => "http_4xx",
            RejectCode::UnsupportedContent => "unsupported_content",
            RejectCode::UnsupportedOption => "unsupported_option",
        }
    }
}

/// Why a send is worth trying again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransientCode {
    /// The provider throttled the request (429).
    Throttled,
    /// The provider failed (5xx).
    ServerError,
    /// No answer in time (client timeout or 408).
    Timeout,
    /// The connection failed.
    Network,
    /// No rate slot could be had: the rate store is unreachable (no request was made).
    RateStoreUnavailable,
}

impl TransientCode {
    /// The snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            TransientCode::Throttled => "throttled",
            TransientCode::ServerError => "server_error",
            TransientCode::Timeout => "timeout",
            TransientCode::Network => "network",
            TransientCode::RateStoreUnavailable => "rate_store_unavailable",
        }
    }

    /// Whether the provider itself pushed back (throttled, failing or slow): the signal
    /// adaptive concurrency backs off on. A network error or a missing rate slot is not.
    pub fn is_provider_pressure(self) -> bool {
        matches!(self, TransientCode::Throttled | TransientCode::ServerError | TransientCode::Timeout)
    }
}

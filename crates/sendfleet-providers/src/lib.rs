//! Provider adapters.
//!
//! A provider is one module behind the [`Provider`] trait: it turns a [`SendJob`] into
//! the vendor's HTTP request, classifies the answer into a [`SendOutcome`], and parses
//! the vendor's callbacks into normalised [`Event`]s. Request building and
//! classification are pure functions, unit-tested beside the code; only
//! [`Provider::send`] touches the network.
//!
//! Adding a vendor touches one module plus its tests, and one arm in [`build`].

pub mod generic;
pub mod http;
pub mod infobip;
mod outcome;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sendfleet_config::{ProviderConfig, ProviderKind};
use sendfleet_protocol::{Event, SendJob};

pub use outcome::SendOutcome;

/// What every provider adapter offers.
pub trait Provider: Send + Sync {
    /// The provider's config.
    fn config(&self) -> &ProviderConfig;

    /// Sends one job and classifies the answer. Never panics, never returns an error:
    /// network failures are [`SendOutcome::Transient`].
    fn send<'a>(&'a self, job: &'a SendJob) -> BoxFuture<'a, SendOutcome>;

    /// Parses a callback body (delivery reports, inbound messages, …) into events, one
    /// per result in a batch.
    fn parse_callback(&self, body: &[u8]) -> Result<Vec<Event>, CallbackError>;
}

/// Settings shared by every adapter of a process.
#[derive(Debug, Clone, Default)]
pub struct AdapterSettings {
    /// Public base URL of callback-ingest (empty: no per-message callback URL is sent).
    pub callback_base_url: String,
}

impl AdapterSettings {
    /// The callback URL of a provider, `<base>/callbacks/<id>/<token>`, or `None` when
    /// no public base URL or no token is configured.
    pub fn callback_url(&self, provider: &ProviderConfig) -> Option<String> {
        let token = provider.callback_token.expose();
        if self.callback_base_url.is_empty() || token.is_empty() {
            return None;
        }
        Some(format!("{}/callbacks/{}/{}", self.callback_base_url.trim_end_matches('/'), provider.id, token))
    }
}

/// A callback body that cannot be turned into events. The text is the 400 reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallbackError {
    /// Not JSON, or JSON of no known shape.
    #[error("malformed callback body: {0}")]
    Malformed(String),
    /// A well-formed body this provider does not send to this URL.
    #[error("unrecognised callback: {0}")]
    Unrecognised(String),
}

/// Why an adapter cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The HTTP client could not be built (TLS backend).
    #[error("provider {provider}: cannot build HTTP client: {source}")]
    Client {
        /// Provider id.
        provider: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The API key cannot be sent in an HTTP header (control characters).
    #[error("provider {provider}: the API key contains characters not allowed in an HTTP header")]
    InvalidKey {
        /// Provider id.
        provider: String,
    },
    /// A generic provider's settings cannot be used (config built without validation).
    #[error("provider {provider}: generic settings: {what}")]
    InvalidGeneric {
        /// Provider id.
        provider: String,
        /// What is wrong.
        what: String,
    },
    /// This build has no adapter for the kind.
    #[error("provider {provider}: kind {kind} is not supported by this build")]
    Unsupported {
        /// Provider id.
        provider: String,
        /// The kind.
        kind: &'static str,
    },
}

/// Builds the adapter for a provider.
pub fn build(config: &ProviderConfig, settings: &AdapterSettings) -> Result<Arc<dyn Provider>, AdapterError> {
    match config.kind {
        ProviderKind::InfobipRcs | ProviderKind::InfobipSms | ProviderKind::JiocxRcs => {
            Ok(Arc::new(infobip::InfobipAdapter::new(config.clone(), settings)?))
        }
        ProviderKind::GenericRcs | ProviderKind::GenericSms => {
            Ok(Arc::new(generic::GenericAdapter::new(config.clone(), settings)?))
        }
    }
}

//! callback-ingest: the HTTP endpoint providers call with delivery reports, inbound
//! messages and events.
//!
//! Each provider has its own URL embedding a secret token,
//! `POST /callbacks/<provider>/<token>` (optionally with a trailing `/<anything>`, for
//! portals that want distinct URLs per report kind). A callback is authenticated,
//! parsed by the provider's adapter into normalised events (one per result in a batch),
//! and every event is published **with publisher confirms before** the 2xx answer. If
//! the broker is unavailable the answer is 503 so the provider retries.

mod broker;
mod handler;

use std::{collections::HashMap, sync::Arc};

use sendfleet_config::{Config, Secret};
use sendfleet_providers::{AdapterError, AdapterSettings, Provider};
use sendfleet_telemetry::Readiness;
use tokio_util::sync::CancellationToken;

pub use handler::router;

/// Why callback-ingest stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A provider adapter could not be built.
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    /// The listener failed.
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    /// The SMS fallback store cannot be set up (Redis URL).
    #[error(transparent)]
    Fallback(#[from] sendfleet_fallback::FallbackError),
}

/// A provider as callback-ingest sees it.
pub(crate) struct IngestProvider {
    pub adapter: Arc<dyn Provider>,
    pub token: Secret,
    pub basic_auth: Option<(String, Secret)>,
}

/// Shared state of the handlers.
pub struct IngestState {
    pub(crate) providers: HashMap<String, IngestProvider>,
    pub(crate) broker: broker::BrokerSlot,
    pub(crate) max_body_bytes: usize,
    /// SMS fallbacks fired/disarmed by RCS reports (when an RCS provider has them).
    pub(crate) fallbacks: Option<sendfleet_fallback::Fallbacks>,
}

impl IngestState {
    /// Builds the state for a config (no broker connection yet).
    pub fn new(config: &Config) -> Result<IngestState, IngestError> {
        let settings = AdapterSettings::default();
        let mut providers = HashMap::new();
        for provider in &config.providers {
            let basic_auth = provider.callback_basic_auth.as_ref().map(|b| (b.username.clone(), b.password.clone()));
            providers.insert(
                provider.id.clone(),
                IngestProvider {
                    adapter: sendfleet_providers::build(provider, &settings)?,
                    token: provider.callback_token.clone(),
                    basic_auth,
                },
            );
        }
        Ok(IngestState {
            providers,
            broker: broker::BrokerSlot::new(&config.broker),
            max_body_bytes: config.callback_ingest.max_body_bytes,
            fallbacks: config
                .providers
                .iter()
                .any(|p| p.channel() == sendfleet_protocol::Channel::Rcs)
                .then(|| sendfleet_fallback::Fallbacks::connect(config))
                .transpose()?,
        })
    }
}

/// Each provider's callback URL (`<public_base_url>/callbacks/<id>/<token>`), for the
/// vendor portal. Providers without a callback token have none.
pub fn callback_urls(config: &Config) -> Vec<(String, Option<String>)> {
    let settings = AdapterSettings { callback_base_url: config.callback_ingest.public_base_url.clone() };
    config.providers.iter().map(|p| (p.id.clone(), settings.callback_url(p))).collect()
}

/// Runs callback-ingest until `shutdown`: keeps a broker connection, serves callbacks,
/// `/metrics` and `/health` on `listener`, and on shutdown finishes in-flight callbacks.
pub async fn run(
    config: Arc<Config>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let metrics = sendfleet_telemetry::metrics::install();
    let readiness = Readiness::default();
    let state = Arc::new(IngestState::new(&config)?);
    register_metrics(&config);
    // The broker outlives the HTTP server: in-flight callbacks still publish after
    // shutdown stops new ones from being accepted.
    let broker_stop = CancellationToken::new();
    let keeper =
        tokio::spawn(broker::keep_connected(state.clone(), config.clone(), readiness.clone(), broker_stop.clone()));
    let app = sendfleet_telemetry::ops_router(metrics, readiness).merge(router(state));
    let served = sendfleet_telemetry::serve(listener, app, shutdown).await;
    broker_stop.cancel();
    keeper.await.ok();
    served?;
    Ok(())
}

/// Registers every provider's refusal series at zero, so rates and alerts on them work
/// from the first scrape.
fn register_metrics(config: &Config) {
    use sendfleet_telemetry::metrics::{CALLBACKS_TOTAL, FALLBACKS_TOTAL};
    for provider in &config.providers {
        for reason in sendfleet_fallback::FallbackReason::ALL {
            metrics::counter!(FALLBACKS_TOTAL, "provider" => provider.id.clone(), "reason" => reason.as_str())
                .absolute(0);
        }
        for outcome in ["unauthorized", "malformed", "too_large", "broker_unavailable"] {
            metrics::counter!(CALLBACKS_TOTAL, "provider" => provider.id.clone(), "kind" => "unknown", "outcome" => outcome)
                .absolute(0);
        }
    }
}

//! callback-ingest: the HTTP endpoint providers call with delivery reports, inbound
//! messages and events.
//!
//! Each provider has its own URL embedding a secret token,
//! `POST /callbacks/<provider>/<token>` (optionally with a trailing `/<kind>`, one of
//! [`ROUTE_KINDS`], for portals that want distinct URLs per report kind; see
//! [`callback_urls`]). A callback is authenticated,
//! parsed by the provider's adapter into normalised events (one per result in a batch;
//! a result that cannot be read is counted, logged and skipped, the others still go
//! through), and every event is published **with publisher confirms before** the 2xx
//! answer. If the broker is unavailable the answer is 503 so the provider retries.
//!
//! Publishing and SMS fallback firing run in a task of their own that the handler awaits,
//! so a provider's client that disconnects (dropping the handler) cannot cancel a fire
//! halfway. At most `callback_ingest.max_in_flight` callbacks are handled at once; beyond
//! that, and while the broker blocks the connection (memory or disk alarm), callbacks are
//! answered 503 with `Retry-After` at once rather than piling up.

mod broker;
mod handler;

use std::{collections::HashMap, sync::Arc, time::Duration};

use sendfleet_config::{Config, Secret};
use sendfleet_providers::{AdapterError, AdapterSettings, Provider, unlimited};
use sendfleet_telemetry::Readiness;
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use handler::{ROUTE_KINDS, router};

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
    /// The broker cannot be used as configured (a queue exists with other arguments).
    #[error(transparent)]
    Broker(#[from] sendfleet_broker::BrokerError),
    /// The message status store cannot be set up (Redis URL).
    #[error(transparent)]
    Status(#[from] sendfleet_status::StatusError),
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
    /// One permit per callback in flight (`callback_ingest.max_in_flight`).
    pub(crate) in_flight: Arc<Semaphore>,
    /// The bound, for the 503's reason.
    pub(crate) max_in_flight: usize,
    /// The callbacks' publish-and-fire tasks, waited for at shutdown.
    pub(crate) tasks: TaskTracker,
    /// Status records of the reports' messages (never waited for).
    pub(crate) status: sendfleet_status::StatusWriter,
}

impl IngestState {
    /// Builds the state for a config (no broker connection yet). Inside a tokio runtime:
    /// it starts the status writer's task.
    pub fn new(config: &Config) -> Result<IngestState, IngestError> {
        // The public base URL: a vendor that signs its callbacks signs the URL it called.
        let settings = AdapterSettings { callback_base_url: config.callback_ingest.public_base_url.clone() };
        let mut providers = HashMap::new();
        for provider in &config.providers {
            let basic_auth = provider.callback_basic_auth.as_ref().map(|b| (b.username.clone(), b.password.clone()));
            providers.insert(
                provider.id.clone(),
                IngestProvider {
                    // Only parses callbacks, never sends: no rate gate needed.
                    adapter: sendfleet_providers::build(provider, &settings, sendfleet_providers::unlimited())?,
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
            in_flight: Arc::new(Semaphore::new(config.callback_ingest.max_in_flight.max(1))),
            max_in_flight: config.callback_ingest.max_in_flight.max(1),
            tasks: TaskTracker::new(),
            status: sendfleet_status::StatusWriter::start(config)?,
        })
    }
}

/// One URL to paste into a vendor's portal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallbackUrl {
    /// What the portal calls it, and where to paste it.
    pub purpose: &'static str,
    /// The URL (embeds the provider's secret token).
    pub url: String,
}

/// A provider's callback URLs, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProviderCallbackUrls {
    /// Provider id.
    pub provider: String,
    /// The URLs; empty when `callback_ingest.public_base_url` or the provider's
    /// `callback_token_env` is not set.
    pub urls: Vec<CallbackUrl>,
}

impl ProviderCallbackUrls {
    /// The lines `callback-urls` prints: `provider<TAB>purpose<TAB>url` per URL, or one
    /// line saying why the provider has none.
    pub fn lines(&self) -> Vec<String> {
        if self.urls.is_empty() {
            return vec![format!(
                "{}\t(no URL: set callback_ingest.public_base_url and the provider's callback_token_env)",
                self.provider
            )];
        }
        self.urls.iter().map(|url| format!("{}\t{}\t{}", self.provider, url.purpose, url.url)).collect()
    }
}

/// Each provider's callback URLs, `<public_base_url>/callbacks/<id>/<token>/<kind>`, one
/// per webhook its portal asks for: delivery reports and inbound messages for every
/// provider, plus seen reports and events (typing, conversation started) for RCS. Any
/// of them accepts every kind (the body's shape decides), so one URL for everything
/// also works, as JioCX's single callback URL needs.
pub fn callback_urls(config: &Config) -> Vec<ProviderCallbackUrls> {
    let settings = AdapterSettings { callback_base_url: config.callback_ingest.public_base_url.clone() };
    config
        .providers
        .iter()
        .map(|provider| {
            let urls =
                match (settings.callback_url(provider), sendfleet_providers::build(provider, &settings, unlimited())) {
                    (Some(base), Ok(adapter)) => adapter
                        .webhooks()
                        .into_iter()
                        .map(|webhook| CallbackUrl {
                            purpose: webhook.purpose,
                            url: format!("{base}/{}", webhook.route_kind),
                        })
                        .collect(),
                    // No URL, or an adapter that cannot be built (config loaded without
                    // validation): nothing to paste.
                    _ => Vec::new(),
                };
            ProviderCallbackUrls { provider: provider.id.clone(), urls }
        })
        .collect()
}

/// Runs callback-ingest until `shutdown`: keeps a broker connection, serves callbacks,
/// `/metrics` and `/health` on `listener`, and on shutdown finishes in-flight callbacks
/// (their publish-and-fire tasks too, for at most `callback_ingest.shutdown_grace_seconds`).
pub async fn run(
    config: Arc<Config>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let metrics = sendfleet_telemetry::metrics::install();
    sendfleet_telemetry::metrics::record_process("callback-ingest", &config.broker);
    sendfleet_telemetry::metrics::RedisStore::register(&[sendfleet_telemetry::metrics::RedisStore::Fallback]);
    let readiness = Readiness::default();
    let state = Arc::new(IngestState::new(&config)?);
    register_metrics(&config);
    // The broker outlives the HTTP server: in-flight callbacks still publish after
    // shutdown stops new ones from being accepted.
    let broker_stop = CancellationToken::new();
    // A fatal broker error (a queue declared with other arguments) stops the server too.
    let stop_server = shutdown.child_token();
    let keeper = tokio::spawn({
        let (state, config, readiness, broker_stop, stop_server) =
            (state.clone(), config.clone(), readiness.clone(), broker_stop.clone(), stop_server.clone());
        async move {
            let kept = broker::keep_connected(state, config, readiness, broker_stop).await;
            stop_server.cancel();
            kept
        }
    });
    let app = sendfleet_telemetry::ops_router(metrics, readiness).merge(router(state.clone()));
    let served = sendfleet_telemetry::serve(listener, app, stop_server).await;
    // A task whose client disconnected is no longer tracked by the server: let it settle
    // while the broker is still there.
    state.tasks.close();
    let grace = Duration::from_secs(config.callback_ingest.shutdown_grace_seconds);
    if tokio::time::timeout(grace, state.tasks.wait()).await.is_err() {
        tracing::warn!(left = state.tasks.len(), "callback tasks still running at the end of the grace period");
    }
    state.status.flush(Duration::from_secs(2)).await;
    broker_stop.cancel();
    let kept = keeper.await.unwrap_or(Ok(()));
    served?;
    kept?;
    Ok(())
}

/// Registers every provider's refusal and rejection series at zero, so rates and alerts
/// on them work from the first scrape.
fn register_metrics(config: &Config) {
    use sendfleet_telemetry::metrics::{CALLBACK_REPORTS_REJECTED_TOTAL, CALLBACKS_TOTAL, FALLBACKS_TOTAL};
    for provider in &config.providers {
        for reason in sendfleet_fallback::FallbackReason::ALL {
            metrics::counter!(FALLBACKS_TOTAL, "provider" => provider.id.clone(), "reason" => reason.as_str())
                .absolute(0);
        }
        for reason in sendfleet_providers::CallbackError::LABELS {
            metrics::counter!(CALLBACK_REPORTS_REJECTED_TOTAL, "provider" => provider.id.clone(), "reason" => reason)
                .absolute(0);
        }
        for outcome in [
            "unauthorized",
            "bad_signature",
            "malformed",
            "unrecognised",
            "too_large",
            "broker_unavailable",
            "broker_blocked",
            "overloaded",
            "fallback_unavailable",
            "fallback_in_progress",
        ] {
            metrics::counter!(CALLBACKS_TOTAL, "provider" => provider.id.clone(), "kind" => "any", "outcome" => outcome)
                .absolute(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};
    use tower::ServiceExt;

    use super::*;

    const TOML: &str = r#"
[callback_ingest]
public_base_url = "https://hooks.example.com/"

[[providers]]
id = "ib-sms"
kind = "infobip_sms"
base_url = "https://x.api.infobip.com"
api_key_env = "KEY"
sender_ids = ["ACME"]
callback_token_env = "TOKEN"

[[providers]]
id = "ib-rcs"
kind = "infobip_rcs"
base_url = "https://x.api.infobip.com"
api_key_env = "KEY"
sender_ids = ["Agent"]
callback_token_env = "TOKEN"

[[providers]]
id = "no-token"
kind = "infobip_sms"
base_url = "https://x.api.infobip.com"
api_key_env = "KEY"
sender_ids = ["ACME"]
"#;

    fn config() -> Config {
        let lookup = |name: &str| match name {
            "KEY" => Some("key".to_owned()),
            "TOKEN" => Some("tok-0123456789abcdef".to_owned()),
            _ => None,
        };
        Config::from_toml(TOML, &lookup, &sendfleet_providers::VENDORS).expect("config")
    }

    #[test]
    fn callback_urls_name_every_webhook_of_each_provider() {
        let urls = callback_urls(&config());
        let sms: Vec<&str> = urls[0].urls.iter().map(|u| u.url.as_str()).collect();
        assert_eq!(
            sms,
            [
                "https://hooks.example.com/callbacks/ib-sms/tok-0123456789abcdef/delivery",
                "https://hooks.example.com/callbacks/ib-sms/tok-0123456789abcdef/inbound",
            ]
        );
        assert!(urls[0].urls[1].purpose.contains("MO_JSON_2"));
        let rcs: Vec<&str> = urls[1].urls.iter().map(|u| u.url.rsplit('/').next().unwrap_or("")).collect();
        assert_eq!(rcs, ["delivery", "inbound", "seen", "events"]);
        assert!(urls[1].urls[1].purpose.contains("MO_OTT_MSISDN"));
        assert!(urls[2].urls.is_empty(), "no token, no URL");
        assert_eq!(
            urls[0].lines()[0],
            "ib-sms\tdelivery reports\thttps://hooks.example.com/callbacks/ib-sms/tok-0123456789abcdef/delivery"
        );
        let none = urls[2].lines();
        assert!(none.len() == 1 && none[0].starts_with("no-token\t(no URL: "), "{none:?}");
        for url in urls.iter().flat_map(|p| &p.urls) {
            let kind = url.url.rsplit('/').next().unwrap_or("");
            assert!(ROUTE_KINDS.contains(&kind), "{kind} is routed");
        }
    }

    #[tokio::test]
    async fn a_good_callback_without_a_broker_is_answered_503() {
        let app = router(Arc::new(IngestState::new(&config()).expect("state")));
        let body =
            std::fs::read(format!("{}/../../fixtures/infobip/sms-dlr-delivered.json", env!("CARGO_MANIFEST_DIR")))
                .expect("fixture");
        let request = Request::post("/callbacks/ib-sms/tok-0123456789abcdef/delivery")
            .body(Body::from(body.clone()))
            .expect("request");
        let response = app.clone().oneshot(request).await.expect("answer");
        assert_eq!(response.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        // A provider without a token accepts nothing, not even an empty token.
        let request = Request::post("/callbacks/no-token/x").body(Body::from(body)).expect("request");
        let response = app.oneshot(request).await.expect("answer");
        assert_eq!(response.status(), axum::http::StatusCode::UNAUTHORIZED);
    }

    /// A connection status whose blocked state the test sets (a real memory alarm would
    /// block every test on the shared broker).
    struct Flag(std::sync::atomic::AtomicBool);

    impl broker::Blocking for Flag {
        fn blocked(&self) -> bool {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn while_the_broker_blocks_the_connection_callbacks_are_answered_503_at_once() {
        let ns = sendfleet_test_support::Namespace::new("cb-blocked", &["ib-sms", "ib-rcs", "no-token"]);
        let toml = format!(
            "[broker]\nurl = \"{}\"\nprefix = \"{prefix}\"\n[redis]\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\n{TOML}",
            sendfleet_test_support::amqp_url(),
            sendfleet_test_support::redis_url(),
            prefix = ns.prefix,
        );
        let lookup = |name: &str| match name {
            "KEY" => Some("key".to_owned()),
            "TOKEN" => Some("tok-0123456789abcdef".to_owned()),
            _ => None,
        };
        let config = Config::from_toml(&toml, &lookup, &sendfleet_providers::VENDORS).expect("config");
        let connection = ns.connect().await;
        let channel = connection.create_channel().await.expect("channel");
        ns.topology().declare(&channel, &config.provider_ids()).await.expect("declare");
        let state = Arc::new(IngestState::new(&config).expect("state"));
        let blocked = Arc::new(Flag(std::sync::atomic::AtomicBool::new(true)));
        let publisher = sendfleet_broker::Publisher::open(&connection).await.expect("publisher");
        state.broker.set(Some(broker::Connected { publisher, status: blocked.clone() }));
        let app = router(state);
        let body =
            std::fs::read(format!("{}/../../fixtures/infobip/sms-dlr-delivered.json", env!("CARGO_MANIFEST_DIR")))
                .expect("fixture");
        let post = || {
            Request::post("/callbacks/ib-sms/tok-0123456789abcdef/delivery")
                .body(Body::from(body.clone()))
                .expect("request")
        };
        let started = std::time::Instant::now();
        let response = app.clone().oneshot(post()).await.expect("answer");
        assert_eq!(response.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "at once, not after a publish timeout");
        assert!(response.headers().contains_key(axum::http::header::RETRY_AFTER));
        blocked.0.store(false, std::sync::atomic::Ordering::SeqCst);
        let response = app.oneshot(post()).await.expect("answer");
        assert_eq!(response.status(), axum::http::StatusCode::OK, "unblocked: published");
        drop(connection.close(200, "".into()).await);
        ns.cleanup().await;
    }
}

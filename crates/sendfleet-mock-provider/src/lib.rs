//! A mock of the providers' HTTP APIs, for tests, the demo and the bench.
//!
//! It also implements our Generic RCS/SMS API (`/generic/rcs`, `/generic/sms`, with an
//! OAuth token endpoint at `/oauth/token`), see the `generic` module.
//!
//! It speaks Infobip's wire format (SMS `/sms/3/messages`, RCS `/rcs/2/messages`,
//! which JioCX shares): it checks `Authorization: App <key>`, validates every body
//! against JSON Schemas extracted from Infobip's OpenAPI spec (answering violations with
//! Infobip's `E400` error body), records what it received with arrival timestamps,
//! answers with Infobip-shaped responses after a configurable latency, and posts
//! delivery reports to the `webhooks.delivery.url` each message names (or a default).
//!
//! It also answers Infobip's synchronous RCS capability check
//! (`/rcs/2/capability-check/query`) from the same "not RCS capable" knobs its RCS
//! delivery reports use, and counts how many queries and numbers it was asked.
//!
//! It speaks Twilio's Messages API too (`/2010-04-01/Accounts/{AccountSid}/Messages.json`,
//! form-encoded, validated against Twilio's published `CreateMessageRequest`), and posts
//! status callbacks signed with `X-Twilio-Signature`; see the `twilio` module.
//!
//! Behaviour (latency, error ratios, forced statuses, DLR outcomes) can change while it
//! runs: through [`MockHandle::set_behaviour`] in-process, or `PUT /mock/behaviour`.

mod behaviour;
mod dlr;
mod generic;
mod handler;
mod record;
mod twilio;
mod validate;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

pub use behaviour::{Behaviour, GenericAuth};
pub use record::{CapabilityStats, Received, Stats, max_in_flight};
pub use twilio::{MOCK_RCS_AGENT, MOCK_SMS_SENDER, sign as twilio_signature};

/// Start-up settings of the mock.
#[derive(Debug, Clone, Default)]
pub struct MockConfig {
    /// API keys accepted in `Authorization: App <key>` (any of them).
    pub api_keys: Vec<String>,
    /// Where delivery reports go when a message names no `webhooks.delivery.url`.
    pub default_dlr_url: Option<String>,
    /// Initial behaviour.
    pub behaviour: Behaviour,
    /// The Twilio Auth Token callbacks are signed with; absent: the first API key.
    pub twilio_auth_token: Option<String>,
}

pub(crate) struct State {
    pub api_keys: Vec<String>,
    pub default_dlr_url: Option<String>,
    pub behaviour: RwLock<Behaviour>,
    pub record: record::Recorder,
    pub dlr: dlr::DlrSender,
    pub validators: validate::Validators,
    pub oauth: generic::OAuthServer,
    pub twilio_auth_token: String,
    pub twilio_callbacks: std::sync::atomic::AtomicU64,
    pub callback_client: reqwest::Client,
}

impl State {
    pub fn twilio_auth_token(&self) -> &str {
        &self.twilio_auth_token
    }
}

/// A running mock provider.
#[derive(Clone)]
pub struct MockHandle {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: CancellationToken,
}

/// Why the mock cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// A bundled schema failed to compile (a build problem).
    #[error("schema {0}: {1}")]
    Schema(&'static str, String),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Starts the mock on `listener`; it runs until `shutdown` is cancelled.
pub async fn start(
    listener: tokio::net::TcpListener,
    config: MockConfig,
    shutdown: CancellationToken,
) -> Result<MockHandle, MockError> {
    let addr = listener.local_addr()?;
    let state = Arc::new(State {
        api_keys: config.api_keys.clone(),
        default_dlr_url: config.default_dlr_url,
        behaviour: RwLock::new(config.behaviour),
        record: record::Recorder::default(),
        dlr: dlr::DlrSender::start(shutdown.clone()),
        validators: validate::Validators::load()?,
        oauth: generic::OAuthServer::default(),
        twilio_auth_token: config
            .twilio_auth_token
            .clone()
            .or_else(|| config.api_keys.first().cloned())
            .unwrap_or_default(),
        twilio_callbacks: std::sync::atomic::AtomicU64::new(0),
        callback_client: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default(),
    });
    let router = handler::router(state.clone());
    let token = shutdown.clone();
    tokio::spawn(async move {
        if let Err(err) = sendfleet_telemetry::serve(listener, router, token).await {
            tracing::error!(error = %err, "mock provider server failed");
        }
    });
    Ok(MockHandle { addr, state, shutdown })
}

impl MockHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`: the base URL to configure providers with.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the behaviour from now on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.state.behaviour.write() = behaviour;
    }

    /// The current behaviour.
    pub fn behaviour(&self) -> Behaviour {
        self.state.behaviour.read().clone()
    }

    /// Every request received so far (bodies only if `record_bodies`).
    pub fn received(&self) -> Vec<Received> {
        self.state.record.received()
    }

    /// Counters and arrival timestamps.
    pub fn stats(&self) -> Stats {
        self.state.record.stats()
    }

    /// What the capability endpoint was asked.
    pub fn capability_stats(&self) -> CapabilityStats {
        self.state.record.capability()
    }

    /// Forgets everything received.
    pub fn reset(&self) {
        self.state.record.reset();
    }

    /// Delivery reports posted and acknowledged with 2xx by their receiver.
    pub fn dlrs_delivered(&self) -> u64 {
        self.state.dlr.delivered()
    }

    /// Waits until at least `count` send requests were answered 2xx, or `timeout`.
    /// Returns the count reached.
    pub async fn wait_for_accepted(&self, count: u64, timeout: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let accepted = self.state.record.accepted();
            if accepted >= count || tokio::time::Instant::now() >= deadline {
                return accepted;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `POST /oauth/token` requests received (any outcome).
    pub fn oauth_token_requests(&self) -> u64 {
        self.state.oauth.requests()
    }

    /// OAuth tokens issued.
    pub fn oauth_tokens_issued(&self) -> u64 {
        self.state.oauth.issued()
    }

    /// Generic sends refused because their bearer token was unknown, revoked or expired.
    pub fn oauth_tokens_refused(&self) -> u64 {
        self.state.oauth.refused_tokens()
    }

    /// Invalidates every issued OAuth token: the next Generic send using one gets a 401.
    pub fn revoke_tokens(&self) {
        self.state.oauth.revoke_all();
    }

    /// Twilio status callbacks posted and answered 2xx.
    pub fn twilio_callbacks_delivered(&self) -> u64 {
        self.state.twilio_callbacks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the server and the report sender.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

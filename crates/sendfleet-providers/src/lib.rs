//! Provider adapters.
//!
//! A provider is one module behind the [`Provider`] trait: it turns a [`SendJob`] into
//! the vendor's HTTP request, classifies the answer into a [`SendOutcome`], and parses
//! the vendor's callbacks into normalised [`Event`]s. Request building and
//! classification are pure functions, unit-tested beside the code; only
//! [`Provider::send`] touches the network.
//!
//! A vendor owns everything about it: its config section and checks, request building,
//! answer classification, callback authentication and parsing, its webhooks and what it
//! can do. Adding one is one module plus its tests, and one line in [`VENDORS`]
//! (`docs/adding-a-vendor.md`).

mod gate;
pub mod generic;
pub mod http;
pub mod infobip;
mod outcome;
mod registry;
pub mod twilio;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sendfleet_config::ProviderConfig;
use sendfleet_protocol::{Event, SendJob};

pub use gate::{GateError, RequestGate, Unlimited, unlimited};
pub use outcome::{RejectCode, SendOutcome, TransientCode};
pub use registry::{VENDORS, Vendor, Vendors};
// `Capability` and `CapabilityError` are defined below, next to the trait that returns them.

/// What every provider adapter offers.
pub trait Provider: Send + Sync {
    /// The provider's config.
    fn config(&self) -> &ProviderConfig;

    /// Gets what the next [`Provider::send`] needs before its first request (an OAuth
    /// token), making any request that takes through the adapter's [`RequestGate`].
    ///
    /// Call it *before* taking the rate slot for the send: a task that waited for a
    /// token fetch on a slot taken earlier would use that slot late, and the sends
    /// queued on one fetch would then all go out at once, above the cap. Prepared
    /// first, each of them takes its slot when it can use it. An `Err` is the outcome
    /// of the send that was not made (token endpoint refused or down, no slot).
    fn prepare(&self) -> BoxFuture<'_, Result<(), SendOutcome>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Sends one job and classifies the answer. Never panics, never returns an error:
    /// network failures are [`SendOutcome::Transient`].
    ///
    /// The caller has taken one rate slot for the first request; every further request
    /// (a token fetch it could not avoid, the resend after a 401) takes its own slot
    /// through the adapter's [`RequestGate`].
    fn send<'a>(&'a self, job: &'a SendJob) -> BoxFuture<'a, SendOutcome>;

    /// Authenticates a callback the vendor's own way (a signature over URL and body, say;
    /// the URL token and Basic auth are checked before, for every vendor) and parses it
    /// (delivery reports, inbound messages, …) report by report: an event per good result
    /// of a batch, and the index and reason of each result that cannot be read. `Err`
    /// for a callback that fails authentication, and for a body of no known shape at all
    /// (no report can be read from it).
    fn parse_callback(&self, request: &CallbackRequest<'_>) -> Result<ParsedCallback, CallbackError>;

    /// The webhooks to set in the vendor's portal, in its words, each with the route kind
    /// (`delivery`, `inbound`, …) of its URL. Any URL accepts every kind; the list is what
    /// an operator pastes where.
    fn webhooks(&self) -> Vec<Webhook> {
        let mut webhooks =
            vec![Webhook::new("delivery reports", "delivery"), Webhook::new("inbound messages", "inbound")];
        if self.config().channel() == sendfleet_protocol::Channel::Rcs {
            webhooks.push(Webhook::new("seen reports", "seen"));
            webhooks.push(Webhook::new("events (typing, conversation started)", "events"));
        }
        webhooks
    }

    /// Asks whether each number (E.164) can receive RCS from `sender`, in one query.
    /// Adapters without a capability endpoint answer [`CapabilityError::Unsupported`].
    fn check_capability<'a>(
        &'a self,
        sender: &'a str,
        numbers: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, Capability)>, CapabilityError>> {
        let _ = (sender, numbers);
        Box::pin(async { Err(CapabilityError::Unsupported) })
    }

    /// The most numbers one capability query may ask about; 0 when the provider has no
    /// capability endpoint (the worker then never checks).
    fn capability_batch_size(&self) -> usize {
        0
    }

    /// Whether the provider takes outbound RCS events (typing indicator, read receipt).
    fn sends_outbound_events(&self) -> bool {
        false
    }

    /// Sends an outbound RCS event and returns the raw answer. Providers without them
    /// answer a rejection (check [`Provider::sends_outbound_events`] first).
    fn send_event<'a>(&'a self, event: &'a OutboundEvent) -> BoxFuture<'a, RawAnswer> {
        let _ = event;
        let reason = format!("provider {} has no outbound RCS events", self.config().id);
        Box::pin(async move { RawAnswer::refused(RejectCode::UnsupportedContent, reason) })
    }

    /// Sends one job and returns the provider's raw answer beside the classification
    /// (for *Send Test*, where an operator wants to see exactly what came back).
    /// Adapters that do not override it report the outcome without the raw answer.
    fn send_raw<'a>(&'a self, job: &'a SendJob) -> BoxFuture<'a, RawAnswer> {
        Box::pin(async move {
            let outcome = self.send(job).await;
            RawAnswer { http_status: None, provider_message_id: None, body: String::new(), outcome }
        })
    }
}

/// An outbound RCS event: what the agent tells the user's device besides messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundEvent {
    /// "The agent is typing" (shown about five seconds on the device).
    TypingIndicator {
        /// Destination, E.164.
        to: String,
        /// Sender (RCS agent); empty means the provider's default sender.
        sender: String,
    },
    /// Read receipt for an inbound (MO) message.
    ReadReceipt {
        /// Destination (the user who wrote), E.164.
        to: String,
        /// Sender (RCS agent); empty means the provider's default sender.
        sender: String,
        /// The inbound message's id.
        message_id: String,
    },
}

/// A callback as callback-ingest received it: what a vendor's authentication may sign.
#[derive(Debug, Clone, Copy)]
pub struct CallbackRequest<'a> {
    /// The path and query string as received (`/callbacks/<id>/<token>/<kind>?…`); the
    /// public URL the vendor called is [`AdapterSettings::callback_base_url`] followed by it.
    pub path_and_query: &'a str,
    /// The request headers.
    pub headers: &'a reqwest::header::HeaderMap,
    /// The body.
    pub body: &'a [u8],
}

impl<'a> CallbackRequest<'a> {
    /// A request with only a body (tests, and vendors that sign nothing).
    pub fn body_only(body: &'a [u8]) -> CallbackRequest<'a> {
        static NO_HEADERS: std::sync::LazyLock<reqwest::header::HeaderMap> =
            std::sync::LazyLock::new(reqwest::header::HeaderMap::new);
        CallbackRequest { path_and_query: "/", headers: &NO_HEADERS, body }
    }
}

/// One webhook of a vendor's portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// What the portal calls it, and where to paste it.
    pub purpose: &'static str,
    /// The last segment of its URL (one of callback-ingest's route kinds).
    pub route_kind: &'static str,
}

impl Webhook {
    /// A webhook.
    pub fn new(purpose: &'static str, route_kind: &'static str) -> Webhook {
        Webhook { purpose, route_kind }
    }
}

/// Whether a number can receive RCS, as the worker uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Can receive RCS from this sender.
    Enabled,
    /// Cannot (unreachable, network or route not available): send the SMS fallback.
    NotCapable,
    /// The number itself is invalid: neither RCS nor SMS will reach it.
    InvalidNumber,
    /// The provider could not tell (request failed, processing error, unknown code):
    /// send RCS anyway and let the delivery report decide.
    Unknown,
}

impl Capability {
    /// The metrics label and cache letter source.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Enabled => "enabled",
            Capability::NotCapable => "not_capable",
            Capability::InvalidNumber => "invalid_number",
            Capability::Unknown => "unknown",
        }
    }
}

/// Why a capability query gave no answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// The provider has no capability endpoint.
    #[error("capability check not supported by this provider")]
    Unsupported,
    /// The provider throttled the query (429).
    #[error("capability check throttled")]
    Throttled,
    /// Transport error, 5xx, auth failure or an unreadable answer.
    #[error("capability check failed: {0}")]
    Failed(String),
}

/// A provider's answer to one send, as received.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    /// HTTP status; `None` when no answer came (timeout, connection error) or the
    /// adapter does not expose it.
    pub http_status: Option<u16>,
    /// The provider's message id from the answer, when it gives one.
    pub provider_message_id: Option<String>,
    /// The answer body as text (lossy UTF-8).
    pub body: String,
    /// How the answer is classified.
    pub outcome: SendOutcome,
}

impl RawAnswer {
    /// No request was made: the adapter refused it for good with `code` and `reason`.
    pub fn refused(code: RejectCode, reason: String) -> RawAnswer {
        RawAnswer {
            http_status: None,
            provider_message_id: None,
            body: String::new(),
            outcome: SendOutcome::Rejected { code, reason, status: None, error: None },
        }
    }
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

/// A callback body, or one report of it, that cannot be turned into events. The text is
/// the 400 reason.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CallbackError {
    /// Not JSON, JSON of no known shape, or a field of the wrong type.
    #[error("malformed callback body: {0}")]
    Malformed(String),
    /// Well-formed, but nothing this provider sends (an unknown event type or status).
    #[error("unrecognised callback: {0}")]
    Unrecognised(String),
    /// The vendor's own authentication failed (a missing or wrong signature): 401.
    #[error("callback not authenticated: {0}")]
    Unauthenticated(String),
}

impl CallbackError {
    /// The metrics label: `malformed` or `unrecognised`.
    pub fn label(&self) -> &'static str {
        match self {
            CallbackError::Malformed(_) => "malformed",
            CallbackError::Unrecognised(_) => "unrecognised",
            CallbackError::Unauthenticated(_) => "unauthenticated",
        }
    }

    /// The reason without the kind's prefix.
    pub fn reason(&self) -> &str {
        match self {
            CallbackError::Malformed(reason)
            | CallbackError::Unrecognised(reason)
            | CallbackError::Unauthenticated(reason) => reason,
        }
    }

    /// The labels of errors about one report, for registering metric series at zero
    /// (`unauthenticated` is about a whole callback).
    pub const LABELS: [&'static str; 2] = ["malformed", "unrecognised"];
}

/// A callback body read report by report. One bad report must not refuse the batch:
/// providers do not retry a 4xx, so every good report of the body would be lost with it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedCallback {
    /// One event per good report, in order (pending delivery reports yield none).
    pub events: Vec<Event>,
    /// The reports that could not be read, in order.
    pub rejected: Vec<RejectedReport>,
    /// How many reports the body held (good, rejected and eventless).
    pub reports: usize,
}

impl ParsedCallback {
    /// Collects per-report results (`Ok(None)`: a report with no event, e.g. pending).
    pub fn collect(results: impl ExactSizeIterator<Item = Result<Option<Event>, CallbackError>>) -> ParsedCallback {
        let mut parsed =
            ParsedCallback { events: Vec::with_capacity(results.len()), rejected: Vec::new(), reports: results.len() };
        for (index, result) in results.enumerate() {
            match result {
                Ok(Some(event)) => parsed.events.push(event),
                Ok(None) => {}
                Err(error) => parsed.rejected.push(RejectedReport { index, error }),
            }
        }
        parsed
    }

    /// Whether every report of a non-empty body was rejected: nothing can be accepted,
    /// so the body is refused (400) with the reasons.
    pub fn all_rejected(&self) -> bool {
        self.reports > 0 && self.rejected.len() == self.reports
    }

    /// Test shorthand: the events when nothing was rejected, else the first rejected
    /// report as a body error naming its index (the answer before per-report parsing).
    #[cfg(test)]
    pub(crate) fn strict(self) -> Result<Vec<Event>, CallbackError> {
        match self.rejected.into_iter().next() {
            None => Ok(self.events),
            Some(RejectedReport { index, error }) => Err(match error {
                CallbackError::Malformed(m) => CallbackError::Malformed(format!("results[{index}]: {m}")),
                CallbackError::Unrecognised(m) => CallbackError::Unrecognised(format!("results[{index}]: {m}")),
                other @ CallbackError::Unauthenticated(_) => other,
            }),
        }
    }
}

/// One report of a callback body that could not be turned into an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedReport {
    /// Its index in the body's list of reports (`results[index]`).
    pub index: usize,
    /// Why it was rejected.
    pub error: CallbackError,
}

impl std::fmt::Display for RejectedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "results[{}] {}: {}", self.index, self.error.label(), self.error.reason())
    }
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
    /// A configured URL does not parse (config built without validation).
    #[error("provider {provider}: invalid URL: {reason}")]
    InvalidUrl {
        /// Provider id.
        provider: String,
        /// Why it does not parse.
        reason: String,
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
    /// A vendor section is missing or unusable (config built without validation).
    #[error("provider {provider}: settings: {what}")]
    InvalidSettings {
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
        kind: String,
    },
}

/// Whether the provider's API can carry `job` at all (content, options), checked without
/// a request so the dispatcher can refuse a request the adapter would refuse anyway.
/// `Err` holds the reason. Vendors that take everything the protocol has answer `Ok`.
pub fn check_job(config: &ProviderConfig, job: &SendJob) -> Result<(), String> {
    match VENDORS.of(&config.kind) {
        Some(vendor) => (vendor.check_job)(config, job),
        None => Ok(()),
    }
}

/// Builds the adapter for a provider. `gate` gives the slots for requests beyond a
/// send's first (see [`RequestGate`]): the worker passes its rate limiter; processes
/// that never send pass [`unlimited()`].
pub fn build(
    config: &ProviderConfig,
    settings: &AdapterSettings,
    gate: Arc<dyn RequestGate>,
) -> Result<Arc<dyn Provider>, AdapterError> {
    match VENDORS.of(&config.kind) {
        Some(vendor) => (vendor.build)(config, settings, gate),
        None => Err(AdapterError::Unsupported { provider: config.id.clone(), kind: config.kind.to_string() }),
    }
}

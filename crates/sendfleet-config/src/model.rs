//! The configuration model. Field docs are the reference; the example file repeats them.

use sendfleet_protocol::Channel;
use serde::{Deserialize, Serialize};

use crate::{BrokerUrls, RedactedUrl, Secret, VendorSettings};

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// RabbitMQ.
    pub broker: BrokerConfig,
    /// Redis.
    pub redis: RedisConfig,
    /// The dispatcher process.
    pub dispatcher: DispatcherConfig,
    /// The sender-worker process.
    pub worker: WorkerConfig,
    /// The callback-ingest process.
    pub callback_ingest: CallbackIngestConfig,
    /// The message status store (`GET /v1/messages/{id}`, `sendfleet status`).
    pub status: StatusConfig,
    /// Logging.
    pub telemetry: TelemetryConfig,
    /// Dispatcher-side templates.
    pub templates: Vec<TemplateConfig>,
    /// Providers; ids must be unique.
    pub providers: Vec<ProviderConfig>,
}

/// RabbitMQ connection and topology.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// AMQP URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`, or a list of them (the
    /// nodes of a cluster: the first that answers is used, and after a lost connection
    /// the next one is tried first). Passwords are redacted in every log line.
    pub url: BrokerUrls,
    /// Prefix of every exchange and queue name, so several fleets (or tests) share a broker.
    pub prefix: String,
    /// `classic` or `quorum` (replicated; use on a RabbitMQ cluster).
    pub queue_type: QueueType,
    /// Quorum queues only: the nodes each queue is replicated on when it is declared
    /// (`x-quorum-initial-group-size`; RabbitMQ uses all nodes when fewer are up). 3
    /// survives the loss of any one node of a three-node cluster.
    pub quorum_replicas: u8,
    /// Quorum queues only: deliveries of one message before RabbitMQ gives up on it
    /// (`x-delivery-limit`), sending it to the queue's dead-letter target (a job to
    /// `<prefix>.dead-letter`, a request to `<prefix>.requests.rejected`). Set on every
    /// quorum queue so RabbitMQ 3.10 and 4.x behave alike (4.x would otherwise apply 20
    /// and drop messages of queues without a dead-letter target).
    pub delivery_limit: u32,
    /// Whether and how the default events queue `<prefix>.events` is declared.
    pub events_queue: EventsQueueConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: BrokerUrls::new("amqp://guest:guest@127.0.0.1:5672/%2f"),
            prefix: "sendfleet".into(),
            queue_type: QueueType::Classic,
            quorum_replicas: 3,
            delivery_limit: 20,
            events_queue: EventsQueueConfig::default(),
        }
    }
}

/// The default events queue `<prefix>.events` (bound to every event). Nothing in the
/// fleet consumes it: without a consumer it would grow until the broker's memory alarm
/// blocks every publisher, so it is bounded by default. Every bound is a queue argument
/// fixed at declaration: a process whose bounds differ from the existing queue's stops
/// at start-up naming the key (RabbitMQ refuses the declaration with PRECONDITION_FAILED).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsQueueConfig {
    /// Declare `<prefix>.events` and bind it to every event. `false`: the fleet declares
    /// no events queue; events reach only the queues consumers bind to the events
    /// exchange themselves (and are dropped when none is bound).
    pub declare: bool,
    /// Most events the queue holds (`x-max-length`); 0 = no limit.
    pub max_length: u64,
    /// Most bytes of event bodies the queue holds (`x-max-length-bytes`); 0 = no limit.
    pub max_length_bytes: u64,
    /// Events older than this are dropped (`x-message-ttl`); 0 = kept until consumed.
    pub message_ttl_seconds: u64,
    /// What happens when a bound is reached (`x-overflow`).
    pub overflow: Overflow,
}

impl Default for EventsQueueConfig {
    fn default() -> Self {
        EventsQueueConfig {
            declare: true,
            // About 250 MB of broker memory on a classic queue (~1 KB per ~350-byte
            // event measured on RabbitMQ 3.10), 20 MB on a quorum queue: docs/OPERATIONS.md.
            max_length: 250_000,
            max_length_bytes: 128 << 20,
            message_ttl_seconds: 86_400,
            overflow: Overflow::DropHead,
        }
    }
}

/// A bounded queue's policy when it is full (RabbitMQ's `x-overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overflow {
    /// The oldest messages are dropped to make room: publishers never stall, old
    /// events are lost.
    DropHead,
    /// New messages are refused (the publisher's confirm is a nack): no event is lost,
    /// but workers cannot settle jobs, so sending stops until the queue is consumed.
    RejectPublish,
}

impl Overflow {
    /// The `x-overflow` argument value.
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::DropHead => "drop-head",
            Overflow::RejectPublish => "reject-publish",
        }
    }
}

/// RabbitMQ queue type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// Single-node classic queues.
    Classic,
    /// Raft-replicated quorum queues.
    Quorum,
}

/// Redis.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Redis URL, e.g. `redis://127.0.0.1:6379`; its password is redacted in logs. With
    /// `sentinels`, only its password and database are used (the address of the primary
    /// comes from the Sentinels).
    pub url: RedactedUrl,
    /// Redis Sentinels watching the primary, e.g. `["redis://10.0.0.1:26379", …]`. Set:
    /// every connection goes to the primary they name, and a failover is followed
    /// without a restart (docs/SCALING.md).
    pub sentinels: Vec<RedactedUrl>,
    /// The primary's name in the Sentinels' configuration (`sentinel monitor <name> …`).
    pub master_name: String,
    /// Prefix of every key sendfleet writes.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: RedactedUrl::new("redis://127.0.0.1:6379"),
            sentinels: Vec::new(),
            master_name: "sendfleet".into(),
            key_prefix: "sendfleet".into(),
        }
    }
}

/// The dispatcher.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherConfig {
    /// HTTP listen address (API, `/metrics`, `/health`).
    pub listen: String,
    /// Requests handled concurrently (also the requests queue prefetch).
    pub concurrency: u16,
    /// Seconds to finish in-flight requests after SIGTERM.
    pub shutdown_grace_seconds: u64,
    /// Environment variable holding the bearer token the HTTP API (`/v1/*`) requires.
    /// Absent: the API is open (bind `listen` to a private address then).
    pub api_token_env: Option<String>,
    /// The API token, read from `api_token_env` at load time. Never logged.
    #[serde(skip)]
    pub api_token: Secret,
    /// Largest `POST /v1/messages` body, in bytes (bulk bodies are streamed and unbounded).
    pub api_max_body_bytes: usize,
    /// Largest single line of a `POST /v1/messages/bulk` body, in bytes.
    pub api_max_line_bytes: usize,
    /// Jobs of a bulk request published concurrently, each awaiting its confirm; the
    /// body is read no faster than this window drains, so memory stays bounded.
    pub bulk_publish_window: usize,
    /// Most recipients one queued request may carry (its jobs are planned and published
    /// as one unit); more is rejected with `too_many_recipients`. Larger lists go to the
    /// streamed `POST /v1/messages/bulk`.
    pub max_recipients_per_request: usize,
    /// Check every destination against its country's numbering plan (libphonenumber's
    /// metadata), not only its E.164 shape: a number no operator can route is rejected
    /// (`invalid_destination`) instead of being sent and paid for. Turn off only for
    /// fictional test numbers (`+1 555 …`) against the mock provider.
    pub check_numbering_plan: bool,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            listen: "127.0.0.1:9101".into(),
            concurrency: 256,
            shutdown_grace_seconds: 10,
            api_token_env: None,
            api_token: Secret::default(),
            api_max_body_bytes: 1 << 20,
            api_max_line_bytes: 64 << 10,
            bulk_publish_window: 256,
            max_recipients_per_request: 1_000,
            check_numbering_plan: true,
        }
    }
}

/// The sender-worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// HTTP listen address (`/metrics`, `/health`).
    pub listen: String,
    /// Provider ids this worker serves; empty means all.
    pub providers: Vec<String>,
    /// Seconds to finish in-flight sends after SIGTERM before exiting anyway (the
    /// unfinished jobs are then redelivered). Match the pod's termination grace period.
    pub shutdown_grace_seconds: u64,
    /// `fleet`: each provider's rate is shared by every worker through slot leases in
    /// Redis (hard bound in every 1-second window; sending stops if Redis is
    /// unreachable). `local`: a token bucket in this process only, for a single worker
    /// without Redis (N workers would send N times the rate). `off`: no limit, for
    /// benchmarks against the mock provider only.
    pub rate_limiter: RateLimiterKind,
    /// While a provider is paused after an auth/config failure (401/403/404), one
    /// request probes it this often; the provider resumes when a probe succeeds.
    pub pause_probe_seconds: u64,
    /// A job held by a paused provider longer than this goes back to its queue (the
    /// broker would otherwise close the channel at its consumer timeout).
    pub pause_max_hold_seconds: u64,
    /// How long a sent message id is remembered in Redis, so a redelivered job is not
    /// sent twice.
    pub sent_record_ttl_seconds: u64,
    /// How long a capability-check answer is cached in Redis for the whole fleet, so
    /// the fleet asks the provider about a number at most once in this time.
    pub capability_cache_ttl_seconds: u64,
    /// Numbers wanted by concurrent jobs are gathered this long (milliseconds) into one
    /// capability query (at most 500 numbers each).
    pub capability_batch_window_ms: u64,
    /// An armed SMS fallback lives in Redis for the RCS validity period plus this
    /// margin (seconds), so a late failure report still finds it.
    pub fallback_ttl_margin_seconds: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            listen: "127.0.0.1:9102".into(),
            providers: Vec::new(),
            shutdown_grace_seconds: 25,
            rate_limiter: RateLimiterKind::Fleet,
            pause_probe_seconds: 30,
            pause_max_hold_seconds: 300,
            sent_record_ttl_seconds: 172_800,
            capability_cache_ttl_seconds: 86_400,
            capability_batch_window_ms: 5,
            fallback_ttl_margin_seconds: 3_600,
        }
    }
}

/// How the worker holds providers to their rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimiterKind {
    /// Fleet-wide slot leases in Redis.
    Fleet,
    /// Per-process token bucket.
    Local,
    /// No rate limit at all: only for benchmarks against the mock provider.
    Off,
}

/// callback-ingest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackIngestConfig {
    /// HTTP listen address (callbacks, `/metrics`, `/health`).
    pub listen: String,
    /// The public base URL providers reach callback-ingest at, e.g.
    /// `https://hooks.example.com`. Workers put per-message delivery-report URLs built
    /// from it into send requests; the `callback-urls` command prints them. Empty: the
    /// workers leave the URL out and the provider's portal setting applies.
    pub public_base_url: String,
    /// Largest callback body accepted, in bytes (larger → 413).
    pub max_body_bytes: usize,
    /// Callbacks handled at once (reading the body, publishing, firing fallbacks). One
    /// more is answered 503 with `Retry-After` at once rather than queued, so a broker
    /// that blocks the connection (memory or disk alarm) cannot pile up unbounded work;
    /// memory held by bodies stays under `max_in_flight × max_body_bytes`.
    pub max_in_flight: usize,
    /// Seconds to finish in-flight callbacks after SIGTERM.
    pub shutdown_grace_seconds: u64,
}

impl Default for CallbackIngestConfig {
    fn default() -> Self {
        CallbackIngestConfig {
            listen: "127.0.0.1:9103".into(),
            public_base_url: String::new(),
            max_body_bytes: 1 << 20,
            max_in_flight: 512,
            shutdown_grace_seconds: 10,
        }
    }
}

/// The message status store: one record per message id in Redis, written by the
/// sender-worker and callback-ingest, read by the dispatcher's `GET /v1/messages/{id}`
/// and `sendfleet status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusConfig {
    /// Write status records. Off: nothing is written and every lookup answers that the
    /// store is switched off.
    pub enabled: bool,
    /// How long a record lives after its last change, in seconds (default 7 days).
    pub ttl_seconds: u64,
    /// Status updates a process may hold waiting for Redis. Beyond it an update is
    /// dropped and counted (`sendfleet_status_updates_total{outcome="dropped"}`): a slow
    /// Redis never slows sending or callbacks down.
    pub queue_capacity: usize,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig { enabled: true, ttl_seconds: 604_800, queue_capacity: 65_536 }
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// `RUST_LOG`-style filter, e.g. `info,sendfleet=debug`. `RUST_LOG` wins if set.
    pub log_filter: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { log_format: LogFormat::Text, log_filter: "info".into() }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// A dispatcher-side template, rendered with `{{variable}}` placeholders.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// Id used in requests.
    pub id: String,
    /// Content in the request's content format (see `docs/protocol.md`): text, file,
    /// card, carousel or provider template. Give this or `file`.
    #[serde(default)]
    pub content: Option<toml::Value>,
    /// A `.toml` or `.json` file holding the content (relative paths are relative to
    /// the working directory). Give this or `content`.
    #[serde(default)]
    pub file: Option<String>,
    /// The content, parsed and checked at load time from `content` or `file`.
    #[serde(skip)]
    pub parsed: Option<sendfleet_protocol::Content>,
}

/// A provider kind: the name of the vendor adapter that speaks to it (`infobip_rcs`,
/// `twilio_sms`, …), as the provider registry of the build knows it
/// ([`crate::VendorCatalog::kinds`]). The name ends in its channel, `_rcs` or `_sms`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProviderKind {
    name: String,
    channel: Channel,
}

impl ProviderKind {
    /// The kind called `name`, if the name ends in a channel.
    pub fn new(name: &str) -> Result<ProviderKind, String> {
        let channel = if name.ends_with("_rcs") {
            Channel::Rcs
        } else if name.ends_with("_sms") {
            Channel::Sms
        } else {
            return Err(format!("'{name}' is not a provider kind: a kind ends in its channel, _rcs or _sms"));
        };
        Ok(ProviderKind { name: name.to_owned(), channel })
    }

    /// The channel this kind sends on.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl TryFrom<String> for ProviderKind {
    type Error = String;

    fn try_from(name: String) -> Result<ProviderKind, String> {
        ProviderKind::new(&name)
    }
}

impl From<ProviderKind> for String {
    fn from(kind: ProviderKind) -> String {
        kind.name
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// One provider account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Unique id: lowercase letters, digits, `-` and `_` (it names the queue `jobs.<id>`
    /// and the callback URL).
    pub id: String,
    /// Human label.
    #[serde(default)]
    pub nickname: String,
    /// Which vendor adapter speaks to it (`infobip_rcs`, `twilio_sms`, …).
    pub kind: ProviderKind,
    /// Base API URL of the account, for vendors that take one (each vendor's section of
    /// `docs/providers.md` says whether it is required and what it looks like).
    #[serde(default)]
    pub base_url: String,
    /// Environment variable holding the API key, for vendors that authenticate with one.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The API key, read from `api_key_env` at load time. Never logged.
    #[serde(skip)]
    pub api_key: Secret,
    /// Sender ids / RCS agents; the first is the default.
    #[serde(default)]
    pub sender_ids: Vec<String>,
    /// The default provider of its channel (at most one per channel).
    #[serde(default)]
    pub default_for_channel: bool,
    /// Fleet-wide requests per second (≤ 4,600).
    #[serde(default = "default_rate")]
    pub rate_per_second: u32,
    /// Token-bucket burst above the steady rate; absent means rate/100 (at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Fleet-wide requests per second of single senders (sender id → rate, each at most
    /// `rate_per_second`), for carriers that limit each number as well as the account:
    /// a job of such a sender waits for a slot free under both rates. Senders not listed
    /// share the provider's rate alone. Burst: the sender's rate/100, at least 1.
    #[serde(default)]
    pub sender_rates: std::collections::BTreeMap<String, u32>,
    /// Requests in flight to the provider across the whole fleet ("custom concurrency",
    /// ≤ 4,600): every worker's requests together (per worker only with
    /// `worker.rate_limiter = "local"`).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Jobs one worker works on at once for this provider in each priority lane (send
    /// claim, rate-slot wait, request); also the broker prefetch of each lane's queue.
    /// Absent: twice `concurrency`. A per-process knob: the requests themselves are
    /// bounded by `concurrency`.
    #[serde(default)]
    pub jobs_per_worker: Option<u32>,
    /// Least shares of this provider's sends the lower priority lanes get while higher
    /// lanes have jobs waiting, e.g. `{ normal = 0.1, bulk = 0.05 }`: under a flood of
    /// `high` jobs, normal and bulk jobs slow down to these shares but never stop.
    #[serde(default)]
    pub lane_min_share: LaneShares,
    /// Per-request timeout in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Environment variable holding the secret token embedded in this provider's
    /// callback URL. Absent: callbacks for this provider are refused.
    #[serde(default)]
    pub callback_token_env: Option<String>,
    /// The callback token, read from `callback_token_env`. Never logged.
    #[serde(skip)]
    pub callback_token: Secret,
    /// Optional Basic auth required on callbacks.
    #[serde(default)]
    pub callback_basic_auth: Option<BasicAuthConfig>,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Provider-side click tracking (URL shortening + click reports).
    #[serde(default)]
    pub click_tracking: Option<ClickTrackingConfig>,
    /// Our own click tracking (links rewritten before sending); never together with
    /// `click_tracking`, which would wrap links twice.
    #[serde(default)]
    pub own_click_tracking: bool,
    /// Destinations whose country needs DLT ids (India: `+91`) are rejected without them.
    #[serde(default)]
    pub require_india_dlt: bool,
    /// Check RCS capability before sending (RCS providers).
    #[serde(default)]
    pub capability_check: bool,
    /// Who sends a request's SMS fallback (RCS providers): `fleet` (default) arms it in
    /// Redis and publishes an SMS job when the RCS message fails; `provider` puts it in
    /// the RCS request for the provider's own SMS failover (vendors that have one:
    /// `docs/providers.md`).
    #[serde(default)]
    pub fallback_mode: FallbackMode,
    /// SMS fallback of an RCS provider (sender id, India DLT principal entity id).
    #[serde(default)]
    pub sms_fallback: Option<SmsFallbackConfig>,
    /// Regional defaults of an SMS provider (India DLT, Turkey IYS), applied to
    /// destinations of that country when the request carries none.
    #[serde(default)]
    pub regional: Option<RegionalConfig>,
    /// The vendor's own settings (its section, e.g. `[providers.twilio]`), checked and
    /// typed at load time by the vendor's module.
    #[serde(skip)]
    pub vendor: VendorSettings,
}

/// The burst of a rate that sets none: rate/100, at least 1 (a provider's without
/// `burst`, and every sender's in `sender_rates`).
pub fn default_burst(rate_per_second: u32) -> u32 {
    (rate_per_second / 100).max(1)
}

fn default_rate() -> u32 {
    100
}
fn default_concurrency() -> u32 {
    50
}
fn default_timeout_ms() -> u64 {
    10_000
}

impl ProviderConfig {
    /// The channel this provider sends on.
    pub fn channel(&self) -> Channel {
        self.kind.channel()
    }

    /// The token-bucket burst in effect.
    pub fn effective_burst(&self) -> u32 {
        self.burst.unwrap_or(default_burst(self.rate_per_second))
    }

    /// Jobs one worker works on at once (see [`ProviderConfig::jobs_per_worker`]).
    pub fn effective_jobs_per_worker(&self) -> u32 {
        self.jobs_per_worker.unwrap_or(self.concurrency.saturating_mul(2)).clamp(1, u32::from(u16::MAX))
    }

    /// The default sender id.
    pub fn default_sender(&self) -> Option<&str> {
        self.sender_ids.first().map(String::as_str)
    }
}

/// Minimum shares of the lanes below `high` (fractions of the sends, 0 to 0.5).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LaneShares {
    /// The `normal` lane's least share while `high` jobs wait.
    pub normal: f64,
    /// The `bulk` lane's least share while `high` or `normal` jobs wait.
    pub bulk: f64,
}

impl Default for LaneShares {
    fn default() -> Self {
        LaneShares { normal: 0.10, bulk: 0.05 }
    }
}

/// Who sends the SMS fallback of an RCS message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FallbackMode {
    /// The fleet: armed in Redis, published as an SMS job to the SMS provider's queue.
    #[default]
    Fleet,
    /// The RCS provider itself (`options.smsFailover`); reports say which channel delivered.
    Provider,
}

/// SMS fallback settings of an RCS provider ("SMS Fallback" in the set-up screens).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsFallbackConfig {
    /// Arm the SMS fallback for requests that carry a `fallback` text.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// SMS sender id used when the request names none; required when enabled.
    #[serde(default)]
    pub sender_id: Option<String>,
    /// The SMS provider id that sends the fallback; absent means the SMS default.
    #[serde(default)]
    pub sms_provider: Option<String>,
    /// "Enable for India": +91 fallbacks carry DLT ids.
    #[serde(default)]
    pub india: bool,
    /// India DLT principal entity id put on +91 fallbacks; required when `india`.
    #[serde(default)]
    pub principal_entity_id: Option<String>,
}

/// Regional defaults of an SMS provider ("Regional Settings").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegionalConfig {
    /// India DLT principal entity id for +91 destinations.
    pub india_principal_entity_id: Option<String>,
    /// Turkey IYS brand code for +90 destinations.
    pub turkey_brand_code: Option<u32>,
    /// Turkey IYS recipient type for +90 destinations: `BIREYSEL` or `TACIR`.
    pub turkey_recipient_type: Option<String>,
}

/// Basic auth credentials; the password comes from an environment variable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// User name.
    pub username: String,
    /// Environment variable holding the password.
    pub password_env: String,
    /// The password, read at load time. Never logged.
    #[serde(skip)]
    pub password: Secret,
}

/// Retry policy of a provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// Give up when the first attempt is older than this many seconds.
    pub max_age_seconds: u64,
    /// Smallest backoff delay, milliseconds.
    pub initial_delay_ms: u64,
    /// Largest backoff delay, milliseconds.
    pub max_delay_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { max_attempts: 8, max_age_seconds: 3_600, initial_delay_ms: 1_000, max_delay_ms: 300_000 }
    }
}

/// Provider click tracking.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickTrackingConfig {
    /// Shorten and track URLs in the text.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Custom short domain; absent means the provider's default domain.
    #[serde(default)]
    pub custom_domain: Option<String>,
    /// Where the provider posts click reports.
    #[serde(default)]
    pub tracking_url: Option<String>,
}

fn yes() -> bool {
    true
}

//! What the mock does with each request. Changeable while running.

use serde::{Deserialize, Serialize};

/// The mock's behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    /// Latency before every answer, milliseconds (the minimum when jittered).
    pub latency_ms: u64,
    /// Extra uniformly random latency, 0..=this many milliseconds.
    pub latency_jitter_ms: u64,
    /// Share of send requests answered 503 (0.0–1.0).
    pub error_503_ratio: f64,
    /// Share of send requests answered 429 (0.0–1.0).
    pub error_429_ratio: f64,
    /// `Retry-After` seconds on 429/503 answers.
    pub retry_after_seconds: Option<u64>,
    /// Answer every send request with this status (e.g. 401) and Infobip's error body.
    pub force_status: Option<u16>,
    /// Post delivery reports.
    pub delivery_reports: bool,
    /// Delay before a delivery report is posted, milliseconds.
    pub delivery_report_delay_ms: u64,
    /// Share of delivery reports that say UNDELIVERABLE (0.0–1.0).
    pub undelivered_ratio: f64,
    /// Destinations (digits, no `+`) starting with one of these are not RCS capable:
    /// RCS sends to them get an EC_UNKNOWN_USER (7002) report.
    pub not_rcs_capable_prefixes: Vec<String>,
    /// Keep request bodies (tests); the bench turns this off to save memory.
    pub record_bodies: bool,
    /// How the Generic API endpoints (`/generic/rcs`, `/generic/sms`) authenticate.
    pub generic_auth: GenericAuth,
    /// `expires_in` of the OAuth tokens `POST /oauth/token` issues, seconds; a token is
    /// refused (401) once it is older than this.
    pub oauth_token_ttl_seconds: u64,
}

/// Authentication the Generic API endpoints require.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum GenericAuth {
    /// Anything goes.
    #[default]
    None,
    /// `Authorization: Basic` with exactly these credentials.
    Basic {
        /// User id.
        username: String,
        /// Password.
        password: String,
    },
    /// `Authorization: Bearer <token>` with a live token from `POST /oauth/token`,
    /// which issues tokens to this client only.
    Oauth2 {
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: String,
    },
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            latency_ms: 0,
            latency_jitter_ms: 0,
            error_503_ratio: 0.0,
            error_429_ratio: 0.0,
            retry_after_seconds: None,
            force_status: None,
            delivery_reports: true,
            delivery_report_delay_ms: 0,
            undelivered_ratio: 0.0,
            not_rcs_capable_prefixes: Vec::new(),
            record_bodies: true,
            generic_auth: GenericAuth::None,
            oauth_token_ttl_seconds: 3_600,
        }
    }
}

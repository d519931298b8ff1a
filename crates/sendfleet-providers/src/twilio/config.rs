//! The `[providers.twilio]` section: its types and its checks at load time.

use sendfleet_config::{FallbackMode, ProviderConfig, Secret, VendorCheck, VendorSettings, is_http_url};
use serde::{Deserialize, Serialize};

/// The section's key in a provider entry.
pub const SECTION: &str = "twilio";

/// Twilio's REST API, the base URL when none is given.
const TWILIO_API_BASE: &str = "https://api.twilio.com";

/// Checks a Twilio provider: the account section, its secrets, the base URL
/// (`https://api.twilio.com` when not given) and what Twilio cannot do.
pub(crate) fn check(provider: &mut ProviderConfig, check: &mut VendorCheck<'_>) {
    if provider.base_url.is_empty() {
        provider.base_url = TWILIO_API_BASE.to_owned();
    } else if !is_http_url(&provider.base_url) {
        check.push("base_url", "must be an http(s) URL (default https://api.twilio.com)");
    }
    if provider.api_key_env.is_some() {
        check.push("api_key_env", "not used by Twilio: set twilio.auth_token_env (and twilio.api_key_*)");
    }
    if provider.capability_check {
        check.push(
            "capability_check",
            "Twilio has no capability endpoint (its Messaging Service checks RCS capability itself)",
        );
    }
    let Some(mut twilio) =
        check.take_section::<TwilioConfig>(SECTION, "the Twilio account (account_sid, auth_token_env, …)")
    else {
        return;
    };
    if !is_twilio_sid(&twilio.account_sid, "AC") {
        check.push("twilio.account_sid", "must be AC followed by 32 hex digits (the Account SID)");
    }
    if let Some(token) = check.secret("twilio.auth_token_env", &twilio.auth_token_env) {
        twilio.auth_token = token;
    }
    match (&twilio.api_key_sid, &twilio.api_key_secret_env) {
        (None, None) => {}
        (Some(sid), Some(env)) => {
            if !is_twilio_sid(sid, "SK") {
                check.push("twilio.api_key_sid", "must be SK followed by 32 hex digits");
            }
            if let Some(secret) = check.secret("twilio.api_key_secret_env", env) {
                twilio.api_key_secret = secret;
            }
        }
        (Some(_), None) => check.push("twilio.api_key_secret_env", "required with api_key_sid"),
        (None, Some(_)) => check.push("twilio.api_key_sid", "required with api_key_secret_env"),
    }
    if let Some(sid) = &twilio.messaging_service_sid
        && !is_twilio_sid(sid, "MG")
    {
        check.push("twilio.messaging_service_sid", "must be MG followed by 32 hex digits");
    }
    if provider.fallback_mode == FallbackMode::Provider && twilio.messaging_service_sid.is_none() {
        check.push(
            "twilio.messaging_service_sid",
            "required with fallback_mode = \"provider\": Twilio falls back to SMS only through a Messaging Service",
        );
    }
    provider.vendor = VendorSettings::new(twilio);
}

/// A Twilio SID: two letters and 32 hex digits (`^AC[0-9a-fA-F]{32}$` in Twilio's spec).
fn is_twilio_sid(sid: &str, prefix: &str) -> bool {
    sid.len() == 34 && sid.starts_with(prefix) && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Twilio account settings. Requests are authenticated with the API key when one is
/// given (Twilio's advice for production), else with the Auth Token; callbacks are
/// always verified with the Auth Token (`X-Twilio-Signature`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// The Account SID (`AC` and 32 hex digits); it names the account in every URL.
    pub account_sid: String,
    /// Environment variable holding the account's primary Auth Token.
    pub auth_token_env: String,
    /// The Auth Token, read from `auth_token_env`. Never logged.
    #[serde(skip)]
    pub auth_token: Secret,
    /// An API key SID (`SK…`) to send with instead of the Auth Token.
    #[serde(default)]
    pub api_key_sid: Option<String>,
    /// Environment variable holding the API key's secret; required with `api_key_sid`.
    #[serde(default)]
    pub api_key_secret_env: Option<String>,
    /// The API key secret, read from `api_key_secret_env`. Never logged.
    #[serde(skip)]
    pub api_key_secret: Secret,
    /// A Messaging Service (`MG…`) to send through: required for `twilio_rcs` with
    /// `fallback_mode = "provider"`; for SMS, it picks the sender instead of `From`.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
}

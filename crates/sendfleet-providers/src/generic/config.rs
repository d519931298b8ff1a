//! The `[providers.generic]` section: its types and its checks at load time.

use std::collections::{BTreeMap, HashSet};

use sendfleet_config::{FallbackMode, ProviderConfig, Secret, VendorCheck, VendorSettings, is_http_url};
use serde::{Deserialize, Serialize};

use super::template::{GENERIC_RESERVED_BODY_KEYS, is_header_name, is_header_value, parse_parameter_template};

/// The section's key in a provider entry.
pub const SECTION: &str = "generic";

/// Checks a generic provider's section and keeps it in `provider.vendor`.
pub(crate) fn check(provider: &mut ProviderConfig, check: &mut VendorCheck<'_>) {
    if provider.fallback_mode == FallbackMode::Provider {
        check.push(
            "fallback_mode",
            "\"provider\" needs a vendor with its own SMS fallback; generic providers use \"fleet\"",
        );
    }
    let Some(mut generic) =
        check.take_section::<GenericConfig>(SECTION, "the vendor's endpoint, auth, … (see docs/generic-api.md)")
    else {
        return;
    };
    if !is_http_url(&generic.endpoint) {
        check.push("generic.endpoint", "must be an http(s) URL");
    }
    if !matches!(generic.method.as_str(), "POST" | "PUT") {
        check.push("generic.method", "must be POST or PUT");
    }
    validate_generic_extras(&mut generic, check);
    match &mut generic.auth {
        GenericAuthConfig::None => {}
        GenericAuthConfig::Basic { password_env, password, .. } => {
            if let Some(value) = check.secret("generic.auth.password_env", password_env) {
                *password = value;
            }
        }
        GenericAuthConfig::Oauth2 { token_url, client_secret_env, client_secret, .. } => {
            if !is_http_url(token_url) {
                check.push("generic.auth.token_url", "must be an http(s) URL");
            }
            if let Some(value) = check.secret("generic.auth.client_secret_env", client_secret_env) {
                *client_secret = value;
            }
        }
    }
    provider.vendor = VendorSettings::new(generic);
}

/// Headers and body parameters of a generic provider: every problem named by its key.
fn validate_generic_extras(generic: &mut GenericConfig, check: &mut VendorCheck<'_>) {
    let has_auth = !matches!(generic.auth, GenericAuthConfig::None);
    let mut seen = HashSet::new();
    let names = generic
        .headers
        .keys()
        .map(|n| (n, "headers"))
        .chain(generic.secret_headers.keys().map(|n| (n, "secret_headers")));
    for (name, section) in names {
        let field = format!("generic.{section}.{name}");
        if !is_header_name(name) {
            check.push(&field, "is not a valid HTTP header name");
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if !seen.insert(lower.clone()) {
            check.push(&field, "set more than once (header names are case-insensitive)");
        } else if lower == "authorization" && has_auth {
            check.push(&field, "conflicts with generic.auth, which sets Authorization; use auth type \"none\"");
        } else if matches!(lower.as_str(), "content-length" | "host" | "transfer-encoding" | "connection") {
            check.push(&field, "is set by the HTTP client and cannot be configured");
        }
    }
    for (name, value) in &generic.headers {
        if name.eq_ignore_ascii_case("content-type") && !value.to_ascii_lowercase().contains("json") {
            check.push(
                &format!("generic.headers.{name}"),
                "the Generic API body is JSON; Content-Type must be a JSON media type",
            );
        } else if !is_header_value(value) {
            check.push(&format!("generic.headers.{name}"), "contains characters not allowed in an HTTP header");
        }
    }
    for (name, env) in &generic.secret_headers {
        let field = format!("generic.secret_headers.{name}");
        match check.secret(&field, env) {
            Some(value) if is_header_value(value.expose()) => {
                generic.secret_header_values.insert(name.clone(), value);
            }
            Some(_) => {
                check.push(&field, format!("the value of {env} contains characters not allowed in an HTTP header"))
            }
            None => {}
        }
    }
    for (section, parameters) in
        [("body_parameters", &generic.body_parameters), ("fallback_body_parameters", &generic.fallback_body_parameters)]
    {
        for (key, value) in parameters {
            let field = format!("generic.{section}.{key}");
            if key.is_empty() {
                check.push(&field, "parameter names must be non-empty");
            } else if GENERIC_RESERVED_BODY_KEYS.contains(&key.as_str()) {
                check.push(&field, format!("'{key}' is a field of the Generic API body and cannot be replaced"));
            } else if let Err(problem) = parse_parameter_template(value) {
                check.push(&field, problem);
            }
        }
    }
}

/// Generic RCS/SMS vendor settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericConfig {
    /// Full endpoint URL the send request goes to.
    pub endpoint: String,
    /// `POST` (default) or `PUT`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Authentication.
    #[serde(default)]
    pub auth: GenericAuthConfig,
    /// Extra headers on every request (not secret: they are written in this file).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extra headers whose values are secrets (vendor API keys): header name →
    /// environment variable holding the value.
    #[serde(default)]
    pub secret_headers: BTreeMap<String, String>,
    /// The values of `secret_headers`, read at load time. Never logged.
    #[serde(skip)]
    pub secret_header_values: BTreeMap<String, Secret>,
    /// Key–value pairs merged into the JSON body; values may reference message fields
    /// as `{{to}}`, `{{message_id}}`, `{{sender}}`, `{{text}}` or `{{metadata.<key>}}`.
    #[serde(default)]
    pub body_parameters: BTreeMap<String, String>,
    /// Extra body parameters for the SMS fallback (Generic RCS with fallback).
    #[serde(default)]
    pub fallback_body_parameters: BTreeMap<String, String>,
}

fn default_method() -> String {
    "POST".into()
}

/// Generic vendor authentication.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum GenericAuthConfig {
    /// No authentication.
    #[default]
    None,
    /// HTTP Basic.
    Basic {
        /// User id.
        username: String,
        /// Environment variable holding the password.
        password_env: String,
        /// Resolved password.
        #[serde(skip)]
        password: Secret,
    },
    /// OAuth 2.0 client credentials.
    Oauth2 {
        /// Token endpoint.
        token_url: String,
        /// Client id.
        client_id: String,
        /// Environment variable holding the client secret.
        client_secret_env: String,
        /// Resolved client secret.
        #[serde(skip)]
        client_secret: Secret,
        /// Optional scope.
        #[serde(default)]
        scope: Option<String>,
        /// How the client id and secret reach the token endpoint: `body` (form fields,
        /// the default) or `basic` (an `Authorization: Basic` header, RFC 6749 §2.3.1).
        #[serde(default)]
        client_auth: OAuthClientAuth,
    },
}

/// How an OAuth 2.0 client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthClientAuth {
    /// `client_id` and `client_secret` as form fields of the token request.
    #[default]
    Body,
    /// HTTP Basic with the client id and secret.
    Basic,
}

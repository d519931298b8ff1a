//! Generic RCS and Generic SMS: any vendor (or middleware) that implements our Generic
//! API (`docs/generic-api.md`).
//!
//! - `POST` or `PUT` our JSON to the configured endpoint, with the configured headers
//!   and body parameters (merged into the JSON, values may reference message fields).
//! - Auth: none, Basic, or OAuth 2.0 client credentials (one cached token per adapter,
//!   refreshed before expiry; on a 401 the token is replaced once and the send retried
//!   once).
//! - Rate: the caller's slot covers a send's first request; the token fetch and the
//!   resend after a 401 each take a slot from the adapter's [`RequestGate`] right
//!   before they go out ([`Provider::prepare`] fetches the token before the caller's
//!   slot is taken).
//! - Answers: 2xx accepted; 408/429/5xx and transport failures transient; 401/403/404
//!   pause the provider (credentials or endpoint wrong); other 4xx rejected.

mod callback;
mod config;
mod oauth;
mod request;
mod template;
pub mod wire;

use std::sync::Arc;

use base64::Engine;
use futures_util::future::BoxFuture;
use reqwest::{
    Method,
    header::{HeaderMap, HeaderName, HeaderValue},
};
use sendfleet_config::ProviderConfig;
use sendfleet_protocol::SendJob;

pub use callback::parse_callback;
pub use config::{GenericAuthConfig, GenericConfig, OAuthClientAuth};
pub use oauth::{OAuthSettings, Token, TokenSource};
use request::{BodyContext, BodyParameter, build_body, parse_parameters};
pub use template::{
    GENERIC_RESERVED_BODY_KEYS, MESSAGE_FIELD_NAMES, MessageField, TemplatePart, parse_parameter_template,
};

/// The Generic RCS / Generic SMS vendor.
pub(crate) const VENDOR: crate::Vendor = crate::Vendor {
    name: "Generic",
    kinds: &["generic_rcs", "generic_sms"],
    section: Some(config::SECTION),
    check: config::check,
    build: |config, settings, gate| Ok(Arc::new(GenericAdapter::new(config.clone(), settings, gate)?)),
    check_job: |_, _| Ok(()),
};

use crate::{
    AdapterError, AdapterSettings, CallbackError, CallbackRequest, ParsedCallback, Provider, RejectCode, RequestGate,
    SendOutcome, http,
};

enum Credentials {
    None,
    /// `Basic …`, built once and marked sensitive.
    Basic(HeaderValue),
    OAuth2(Box<TokenSource>),
}

/// The Generic RCS / Generic SMS adapter.
pub struct GenericAdapter {
    config: ProviderConfig,
    client: reqwest::Client,
    endpoint: reqwest::Url,
    method: Method,
    headers: HeaderMap,
    auth: Arc<Credentials>,
    parameters: Vec<BodyParameter>,
    fallback_parameters: Vec<BodyParameter>,
    callback_url: Option<String>,
    /// Slots for the requests beyond a send's first.
    gate: Arc<dyn RequestGate>,
}

impl GenericAdapter {
    /// An adapter for one provider account (a checked config holds its section).
    pub fn new(
        config: ProviderConfig,
        settings: &AdapterSettings,
        gate: Arc<dyn RequestGate>,
    ) -> Result<GenericAdapter, AdapterError> {
        let invalid = |what: String| AdapterError::InvalidGeneric { provider: config.id.clone(), what };
        let generic: &GenericConfig =
            config.vendor.get().ok_or_else(|| invalid("the [providers.generic] section is missing".into()))?;
        let client = http::client_for(&config)?;
        let method = match generic.method.to_ascii_uppercase().as_str() {
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            other => return Err(invalid(format!("method {other} (expected POST or PUT)"))),
        };
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static("application/json"));
        for (name, value) in &generic.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid(format!("header name {name:?}")))?;
            let value = HeaderValue::from_str(value).map_err(|_| invalid(format!("value of header {name}")))?;
            headers.insert(name, value);
        }
        for (name, value) in &generic.secret_header_values {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid(format!("header name {name:?}")))?;
            // The value is never printed, not even in the error.
            let mut value =
                HeaderValue::from_str(value.expose()).map_err(|_| invalid(format!("value of secret header {name}")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let auth = match &generic.auth {
            GenericAuthConfig::None => Credentials::None,
            GenericAuthConfig::Basic { username, password, .. } => {
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", password.expose()));
                let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
                    .map_err(|_| invalid("Basic credentials".into()))?;
                value.set_sensitive(true);
                Credentials::Basic(value)
            }
            GenericAuthConfig::Oauth2 { token_url, client_id, client_secret, scope, client_auth, .. } => {
                Credentials::OAuth2(Box::new(TokenSource::new(
                    client.clone(),
                    OAuthSettings {
                        token_url: token_url.clone(),
                        client_id: client_id.clone(),
                        client_secret: client_secret.clone(),
                        scope: scope.clone(),
                        client_auth: *client_auth,
                    },
                    gate.clone(),
                )))
            }
        };
        let parameters = parse_parameters(&generic.body_parameters).map_err(invalid)?;
        let fallback_parameters = parse_parameters(&generic.fallback_body_parameters).map_err(invalid)?;
        let endpoint = http::parse_url(&config, &generic.endpoint)?;
        let callback_url = settings.callback_url(&config);
        Ok(GenericAdapter {
            config,
            client,
            endpoint,
            method,
            headers,
            auth: Arc::new(auth),
            parameters,
            fallback_parameters,
            callback_url,
            gate,
        })
    }

    /// The JSON body for a job.
    pub fn body(&self, job: &SendJob) -> Result<Vec<u8>, String> {
        build_body(
            job,
            &BodyContext {
                channel: self.config.channel(),
                callback_url: self.callback_url.as_deref(),
                parameters: &self.parameters,
                fallback_parameters: &self.fallback_parameters,
            },
        )
    }

    /// OAuth token requests made so far (0 for other auth modes).
    pub fn token_fetches(&self) -> u64 {
        match self.auth.as_ref() {
            Credentials::OAuth2(source) => source.fetches(),
            _ => 0,
        }
    }

    async fn attempt(&self, body: Vec<u8>, authorization: Option<HeaderValue>) -> Result<http::Answer, SendOutcome> {
        let mut request = self.client.request(self.method.clone(), self.endpoint.clone()).headers(self.headers.clone());
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        http::execute(request.body(body)).await
    }

    /// A slot for a request beyond the one the caller took a slot for.
    async fn extra_slot(&self) -> Result<(), SendOutcome> {
        self.gate.acquire().await.map_err(|e| e.outcome())
    }

    async fn send_job(&self, job: &SendJob) -> SendOutcome {
        let body = match self.body(job) {
            Ok(body) => body,
            Err(reason) => {
                return SendOutcome::Rejected {
                    code: RejectCode::UnsupportedContent,
                    reason,
                    status: None,
                    error: None,
                };
            }
        };
        let answer = match self.auth.as_ref() {
            Credentials::None => self.attempt(body, None).await,
            Credentials::Basic(value) => self.attempt(body, Some(value.clone())).await,
            Credentials::OAuth2(source) => {
                let token = match source.usable() {
                    // Prepared: the caller's slot was taken after the token was there.
                    Some(token) => token,
                    None => {
                        // Not prepared, or expired since: the caller's slot aged while
                        // the token was fetched, and sends released together by one
                        // fetch must not all go out at once. A new slot, after the wait.
                        let token = match source.token().await {
                            Ok(token) => token,
                            Err(outcome) => return outcome,
                        };
                        if let Err(outcome) = self.extra_slot().await {
                            return outcome;
                        }
                        token
                    }
                };
                match self.attempt(body.clone(), Some(token.header.clone())).await {
                    // The token may have been revoked or expired early: replace it once
                    // and retry once; a second 401 means the credentials are wrong. The
                    // resend is a request of its own and takes its own slot.
                    Ok(answer) if answer.status == 401 => match source.replace(token.generation).await {
                        Ok(fresh) => match self.extra_slot().await {
                            Ok(()) => self.attempt(body, Some(fresh.header.clone())).await,
                            Err(outcome) => return outcome,
                        },
                        Err(outcome) => return outcome,
                    },
                    other => other,
                }
            }
        };
        match answer {
            Ok(answer) => classify(answer.status, answer.retry_after, &answer.body),
            Err(outcome) => outcome,
        }
    }
}

impl Provider for GenericAdapter {
    fn config(&self) -> &ProviderConfig {
        &self.config
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), SendOutcome>> {
        match self.auth.as_ref() {
            Credentials::OAuth2(source) => Box::pin(source.prepare()),
            Credentials::None | Credentials::Basic(_) => Box::pin(std::future::ready(Ok(()))),
        }
    }

    fn send<'a>(&'a self, job: &'a SendJob) -> BoxFuture<'a, SendOutcome> {
        Box::pin(self.send_job(job))
    }

    fn parse_callback(&self, request: &CallbackRequest<'_>) -> Result<ParsedCallback, CallbackError> {
        parse_callback(&self.config, request.body)
    }
}

/// Classifies a Generic API answer: 2xx accepted (the body is not needed); otherwise
/// by status, with the error body's code and message (or its first 300 bytes) as reason.
pub fn classify(status: u16, retry_after: Option<std::time::Duration>, body: &[u8]) -> SendOutcome {
    if (200..300).contains(&status) {
        return SendOutcome::Accepted { status: None };
    }
    let detail = serde_json::from_slice::<wire::ErrorBody>(body).ok().and_then(|b| b.error);
    let reason = match detail {
        Some(wire::ErrorDetail { code, message }) if code.is_some() || message.is_some() => {
            let parts: Vec<String> = code.into_iter().chain(message).collect();
            format!("HTTP {status}: {}", parts.join(": "))
        }
        _ => {
            let end = body.len().min(300);
            let text = String::from_utf8_lossy(&body[..end]);
            if text.trim().is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {}", text.trim()) }
        }
    };
    match http::classify_status(status, retry_after, reason) {
        SendOutcome::Rejected { reason, status: st, error, .. } if status == 400 => {
            SendOutcome::Rejected { code: RejectCode::BadRequest, reason, status: st, error }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests;

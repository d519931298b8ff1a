//! Twilio Programmable Messaging (`twilio_sms`, `twilio_rcs`).
//!
//! Sends are form-encoded `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`
//! with Basic auth (API key SID and secret, or Account SID and Auth Token). RCS goes
//! through a Messaging Service with an RCS sender: with `fallback_mode = "provider"` the
//! destination is a plain number and Twilio falls back to SMS by itself; otherwise it is
//! `rcs:+E164`, which Twilio never falls back from, and the fleet's own SMS fallback
//! acts on the failure report. Status callbacks are form-encoded, signed with
//! `X-Twilio-Signature` (HMAC-SHA1 of the URL and the sorted parameters, keyed with the
//! Auth Token), and carry our message id in the `StatusCallback` URL we gave.

mod callback;
mod config;
mod request;
mod signature;
#[cfg(test)]
mod tests;

use base64::Engine;
use futures_util::future::BoxFuture;
use sendfleet_config::ProviderConfig;
use sendfleet_protocol::{ProviderErrorInfo, ProviderStatus, SendJob};
use serde::Deserialize;

pub use callback::parse_callback;
pub use config::TwilioConfig;
pub use signature::signature;

use crate::{
    AdapterError, AdapterSettings, CallbackError, CallbackRequest, ParsedCallback, Provider, RawAnswer, RejectCode,
    SendOutcome, Webhook, http,
};

/// The Twilio vendor.
pub(crate) const VENDOR: crate::Vendor = crate::Vendor {
    name: "Twilio",
    kinds: &["twilio_sms", "twilio_rcs"],
    section: Some(config::SECTION),
    check: config::check,
    // One request per send, like Infobip: the caller's slot covers it.
    build: |config, settings, _| Ok(std::sync::Arc::new(TwilioAdapter::new(config.clone(), settings)?)),
    check_job,
};

/// The send path under the base URL; `{}` is the Account SID.
pub const MESSAGES_PATH: &str = "/2010-04-01/Accounts/{}/Messages.json";

/// The Twilio adapter.
pub struct TwilioAdapter {
    config: ProviderConfig,
    twilio: TwilioConfig,
    client: reqwest::Client,
    send_url: reqwest::Url,
    authorization: reqwest::header::HeaderValue,
    /// `<public base>/callbacks/<id>/<token>`, when callbacks are configured.
    callback_url: Option<String>,
    /// The public base URL callbacks are signed against.
    public_base: String,
}

impl TwilioAdapter {
    /// An adapter for one Twilio account (a validated config has its `twilio` section).
    pub fn new(config: ProviderConfig, settings: &AdapterSettings) -> Result<TwilioAdapter, AdapterError> {
        let twilio = config.vendor.get::<TwilioConfig>().cloned().ok_or_else(|| AdapterError::InvalidSettings {
            provider: config.id.clone(),
            what: "the twilio section is missing".into(),
        })?;
        let client = http::client_for(&config)?;
        let send_url = http::endpoint_url(&config, &MESSAGES_PATH.replace("{}", &twilio.account_sid))?;
        let (user, password) = match &twilio.api_key_sid {
            Some(sid) => (sid.as_str(), twilio.api_key_secret.expose()),
            None => (twilio.account_sid.as_str(), twilio.auth_token.expose()),
        };
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut authorization = reqwest::header::HeaderValue::from_str(&format!("Basic {credentials}"))
            .map_err(|_| AdapterError::InvalidKey { provider: config.id.clone() })?;
        authorization.set_sensitive(true);
        let callback_url = settings.callback_url(&config);
        let public_base = settings.callback_base_url.trim_end_matches('/').to_owned();
        Ok(TwilioAdapter { config, twilio, client, send_url, authorization, callback_url, public_base })
    }

    /// The form body for a job, or why the job cannot be sent through Twilio.
    pub fn body(&self, job: &SendJob) -> Result<String, (RejectCode, String)> {
        request::form(job, &self.config, &self.twilio, self.callback_url.as_deref())
    }

    async fn exchange(&self, job: &SendJob) -> Result<http::Answer, SendOutcome> {
        let body = self.body(job).map_err(|(code, reason)| SendOutcome::Rejected {
            code,
            reason,
            status: None,
            error: None,
        })?;
        let request = self
            .client
            .post(self.send_url.clone())
            .header(reqwest::header::AUTHORIZATION, self.authorization.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        http::execute(request).await
    }
}

impl Provider for TwilioAdapter {
    fn config(&self) -> &ProviderConfig {
        &self.config
    }

    fn send<'a>(&'a self, job: &'a SendJob) -> BoxFuture<'a, SendOutcome> {
        Box::pin(async move {
            match self.exchange(job).await {
                Ok(answer) => classify(answer.status, answer.retry_after, &answer.body),
                Err(outcome) => outcome,
            }
        })
    }

    fn send_raw<'a>(&'a self, job: &'a SendJob) -> BoxFuture<'a, RawAnswer> {
        Box::pin(async move {
            match self.exchange(job).await {
                Ok(answer) => RawAnswer {
                    http_status: Some(answer.status),
                    provider_message_id: serde_json::from_slice::<MessageAnswer>(&answer.body).ok().and_then(|a| a.sid),
                    body: String::from_utf8_lossy(&answer.body).into_owned(),
                    outcome: classify(answer.status, answer.retry_after, &answer.body),
                },
                Err(outcome) => {
                    RawAnswer { http_status: None, provider_message_id: None, body: String::new(), outcome }
                }
            }
        })
    }

    fn parse_callback(&self, request: &CallbackRequest<'_>) -> Result<ParsedCallback, CallbackError> {
        let url = format!("{}{}", self.public_base, request.path_and_query);
        signature::verify(&url, request, self.twilio.auth_token.expose(), self.public_base.is_empty())?;
        parse_callback(&self.config, request)
    }

    fn webhooks(&self) -> Vec<Webhook> {
        vec![
            Webhook::new("status callbacks (sent as StatusCallback with every message; nothing to paste)", "delivery"),
            Webhook::new(
                "incoming messages (Messaging Service > Integration > Send a webhook, or the number's \
                 'A message comes in' webhook, HTTP POST)",
                "inbound",
            ),
        ]
    }
}

/// Whether Twilio's API can carry `job` (see [`crate::check_job`]).
pub(crate) fn check_job(config: &ProviderConfig, job: &SendJob) -> Result<(), String> {
    let Some(twilio) = config.vendor.get::<TwilioConfig>() else { return Ok(()) };
    request::check(job, twilio).map_err(|(_, reason)| reason)
}

/// Twilio's answer to a send (the fields read; the rest is ignored).
#[derive(Debug, Deserialize)]
struct MessageAnswer {
    sid: Option<String>,
    status: Option<String>,
}

/// Twilio's error body: `{"code": 21211, "message": "…", "more_info": "…", "status": 400}`.
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    code: Option<i64>,
    message: Option<String>,
}

/// Classifies Twilio's answer to a send: 2xx accepted (with the message's status), 400
/// refused for good with Twilio's error code, 401/403/404 an account problem, 429 and
/// 5xx worth another try.
pub fn classify(status: u16, retry_after: Option<std::time::Duration>, body: &[u8]) -> SendOutcome {
    if (200..300).contains(&status) {
        let answer = serde_json::from_slice::<MessageAnswer>(body).ok();
        let status = answer.and_then(|a| a.status).map(|name| callback::status_of(&name));
        return SendOutcome::Accepted { status };
    }
    let detail = serde_json::from_slice::<ErrorAnswer>(body).ok();
    let code = detail.as_ref().and_then(|d| d.code);
    let message = detail.and_then(|d| d.message);
    let reason = match (code, &message) {
        (Some(code), Some(message)) => format!("HTTP {status}: {code}: {message}"),
        (Some(code), None) => format!("HTTP {status}: {code}"),
        (None, Some(message)) => format!("HTTP {status}: {message}"),
        (None, None) => format!("HTTP {status}"),
    };
    match http::classify_status(status, retry_after, reason) {
        SendOutcome::Rejected { reason, .. } => SendOutcome::Rejected {
            code: if status == 400 { RejectCode::BadRequest } else { RejectCode::Http4xx },
            reason,
            status: None,
            error: code.map(|id| ProviderErrorInfo {
                group_id: 0,
                id: i32::try_from(id).unwrap_or(0),
                name: None,
                description: message,
                permanent: true,
            }),
        },
        other => other,
    }
}

/// A Twilio status as a [`ProviderStatus`] (groups numbered like every provider's).
pub(crate) fn provider_status(group: (i32, &str), name: &str) -> ProviderStatus {
    ProviderStatus {
        group_id: group.0,
        group_name: Some(group.1.to_owned()),
        id: 0,
        name: Some(name.to_owned()),
        description: None,
    }
}

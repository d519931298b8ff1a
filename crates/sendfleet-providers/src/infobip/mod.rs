//! Infobip SMS and RCS, and JioCX RCS (Infobip's API on Jio's host): one adapter,
//! configured by kind and base URL.
//!
//! - SMS: `POST {base}/sms/3/messages`
//! - RCS: `POST {base}/rcs/2/messages`
//! - Auth: `Authorization: App <api key>`
//!
//! Our message id is sent as `destinations[].messageId`, so delivery reports carry it
//! back and a retried send reuses it.

pub(crate) mod callback;
mod request;
pub mod wire;

use futures_util::future::BoxFuture;
use sendfleet_config::ProviderConfig;
use sendfleet_protocol::{Channel, Event, ProviderStatus, SendJob};

pub use callback::parse_callback;
pub use request::infobip_time;
use request::{build_rcs_body, build_sms_body};

use crate::{AdapterError, AdapterSettings, CallbackError, Provider, SendOutcome, http};

const JSON: reqwest::header::HeaderValue = reqwest::header::HeaderValue::from_static("application/json");

/// Path of the SMS send endpoint.
pub const SMS_SEND_PATH: &str = "/sms/3/messages";
/// Path of the RCS send endpoint.
pub const RCS_SEND_PATH: &str = "/rcs/2/messages";

/// The Infobip/JioCX adapter.
pub struct InfobipAdapter {
    config: ProviderConfig,
    client: reqwest::Client,
    send_url: String,
    authorization: reqwest::header::HeaderValue,
    callback_url: Option<String>,
}

impl InfobipAdapter {
    /// An adapter for one provider account.
    pub fn new(config: ProviderConfig, settings: &AdapterSettings) -> Result<InfobipAdapter, AdapterError> {
        let client = http::client_for(&config)?;
        let path = match config.channel() {
            Channel::Sms => SMS_SEND_PATH,
            Channel::Rcs => RCS_SEND_PATH,
        };
        let send_url = format!("{}{path}", config.base_url.trim_end_matches('/'));
        // Built once and marked sensitive: no per-request parsing, and never printed.
        let mut authorization = reqwest::header::HeaderValue::from_str(&format!("App {}", config.api_key.expose()))
            .map_err(|_| AdapterError::InvalidKey { provider: config.id.clone() })?;
        authorization.set_sensitive(true);
        let callback_url = settings.callback_url(&config);
        Ok(InfobipAdapter { config, client, send_url, authorization, callback_url })
    }

    /// The JSON body for a job.
    pub fn body(&self, job: &SendJob) -> Result<Vec<u8>, String> {
        let ctx = request::BodyContext { config: &self.config, callback_url: self.callback_url.as_deref() };
        match self.config.channel() {
            Channel::Sms => build_sms_body(job, &ctx),
            Channel::Rcs => build_rcs_body(job, &ctx),
        }
    }
}

impl Provider for InfobipAdapter {
    fn config(&self) -> &ProviderConfig {
        &self.config
    }

    fn send<'a>(&'a self, job: &'a SendJob) -> BoxFuture<'a, SendOutcome> {
        Box::pin(async move {
            let body = match self.body(job) {
                Ok(body) => body,
                Err(reason) => {
                    return SendOutcome::Rejected { code: "unsupported_content", reason, status: None, error: None };
                }
            };
            let request = self
                .client
                .post(&self.send_url)
                .header(reqwest::header::AUTHORIZATION, self.authorization.clone())
                .header(reqwest::header::CONTENT_TYPE, JSON.clone())
                .header(reqwest::header::ACCEPT, JSON.clone())
                .body(body);
            match http::execute(request).await {
                Ok(answer) => classify(answer.status, answer.retry_after, &answer.body),
                Err(outcome) => outcome,
            }
        })
    }

    fn parse_callback(&self, body: &[u8]) -> Result<Vec<Event>, CallbackError> {
        parse_callback(&self.config, body)
    }
}

/// Classifies an Infobip answer. A 200 can still carry a REJECTED (group 5) status for
/// the destination; any other group means accepted for delivery.
pub fn classify(status: u16, retry_after: Option<std::time::Duration>, body: &[u8]) -> SendOutcome {
    if (200..300).contains(&status) {
        let response: wire::SendResponse = serde_json::from_slice(body).unwrap_or_default();
        let status = response.messages.into_iter().next().and_then(|m| m.status).map(to_status);
        return match status {
            Some(status) if status.group_id == REJECTED_GROUP => SendOutcome::Rejected {
                code: "rejected_status",
                reason: format!(
                    "{} ({})",
                    status.name.as_deref().unwrap_or("REJECTED"),
                    status.description.as_deref().unwrap_or("")
                ),
                status: Some(status),
                error: None,
            },
            status => SendOutcome::Accepted { status },
        };
    }
    let reason = match serde_json::from_slice::<wire::ErrorBody>(body) {
        Ok(error) => format!("HTTP {status}: {}", error.summary()),
        Err(_) => format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)])),
    };
    match http::classify_status(status, retry_after, reason) {
        SendOutcome::Rejected { reason, status: st, error, .. } if status == 400 => {
            SendOutcome::Rejected { code: "bad_request", reason, status: st, error }
        }
        other => other,
    }
}

/// Infobip's REJECTED status group.
pub const REJECTED_GROUP: i32 = 5;
/// Infobip's DELIVERED status group.
pub const DELIVERED_GROUP: i32 = 3;
/// Infobip's PENDING status group (not final).
pub const PENDING_GROUP: i32 = 1;

pub(crate) fn to_status(status: wire::Status) -> ProviderStatus {
    ProviderStatus {
        group_id: status.group_id,
        group_name: status.group_name,
        id: status.id,
        name: status.name,
        description: status.description,
    }
}

#[cfg(test)]
mod tests;

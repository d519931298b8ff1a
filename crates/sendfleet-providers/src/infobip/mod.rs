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
mod config;
mod outcome;
mod request;
pub mod wire;

use futures_util::future::BoxFuture;
use sendfleet_config::ProviderConfig;
use sendfleet_protocol::{Channel, ProviderStatus, SendJob};

pub use crate::OutboundEvent;

/// The Infobip vendor: Infobip RCS and SMS, and JioCX (Infobip's API on Jio's host).
pub(crate) const VENDOR: crate::Vendor = crate::Vendor {
    name: "Infobip",
    kinds: &["infobip_rcs", "infobip_sms", "jiocx_rcs"],
    section: None,
    check: config::check,
    // One request per send, always: the caller's slot covers it.
    build: |config, settings, _| Ok(std::sync::Arc::new(InfobipAdapter::new(config.clone(), settings)?)),
    check_job: |_, _| Ok(()),
};
pub use callback::parse_callback;
pub use request::infobip_time;
use request::{build_event_body, build_rcs_body, build_sms_body};

use crate::{
    AdapterError, AdapterSettings, CallbackError, CallbackRequest, Capability, CapabilityError, ParsedCallback,
    Provider, RawAnswer, RejectCode, SendOutcome, Webhook, http,
};

const JSON: reqwest::header::HeaderValue = reqwest::header::HeaderValue::from_static("application/json");

/// Path of the SMS send endpoint.
pub const SMS_SEND_PATH: &str = "/sms/3/messages";
/// Path of the RCS send endpoint.
pub const RCS_SEND_PATH: &str = "/rcs/2/messages";
/// Path of the synchronous RCS capability check (≤ 500 numbers, ~100 requests/s).
pub const CAPABILITY_PATH: &str = "/rcs/2/capability-check/query";
/// Most numbers one capability query may carry.
pub const CAPABILITY_MAX_NUMBERS: usize = 500;
/// Path of the outbound RCS events endpoint (typing indicator, read receipt).
pub const RCS_EVENTS_PATH: &str = "/rcs/1/events";

/// The Infobip/JioCX adapter.
pub struct InfobipAdapter {
    config: ProviderConfig,
    client: reqwest::Client,
    send_url: reqwest::Url,
    capability_url: reqwest::Url,
    events_url: reqwest::Url,
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
        // Parsed once: reqwest would parse (and IDNA-check) a string URL per request.
        let send_url = http::endpoint_url(&config, path)?;
        let capability_url = http::endpoint_url(&config, CAPABILITY_PATH)?;
        let events_url = http::endpoint_url(&config, RCS_EVENTS_PATH)?;
        // Built once and marked sensitive: no per-request parsing, and never printed.
        let mut authorization = reqwest::header::HeaderValue::from_str(&format!("App {}", config.api_key.expose()))
            .map_err(|_| AdapterError::InvalidKey { provider: config.id.clone() })?;
        authorization.set_sensitive(true);
        let callback_url = settings.callback_url(&config);
        Ok(InfobipAdapter { config, client, send_url, capability_url, events_url, authorization, callback_url })
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
            match self.exchange(job).await {
                Ok(answer) => classify(answer.status, answer.retry_after, &answer.body),
                Err(outcome) => outcome,
            }
        })
    }

    fn parse_callback(&self, request: &CallbackRequest<'_>) -> Result<ParsedCallback, CallbackError> {
        parse_callback(&self.config, request.body)
    }

    fn capability_batch_size(&self) -> usize {
        if self.config.channel() == Channel::Rcs { CAPABILITY_MAX_NUMBERS } else { 0 }
    }

    fn sends_outbound_events(&self) -> bool {
        self.config.channel() == Channel::Rcs
    }

    fn send_event<'a>(&'a self, event: &'a OutboundEvent) -> BoxFuture<'a, RawAnswer> {
        Box::pin(self.post_event(event))
    }

    fn webhooks(&self) -> Vec<Webhook> {
        let mut webhooks = vec![Webhook::new("delivery reports", "delivery")];
        match self.config.channel() {
            Channel::Sms => webhooks.push(Webhook::new("inbound messages (renderer MO_JSON_2)", "inbound")),
            Channel::Rcs => webhooks.extend([
                Webhook::new("inbound messages (renderer MO_OTT_MSISDN)", "inbound"),
                Webhook::new("seen reports", "seen"),
                Webhook::new("events (typing, conversation started)", "events"),
            ]),
        }
        webhooks
    }

    fn check_capability<'a>(
        &'a self,
        sender: &'a str,
        numbers: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, Capability)>, CapabilityError>> {
        Box::pin(async move {
            if self.config.channel() != Channel::Rcs {
                return Err(CapabilityError::Unsupported);
            }
            if numbers.is_empty() {
                return Ok(Vec::new());
            }
            if numbers.len() > CAPABILITY_MAX_NUMBERS {
                return Err(CapabilityError::Failed(format!(
                    "{} numbers in one query (at most {CAPABILITY_MAX_NUMBERS})",
                    numbers.len()
                )));
            }
            let query = wire::CapabilityQuery {
                sender,
                phone_numbers: numbers.iter().map(|n| n.trim_start_matches('+').to_owned()).collect(),
            };
            let body = serde_json::to_vec(&query).map_err(|e| CapabilityError::Failed(e.to_string()))?;
            match self.post(&self.capability_url, body).await {
                Ok(answer) => capability_answer(answer.status, &answer.body, numbers),
                Err(outcome) => Err(CapabilityError::Failed(match outcome {
                    SendOutcome::Transient { reason, .. } => reason,
                    other => other.label().to_owned(),
                })),
            }
        })
    }

    fn send_raw<'a>(&'a self, job: &'a SendJob) -> BoxFuture<'a, RawAnswer> {
        Box::pin(async move {
            match self.exchange(job).await {
                Ok(answer) => {
                    let outcome = classify(answer.status, answer.retry_after, &answer.body);
                    let provider_message_id = serde_json::from_slice::<wire::SendResponse>(&answer.body)
                        .ok()
                        .and_then(|r| r.messages.into_iter().next())
                        .and_then(|m| m.message_id);
                    RawAnswer {
                        http_status: Some(answer.status),
                        provider_message_id,
                        body: String::from_utf8_lossy(&answer.body).into_owned(),
                        outcome,
                    }
                }
                Err(outcome) => {
                    RawAnswer { http_status: None, provider_message_id: None, body: String::new(), outcome }
                }
            }
        })
    }
}

/// Infobip's capability `code` as the worker acts on it. Codes added later are unknown,
/// which sends RCS and lets the delivery report decide.
pub fn capability_of(code: &str) -> Capability {
    match code {
        "ENABLED" => Capability::Enabled,
        "UNREACHABLE" | "REJECTED_NETWORK" | "REJECTED_ROUTE_NOT_AVAILABLE" => Capability::NotCapable,
        "INVALID_DESTINATION_ADDRESS" => Capability::InvalidNumber,
        // REQUEST_FAILED, PROCESSING_ERROR, UNKNOWN_CODE and anything new.
        _ => Capability::Unknown,
    }
}

/// Reads a capability answer into one result per asked number (E.164 as given). A
/// number missing from the answer is unknown.
pub fn capability_answer(
    status: u16,
    body: &[u8],
    numbers: &[String],
) -> Result<Vec<(String, Capability)>, CapabilityError> {
    if status == 429 {
        return Err(CapabilityError::Throttled);
    }
    if !(200..300).contains(&status) {
        let reason = match serde_json::from_slice::<wire::ErrorBody>(body) {
            Ok(error) => format!("HTTP {status}: {}", error.summary()),
            Err(_) => format!("HTTP {status}"),
        };
        return Err(CapabilityError::Failed(reason));
    }
    let response: wire::CapabilityResponse =
        serde_json::from_slice(body).map_err(|e| CapabilityError::Failed(format!("unreadable answer: {e}")))?;
    let by_digits: std::collections::HashMap<&str, Capability> = response
        .capability_check_results
        .iter()
        .map(|r| (r.phone_number.trim_start_matches('+'), capability_of(&r.code)))
        .collect();
    Ok(numbers
        .iter()
        .map(|n| (n.clone(), by_digits.get(n.trim_start_matches('+')).copied().unwrap_or(Capability::Unknown)))
        .collect())
}

impl InfobipAdapter {
    /// One HTTP exchange for a job; a body that cannot be built is a rejection.
    async fn exchange(&self, job: &SendJob) -> Result<http::Answer, SendOutcome> {
        let body = self.body(job).map_err(|reason| SendOutcome::Rejected {
            code: RejectCode::UnsupportedContent,
            reason,
            status: None,
            error: None,
        })?;
        self.post(&self.send_url, body).await
    }

    async fn post(&self, url: &reqwest::Url, body: Vec<u8>) -> Result<http::Answer, SendOutcome> {
        let request = self
            .client
            .post(url.clone())
            .header(reqwest::header::AUTHORIZATION, self.authorization.clone())
            .header(reqwest::header::CONTENT_TYPE, JSON.clone())
            .header(reqwest::header::ACCEPT, JSON.clone())
            .body(body);
        http::execute(request).await
    }

    /// Sends an outbound RCS event (typing indicator or read receipt) to
    /// `POST {base}/rcs/1/events` and returns the raw answer. RCS providers only.
    pub async fn post_event(&self, event: &OutboundEvent) -> RawAnswer {
        if self.config.channel() != Channel::Rcs {
            let reason = format!("provider {} is not an RCS provider; events are RCS only", self.config.id);
            return RawAnswer::refused(RejectCode::UnsupportedContent, reason);
        }
        let body = build_event_body(event, self.config.default_sender().unwrap_or_default());
        match self.post(&self.events_url, body).await {
            Ok(answer) => RawAnswer {
                http_status: Some(answer.status),
                provider_message_id: None,
                outcome: classify(answer.status, answer.retry_after, &answer.body),
                body: String::from_utf8_lossy(&answer.body).into_owned(),
            },
            Err(outcome) => RawAnswer { http_status: None, provider_message_id: None, body: String::new(), outcome },
        }
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
                code: RejectCode::RejectedStatus,
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
            SendOutcome::Rejected { code: RejectCode::BadRequest, reason, status: st, error }
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
mod callback_tests;
#[cfg(test)]
mod tests;

//! *Send Test*: one message sent synchronously through a named provider's adapter,
//! bypassing the queues, with the provider's answer shown as it came back. Used by
//! `dispatcher send-test` and `POST /v1/send-test`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use sendfleet_config::{Config, ProviderConfig};
use sendfleet_protocol::{
    Channel, Content, IndiaDlt, Regional, SCHEMA_VERSION, SendJob, SendOptions, SmsFallback, new_id, now_ms,
};
use sendfleet_providers::{AdapterSettings, RawAnswer, SendOutcome};
use serde::{Deserialize, Serialize};

use crate::{
    Rejection,
    number::{NumberingPlan, check_destination, from_national},
};

/// What the operator enters in the *Send Test* form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendTestRequest {
    /// Provider id from the config.
    pub provider: String,
    /// Country calling code, with or without `+` (`91`, `+44`).
    pub country_code: String,
    /// National number (digits; spaces and dashes are ignored).
    pub number: String,
    /// The message text: the RCS message for RCS providers, the SMS for SMS providers.
    #[serde(default)]
    pub text: Option<String>,
    /// SMS fallback text (RCS providers): sent through the SMS provider when the RCS
    /// send is refused.
    #[serde(default)]
    pub sms_fallback_text: Option<String>,
    /// RCS: the provider template id (sent as a provider template instead of `text`).
    /// SMS: the India DLT content template id.
    #[serde(default)]
    pub template_id: Option<String>,
    /// RCS provider template parameters.
    #[serde(default)]
    pub template_parameters: BTreeMap<String, String>,
    /// India DLT principal entity id (SMS, and the SMS fallback of RCS).
    #[serde(default)]
    pub principal_entity_id: Option<String>,
    /// Sender id; absent means the provider's first.
    #[serde(default)]
    pub sender: Option<String>,
}

/// The provider's answer to one send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderAnswer {
    /// Provider id.
    pub provider: String,
    /// Our message id (sent as the provider's message id).
    pub message_id: String,
    /// HTTP status, absent when no answer came.
    pub http_status: Option<u16>,
    /// The provider's message id from the answer.
    pub provider_message_id: Option<String>,
    /// `accepted`, `rejected`, `transient` or `auth_failure`.
    pub outcome: String,
    /// Why, when not accepted.
    pub reason: Option<String>,
    /// The answer body as received.
    pub raw_body: String,
}

/// The result of a send test: the answer, and the SMS fallback's answer when one was
/// sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SendTestResult {
    /// The provider's answer.
    pub answer: ProviderAnswer,
    /// The SMS fallback's answer, when the RCS send was refused and a fallback text given.
    pub fallback: Option<ProviderAnswer>,
}

/// Sends one test message. A bad form is a [`Rejection`]; anything the provider says
/// (including refusals) is in the result.
pub async fn send_test(request: &SendTestRequest, config: &Config) -> Result<SendTestResult, Rejection> {
    let provider = config
        .provider(&request.provider)
        .ok_or_else(|| Rejection::new("unknown_provider", format!("no provider with id '{}'", request.provider)))?;
    let to = from_national(&request.country_code, &request.number);
    check_destination(&to, NumberingPlan::of(&config.dispatcher))?;
    let sender = match &request.sender {
        Some(sender) => sender.clone(),
        None => provider.default_sender().unwrap_or_default().to_owned(),
    };
    let dlt = |template: Option<&String>| {
        request.principal_entity_id.as_ref().map(|id| Regional {
            india_dlt: Some(IndiaDlt {
                principal_entity_id: id.clone(),
                content_template_id: template.cloned(),
                telemarketer_id: None,
            }),
            turkey_iys: None,
        })
    };
    let text = request.text.clone().filter(|t| !t.trim().is_empty());
    let (content, options, fallback) = match provider.channel() {
        Channel::Rcs => {
            let content = match (&request.template_id, text) {
                (Some(template_id), _) => Content::Template {
                    template_id: template_id.clone(),
                    parameters: request.template_parameters.clone(),
                },
                (None, Some(text)) => Content::Text { text, suggestions: vec![] },
                (None, None) => return Err(Rejection::new("missing_content", "give text or template_id")),
            };
            let fallback = request.sms_fallback_text.clone().filter(|t| !t.trim().is_empty()).map(|text| {
                let settings = provider.sms_fallback.as_ref();
                SmsFallback {
                    text,
                    sender: settings.and_then(|s| s.sender_id.clone()),
                    provider: settings.and_then(|s| s.sms_provider.clone()),
                    regional: dlt(None).or_else(|| {
                        settings.filter(|s| s.india && to.starts_with("+91")).and_then(|s| {
                            s.principal_entity_id.as_ref().map(|id| Regional {
                                india_dlt: Some(IndiaDlt {
                                    principal_entity_id: id.clone(),
                                    content_template_id: None,
                                    telemarketer_id: None,
                                }),
                                turkey_iys: None,
                            })
                        })
                    }),
                    validity_period_seconds: None,
                }
            });
            (content, SendOptions::default(), fallback)
        }
        Channel::Sms => {
            let text = text
                .or_else(|| request.sms_fallback_text.clone())
                .ok_or_else(|| Rejection::new("missing_content", "give text"))?;
            let options = SendOptions { regional: dlt(request.template_id.as_ref()), ..Default::default() };
            (Content::Text { text, suggestions: vec![] }, options, None)
        }
    };
    let job = test_job(provider, &to, sender, content, options);
    let answer = send_one(provider, config, &job).await?;
    let refused = !matches!(answer.outcome.as_str(), "accepted");
    let fallback = match fallback {
        Some(fallback) if refused => {
            let sms = match &fallback.provider {
                Some(id) => config.provider(id),
                None => config.default_provider(Channel::Sms),
            }
            .filter(|p| p.channel() == Channel::Sms)
            .ok_or_else(|| Rejection::new("no_default_provider", "no SMS provider for the fallback"))?;
            let sender =
                fallback.sender.clone().or_else(|| sms.default_sender().map(str::to_owned)).unwrap_or_default();
            let options = SendOptions { regional: fallback.regional.clone(), ..Default::default() };
            let job = test_job(sms, &to, sender, Content::Text { text: fallback.text, suggestions: vec![] }, options);
            Some(send_one(sms, config, &job).await?)
        }
        _ => None,
    };
    Ok(SendTestResult { answer, fallback })
}

fn test_job(provider: &ProviderConfig, to: &str, sender: String, content: Content, options: SendOptions) -> SendJob {
    let message_id = new_id();
    SendJob {
        priority: Default::default(),
        schema_version: SCHEMA_VERSION,
        trace_id: message_id.clone(),
        message_id,
        provider: provider.id.clone(),
        channel: provider.channel(),
        to: to.to_owned(),
        sender,
        content,
        options,
        fallback: None,
        metadata: BTreeMap::from([("send_test".to_owned(), "true".to_owned())]),
        attempts: 0,
        first_attempt_at_ms: None,
        created_at_ms: now_ms(),
        fallback_for: None,
    }
}

async fn send_one(provider: &ProviderConfig, config: &Config, job: &SendJob) -> Result<ProviderAnswer, Rejection> {
    let settings = AdapterSettings { callback_base_url: config.callback_ingest.public_base_url.clone() };
    // An operator's one-off test send, outside the workers' fleet-wide rate (as its
    // first request always was): no gate for the token fetch or a resend either.
    let adapter = sendfleet_providers::build(provider, &settings, sendfleet_providers::unlimited())
        .map_err(|e| Rejection::new("provider_unavailable", e.to_string()))?;
    let RawAnswer { http_status, provider_message_id, body, outcome } = adapter.send_raw(job).await;
    let reason = match &outcome {
        SendOutcome::Accepted { .. } => None,
        SendOutcome::Rejected { reason, .. }
        | SendOutcome::Transient { reason, .. }
        | SendOutcome::AuthFailure { reason, .. } => Some(reason.clone()),
    };
    Ok(ProviderAnswer {
        provider: provider.id.clone(),
        message_id: job.message_id.clone(),
        http_status,
        provider_message_id,
        outcome: outcome.label().to_owned(),
        reason,
        raw_body: body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_form_is_rejected_before_anything_is_sent() {
        let toml = r#"
[[providers]]
id = "rcs"
kind = "infobip_rcs"
base_url = "http://127.0.0.1:9"
api_key_env = "K"
sender_ids = ["Agent"]
"#;
        let config = Config::from_toml(toml, &|_| Some("k".into()), &sendfleet_providers::VENDORS).unwrap();
        let form = SendTestRequest {
            provider: "nope".into(),
            country_code: "91".into(),
            number: "9876543210".into(),
            text: Some("hi".into()),
            ..Default::default()
        };
        assert_eq!(send_test(&form, &config).await.unwrap_err().code, "unknown_provider");
        let form = SendTestRequest { provider: "rcs".into(), number: "12".into(), ..form };
        assert_eq!(send_test(&form, &config).await.unwrap_err().code, "invalid_destination");
        let form = SendTestRequest { number: "9876543210".into(), text: None, ..form };
        assert_eq!(send_test(&form, &config).await.unwrap_err().code, "missing_content");
    }
}

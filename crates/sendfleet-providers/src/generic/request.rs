//! Building the Generic API request body from a job. Pure functions.

use std::collections::BTreeMap;

use super::{GENERIC_RESERVED_BODY_KEYS, MessageField, TemplatePart, parse_parameter_template};
use sendfleet_protocol::{Channel, Content, SendJob};

use super::wire;
use crate::infobip::callback::encode_callback_data;

/// A body parameter, parsed once at start-up.
#[derive(Debug, Clone)]
pub(crate) struct BodyParameter {
    pub key: String,
    pub parts: Vec<TemplatePart>,
}

/// Parses configured parameters; validation already refused bad templates, so an
/// error here is a config built without validation (tests, tools).
pub(crate) fn parse_parameters(parameters: &BTreeMap<String, String>) -> Result<Vec<BodyParameter>, String> {
    parameters
        .iter()
        .map(|(key, value)| {
            parse_parameter_template(value)
                .map(|parts| BodyParameter { key: key.clone(), parts })
                .map_err(|e| format!("body parameter {key}: {e}"))
        })
        .collect()
}

/// The value of a parameter for a job.
pub(crate) fn render(parts: &[TemplatePart], job: &SendJob) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            TemplatePart::Literal(text) => out.push_str(text),
            TemplatePart::Field(field) => out.push_str(&field_value(field, job)),
        }
    }
    out
}

fn field_value(field: &MessageField, job: &SendJob) -> String {
    match field {
        MessageField::To => job.to.clone(),
        MessageField::ToDigits => job.to.trim_start_matches('+').to_owned(),
        MessageField::MessageId => job.message_id.clone(),
        MessageField::Sender => job.sender.clone(),
        MessageField::Text => match &job.content {
            Content::Text { text, .. } => text.clone(),
            _ => String::new(),
        },
        MessageField::Channel => job.channel.as_str().to_owned(),
        MessageField::Metadata(key) => job.metadata.get(key).cloned().unwrap_or_default(),
    }
}

/// What the body needs besides the job.
pub(crate) struct BodyContext<'a> {
    pub channel: Channel,
    pub callback_url: Option<&'a str>,
    pub parameters: &'a [BodyParameter],
    pub fallback_parameters: &'a [BodyParameter],
}

/// The request our Generic API defines, as a JSON object, before parameters.
pub(crate) fn request(job: &SendJob, ctx: &BodyContext<'_>) -> Result<wire::SendRequest, String> {
    if ctx.channel == Channel::Sms {
        match &job.content {
            Content::Text { suggestions, .. } if suggestions.is_empty() => {}
            Content::Text { .. } => return Err("SMS cannot carry RCS suggestions".into()),
            other => return Err(format!("SMS cannot carry {} content", other.kind())),
        }
    }
    let options = &job.options;
    if let Some(at) = &options.send_at {
        sendfleet_protocol::check_send_at(at).map_err(|e| e.to_string())?;
    }
    Ok(wire::SendRequest {
        message_id: job.message_id.clone(),
        channel: ctx.channel,
        to: job.to.clone(),
        sender: job.sender.clone(),
        content: job.content.clone(),
        attempt: job.attempts.saturating_add(1),
        callback_url: ctx.callback_url.map(str::to_owned),
        callback_data: Some(encode_callback_data(&job.trace_id, job.fallback_for.as_deref(), &job.metadata)),
        validity_period_seconds: options.validity_period_seconds,
        send_at: options.send_at.clone(),
        delivery_time_window: options.delivery_time_window.clone(),
        campaign_reference_id: options.campaign_reference_id.clone(),
        regional: options.regional.clone(),
        fallback_for: job.fallback_for.clone(),
    })
}

/// The whole body: our request with the body parameters merged in at the top level
/// (and, for an SMS that replaces an RCS message, the fallback parameters after them).
pub(crate) fn build_body(job: &SendJob, ctx: &BodyContext<'_>) -> Result<Vec<u8>, String> {
    let request = request(job, ctx)?;
    let mut value = serde_json::to_value(&request).map_err(|e| e.to_string())?;
    let Some(object) = value.as_object_mut() else { return Err("request did not serialise to an object".into()) };
    let fallback: &[BodyParameter] = if job.fallback_for.is_some() { ctx.fallback_parameters } else { &[] };
    for parameter in ctx.parameters.iter().chain(fallback) {
        // Validation refuses reserved keys; this guard keeps a config built without
        // validation from replacing our fields.
        if GENERIC_RESERVED_BODY_KEYS.contains(&parameter.key.as_str()) {
            continue;
        }
        object.insert(parameter.key.clone(), serde_json::Value::String(render(&parameter.parts, job)));
    }
    serde_json::to_vec(&value).map_err(|e| e.to_string())
}

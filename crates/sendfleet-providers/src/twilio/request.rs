//! Building the form body of a Twilio send.

use sendfleet_config::{FallbackMode, ProviderConfig};

use super::TwilioConfig;
use sendfleet_protocol::{Channel, Content, SendJob};

use crate::RejectCode;

/// Twilio's longest `ValidityPeriod`, in seconds.
const MAX_VALIDITY_SECONDS: u32 = 36_000;

/// The form body of a send, parameters in a fixed order (the wire is reproducible), or
/// why the job cannot go through Twilio.
pub(crate) fn form(
    job: &SendJob,
    config: &ProviderConfig,
    twilio: &TwilioConfig,
    callback_url: Option<&str>,
) -> Result<String, (RejectCode, String)> {
    check(job, twilio)?;
    let mut form = form_urlencoded::Serializer::new(String::new());
    let service = twilio.messaging_service_sid.as_deref();
    match job.channel {
        Channel::Sms => {
            form.append_pair("To", &job.to);
            match service {
                Some(sid) => form.append_pair("MessagingServiceSid", sid),
                None => form.append_pair("From", &job.sender),
            };
        }
        Channel::Rcs => {
            // Twilio falls back to SMS only for a plain number sent through a Messaging
            // Service; `rcs:` keeps the message on RCS so the fleet's fallback decides.
            let twilio_falls_back = config.fallback_mode == FallbackMode::Provider && job.fallback.is_some();
            match (service, twilio_falls_back) {
                (Some(sid), true) => {
                    form.append_pair("To", &job.to);
                    form.append_pair("MessagingServiceSid", sid);
                    if let Some(sender) = job.fallback.as_ref().and_then(|f| f.sender.as_deref())
                        && is_phone_number(sender)
                    {
                        form.append_pair("FallbackFrom", sender);
                    }
                }
                (Some(sid), false) => {
                    form.append_pair("To", &format!("rcs:{}", job.to));
                    form.append_pair("MessagingServiceSid", sid);
                }
                (None, _) => {
                    form.append_pair("To", &format!("rcs:{}", job.to));
                    form.append_pair("From", &rcs_sender(&job.sender));
                }
            }
        }
    }
    content(&job.content, &mut form);
    if let Some(url) = callback_url {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("message_id", &job.message_id)
            .append_pair("trace_id", &job.trace_id)
            .finish();
        form.append_pair("StatusCallback", &format!("{url}/delivery?{query}"));
    }
    let options = &job.options;
    if let Some(seconds) = options.validity_period_seconds {
        form.append_pair("ValidityPeriod", &seconds.clamp(1, MAX_VALIDITY_SECONDS).to_string());
    }
    if let Some(at) = options.send_at.as_deref().and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok()) {
        form.append_pair("ScheduleType", "fixed");
        form.append_pair("SendAt", &at.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    form.append_pair("Attempt", &(job.attempts + 1).to_string());
    Ok(form.finish())
}

/// Why Twilio's API cannot carry `job`, if it cannot: every refusal rule, checked
/// without building the body (the dispatcher asks it of every job for a Twilio provider).
pub(crate) fn check(job: &SendJob, twilio: &TwilioConfig) -> Result<(), (RejectCode, String)> {
    let unsupported = |what: &str| {
        Err((
            RejectCode::UnsupportedContent,
            format!("{what} need a Twilio Content template: send content of type template with its ContentSid (HX…)"),
        ))
    };
    match &job.content {
        Content::Text { suggestions, .. } | Content::File { suggestions, .. } if !suggestions.is_empty() => {
            return unsupported("suggestions");
        }
        Content::Card { .. } => return unsupported("cards"),
        Content::Carousel { .. } => return unsupported("carousels"),
        Content::Template { template_id, .. } if !is_sid(template_id, "HX") => {
            return Err((
                RejectCode::UnsupportedContent,
                format!("template_id {template_id:?} is not a Twilio ContentSid (HX and 32 hex digits)"),
            ));
        }
        Content::Text { .. } | Content::File { .. } | Content::Template { .. } => {}
    }
    if let Some(at) = &job.options.send_at {
        if twilio.messaging_service_sid.is_none() {
            return Err((
                RejectCode::UnsupportedOption,
                "send_at: Twilio schedules only through a Messaging Service (set twilio.messaging_service_sid)".into(),
            ));
        }
        chrono::DateTime::parse_from_rfc3339(at)
            .map_err(|e| (RejectCode::UnsupportedOption, format!("send_at {at:?} is not RFC 3339: {e}")))?;
    }
    if job.options.delivery_time_window.is_some() {
        return Err((RejectCode::UnsupportedOption, "delivery_time_window is not supported by Twilio".into()));
    }
    Ok(())
}

/// The content's parameters (the content was [`check`]ed: what remains is expressible).
fn content(content: &Content, form: &mut form_urlencoded::Serializer<'_, String>) {
    match content {
        Content::Text { text, .. } => {
            form.append_pair("Body", text);
        }
        Content::File { url, .. } => {
            form.append_pair("MediaUrl", url);
        }
        Content::Template { template_id, parameters } => {
            form.append_pair("ContentSid", template_id);
            if !parameters.is_empty() {
                // A JSON object of strings, as Twilio's ContentVariables wants.
                let variables = serde_json::to_string(parameters).unwrap_or_default();
                form.append_pair("ContentVariables", &variables);
            }
        }
        Content::Card { .. } | Content::Carousel { .. } => {}
    }
}

/// The RCS sender as Twilio's `From`: `rcs:<SenderId>`.
fn rcs_sender(sender: &str) -> String {
    if sender.starts_with("rcs:") { sender.to_owned() } else { format!("rcs:{sender}") }
}

/// `+` and 1–15 digits: what `FallbackFrom` takes (an alphanumeric sender does not).
fn is_phone_number(sender: &str) -> bool {
    sender.strip_prefix('+').is_some_and(|d| (1..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// A Twilio SID with this prefix (`HX…`: two letters and 32 hex digits).
fn is_sid(sid: &str, prefix: &str) -> bool {
    sid.len() == 34 && sid.starts_with(prefix) && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

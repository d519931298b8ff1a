//! From a send request to send jobs, or a rejection with its reason. Pure.

use sendfleet_config::{Config, ProviderConfig};
use sendfleet_protocol::{Channel, Content, SCHEMA_VERSION, SendJob, SendRequest, Suggestion, new_id, now_ms};

/// Why a request is refused. `code` is bounded (metrics, tooling); `reason` says
/// exactly what is wrong for the human reading the rejected queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct Rejection {
    /// Bounded code, e.g. `invalid_destination`.
    pub code: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl Rejection {
    pub(crate) fn new(code: &'static str, reason: impl Into<String>) -> Rejection {
        Rejection { code, reason: reason.into() }
    }
}

/// Largest RCS text Infobip accepts.
pub const MAX_RCS_TEXT: usize = 3_072;
/// Largest message id providers accept.
pub const MAX_MESSAGE_ID: usize = 200;

/// Validates a request and expands it into one job per recipient.
pub fn plan(request: SendRequest, config: &Config) -> Result<Vec<SendJob>, Rejection> {
    let provider = resolve_provider(&request, config)?;
    let sender = match &request.sender {
        Some(sender) if provider.sender_ids.iter().any(|s| s == sender) => sender.clone(),
        Some(sender) => {
            return Err(Rejection::new(
                "unknown_sender",
                format!("sender '{sender}' is not configured for provider '{}'", provider.id),
            ));
        }
        None => provider.default_sender().unwrap_or_default().to_owned(),
    };
    let content = match (&request.content, &request.template) {
        (Some(content), None) => content.clone(),
        (None, None) => return Err(Rejection::new("missing_content", "a request needs content or template")),
        (Some(_), Some(_)) => return Err(Rejection::new("ambiguous_content", "give content or template, not both")),
        (None, Some(_)) => return Err(Rejection::new("unknown_template", "templates are not configured")),
    };
    check_content(&content, request.channel)?;

    let mut recipients = Vec::new();
    if let Some(to) = &request.to {
        recipients.push((to.clone(), request.message_id.clone(), Default::default()));
    }
    for recipient in &request.recipients {
        recipients.push((recipient.to.clone(), recipient.message_id.clone(), recipient.metadata.clone()));
    }
    if recipients.is_empty() {
        return Err(Rejection::new("missing_destination", "a request needs 'to' or 'recipients'"));
    }
    if request.to.is_some() && !request.recipients.is_empty() {
        return Err(Rejection::new("ambiguous_destination", "give 'to' or 'recipients', not both"));
    }

    let trace_id = request.trace_id.clone().unwrap_or_else(new_id);
    let created_at_ms = now_ms();
    recipients
        .into_iter()
        .map(|(to, message_id, extra_metadata)| {
            check_destination(&to)?;
            check_regional(&to, &request, provider)?;
            let message_id = message_id.unwrap_or_else(new_id);
            if message_id.is_empty() || message_id.len() > MAX_MESSAGE_ID {
                return Err(Rejection::new(
                    "invalid_message_id",
                    format!("message_id must be 1-{MAX_MESSAGE_ID} characters"),
                ));
            }
            let mut metadata = request.metadata.clone();
            metadata.extend(extra_metadata);
            Ok(SendJob {
                schema_version: SCHEMA_VERSION,
                message_id,
                provider: provider.id.clone(),
                channel: request.channel,
                to,
                sender: sender.clone(),
                content: content.clone(),
                options: request.options.clone(),
                fallback: request.fallback.clone(),
                metadata,
                trace_id: trace_id.clone(),
                attempts: 0,
                first_attempt_at_ms: None,
                created_at_ms,
                fallback_for: None,
            })
        })
        .collect()
}

fn resolve_provider<'c>(request: &SendRequest, config: &'c Config) -> Result<&'c ProviderConfig, Rejection> {
    match &request.provider {
        Some(id) => {
            let provider = config
                .provider(id)
                .ok_or_else(|| Rejection::new("unknown_provider", format!("no provider with id '{id}'")))?;
            if provider.channel() != request.channel {
                return Err(Rejection::new(
                    "channel_mismatch",
                    format!("provider '{id}' sends {}, the request is {}", provider.channel(), request.channel),
                ));
            }
            Ok(provider)
        }
        None => config.default_provider(request.channel).ok_or_else(|| {
            Rejection::new(
                "no_default_provider",
                format!("no provider given and no default {} provider", request.channel),
            )
        }),
    }
}

/// E.164: `+`, a non-zero country digit, 8–15 digits in all.
pub fn check_destination(to: &str) -> Result<(), Rejection> {
    let digits = to.strip_prefix('+').unwrap_or("");
    let valid =
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    if valid {
        Ok(())
    } else {
        Err(Rejection::new("invalid_destination", format!("'{to}' is not an E.164 number (+ and 8-15 digits)")))
    }
}

fn check_regional(to: &str, request: &SendRequest, provider: &ProviderConfig) -> Result<(), Rejection> {
    // DLT ids are an SMS obligation; an RCS message carries them in its SMS fallback.
    let india = to.starts_with("+91") && request.channel == Channel::Sms;
    let has_dlt = request.options.regional.as_ref().is_some_and(|r| r.india_dlt.is_some());
    if india && provider.require_india_dlt && !has_dlt {
        return Err(Rejection::new(
            "missing_india_dlt",
            format!("provider '{}' requires India DLT ids (principal_entity_id) for +91 destinations", provider.id),
        ));
    }
    Ok(())
}

fn check_content(content: &Content, channel: Channel) -> Result<(), Rejection> {
    match (content, channel) {
        (Content::Text { text, .. }, _) if text.trim().is_empty() => {
            Err(Rejection::new("empty_content", "text is empty"))
        }
        (Content::Text { suggestions, .. }, Channel::Sms) if !suggestions.is_empty() => {
            Err(Rejection::new("content_not_for_channel", "SMS cannot carry suggestions"))
        }
        (Content::Text { .. }, Channel::Sms) => Ok(()),
        (other, Channel::Sms) => {
            Err(Rejection::new("content_not_for_channel", format!("SMS carries text only, not {}", other.kind())))
        }
        (Content::Text { text, suggestions }, Channel::Rcs) => {
            if text.chars().count() > MAX_RCS_TEXT {
                return Err(Rejection::new(
                    "content_too_long",
                    format!("RCS text is limited to {MAX_RCS_TEXT} characters"),
                ));
            }
            check_suggestions(suggestions, 11)
        }
        (Content::Carousel { cards, suggestions, .. }, Channel::Rcs) => {
            if !(2..=10).contains(&cards.len()) {
                return Err(Rejection::new(
                    "invalid_carousel",
                    format!("a carousel has 2-10 cards, not {}", cards.len()),
                ));
            }
            for card in cards {
                check_suggestions(&card.suggestions, 4)?;
            }
            check_suggestions(suggestions, 11)
        }
        (Content::Card { card, suggestions, .. }, Channel::Rcs) => {
            if card.title.is_none() && card.media.is_none() {
                return Err(Rejection::new("invalid_card", "a card needs a title or media"));
            }
            check_suggestions(&card.suggestions, 4)?;
            check_suggestions(suggestions, 11)
        }
        (Content::File { suggestions, .. }, Channel::Rcs) => check_suggestions(suggestions, 11),
        (Content::Template { template_id, .. }, Channel::Rcs) if template_id.is_empty() => {
            Err(Rejection::new("invalid_template", "template_id is empty"))
        }
        (Content::Template { .. }, Channel::Rcs) => Ok(()),
    }
}

fn check_suggestions(suggestions: &[Suggestion], max: usize) -> Result<(), Rejection> {
    if suggestions.len() > max {
        return Err(Rejection::new(
            "too_many_suggestions",
            format!("at most {max} suggestions here, got {}", suggestions.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

//! From a send request to send jobs, or a rejection with its reason. Pure.

use sendfleet_config::{Config, FallbackMode, ProviderConfig};
use sendfleet_protocol::{
    Channel, Content, IndiaDlt, Recipient, Regional, SCHEMA_VERSION, SendJob, SendOptions, SendRequest, SmsFallback,
    Suggestion, TurkeyIys, check_send_at, new_id, now_ms,
};

use crate::{
    number::{NumberingPlan, check_destination},
    template::{RenderError, Variables, render_content, render_text},
};

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

/// Validates a request and expands it into one job per recipient. Any bad recipient
/// rejects the whole request (a queued request is settled as one unit). Ids the request
/// does not give are fresh ([`plan_derived`] derives them instead).
pub fn plan(request: SendRequest, config: &Config) -> Result<Vec<SendJob>, Rejection> {
    plan_with(request, config, None)
}

/// [`plan`] for a request identified by `identity` (see [`RequestIdentity`]): the
/// message ids and trace id the request does not give are derived from it, so every
/// redelivery of the same request plans the same jobs, and the worker's sent record
/// keeps a job dispatched twice from being sent twice.
pub fn plan_derived(
    request: SendRequest,
    config: &Config,
    identity: RequestIdentity,
) -> Result<Vec<SendJob>, Rejection> {
    plan_with(request, config, Some(identity))
}

fn plan_with(
    mut request: SendRequest,
    config: &Config,
    identity: Option<RequestIdentity>,
) -> Result<Vec<SendJob>, Rejection> {
    let to = request.to.take();
    let message_id = request.message_id.take();
    let recipients = std::mem::take(&mut request.recipients);
    if recipients.len() > config.dispatcher.max_recipients_per_request {
        return Err(Rejection::new(
            "too_many_recipients",
            format!(
                "{} recipients; a queued request takes at most {} (dispatcher.max_recipients_per_request): split it, or stream it to POST /v1/messages/bulk",
                recipients.len(),
                config.dispatcher.max_recipients_per_request
            ),
        ));
    }
    if let Some(identity) = identity
        && request.trace_id.is_none()
    {
        request.trace_id = Some(identity.trace_id());
    }
    let mut planner = Planner::new(request, config)?;
    planner.identity = identity;
    if to.is_some() && !recipients.is_empty() {
        return Err(Rejection::new("ambiguous_destination", "give 'to' or 'recipients', not both"));
    }
    match to {
        Some(to) => {
            Ok(vec![planner.job_at(
                0,
                Recipient { to, message_id, variables: Default::default(), metadata: Default::default() },
            )?])
        }
        None if recipients.is_empty() => {
            Err(Rejection::new("missing_destination", "a request needs 'to' or 'recipients'"))
        }
        None => recipients.into_iter().enumerate().map(|(index, recipient)| planner.job_at(index, recipient)).collect(),
    }
}

/// What makes a queued request the same request on every delivery: a digest of its
/// bytes and of the AMQP properties a producer may set to tell identical bodies apart
/// (`message_id`, `timestamp`). Two publishes with the same bytes and properties are one
/// request: give each request a `message_id` (or set the AMQP `message_id`) to send the
/// same content twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestIdentity(uuid::Uuid);

/// The UUIDv5 namespace of request identities.
const REQUEST_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5e9d_f1ee_7a3c_4b1d_9c2e_0f6a_8b4d_2c71);

impl RequestIdentity {
    /// The identity of a request body with its AMQP `message_id` and `timestamp`.
    pub fn new(body: &[u8], amqp_message_id: Option<&str>, amqp_timestamp: Option<u64>) -> RequestIdentity {
        let mut name = Vec::with_capacity(body.len() + 64);
        name.extend_from_slice(body);
        name.push(0);
        name.extend_from_slice(amqp_message_id.unwrap_or("").as_bytes());
        name.push(0);
        name.extend_from_slice(&amqp_timestamp.unwrap_or(0).to_be_bytes());
        RequestIdentity(uuid::Uuid::new_v5(&REQUEST_NAMESPACE, &name))
    }

    /// The message id of the recipient at `index`.
    fn message_id(&self, index: usize) -> String {
        uuid::Uuid::new_v5(&self.0, format!("recipient/{index}").as_bytes()).to_string()
    }

    /// The request's trace id.
    fn trace_id(&self) -> String {
        uuid::Uuid::new_v5(&self.0, b"trace").to_string()
    }
}

/// Where the content of a request's jobs comes from.
enum Source<'c> {
    /// Literal content, checked once.
    Literal(Content),
    /// A config template, rendered and checked per recipient.
    Template { id: &'c str, content: &'c Content, shared: std::collections::BTreeMap<String, String> },
}

/// A validated request (everything but its recipients) that turns recipients into
/// jobs one at a time, so a bulk request never needs all its recipients in memory.
pub struct Planner<'c> {
    request: SendRequest,
    provider: &'c ProviderConfig,
    config: &'c Config,
    sender: String,
    source: Source<'c>,
    trace_id: String,
    created_at_ms: i64,
    /// Set for queued requests: generated ids are derived, not fresh.
    identity: Option<RequestIdentity>,
}

impl<'c> Planner<'c> {
    /// Validates the parts of `request` shared by every recipient (its `to` and
    /// `recipients` are ignored: pass them to [`Planner::job`]).
    pub fn new(request: SendRequest, config: &'c Config) -> Result<Planner<'c>, Rejection> {
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
        let source = match (&request.content, &request.template) {
            (Some(content), None) => {
                check_content(content, request.channel)?;
                Source::Literal(content.clone())
            }
            (None, None) => return Err(Rejection::new("missing_content", "a request needs content or template")),
            (Some(_), Some(_)) => {
                return Err(Rejection::new("ambiguous_content", "give content or template, not both"));
            }
            (None, Some(reference)) => {
                let template = config.templates.iter().find(|t| t.id == reference.id).ok_or_else(|| {
                    Rejection::new("unknown_template", format!("no template with id '{}'", reference.id))
                })?;
                let content = template.parsed.as_ref().ok_or_else(|| {
                    Rejection::new("unknown_template", format!("template '{}' has no content", reference.id))
                })?;
                Source::Template { id: &template.id, content, shared: reference.variables.clone() }
            }
        };
        check_options(&request)?;
        if let Some(fallback) = &request.fallback {
            if request.channel != Channel::Rcs {
                return Err(Rejection::new("fallback_not_for_channel", "only RCS requests have an SMS fallback"));
            }
            if fallback.text.trim().is_empty() {
                return Err(Rejection::new("empty_content", "fallback.text is empty"));
            }
            if provider.sms_fallback.as_ref().is_some_and(|f| !f.enabled) {
                return Err(Rejection::new(
                    "fallback_disabled",
                    format!("provider '{}' has its SMS fallback disabled (sms_fallback.enabled)", provider.id),
                ));
            }
        }
        let trace_id = request.trace_id.clone().unwrap_or_else(new_id);
        Ok(Planner { request, provider, config, sender, source, trace_id, created_at_ms: now_ms(), identity: None })
    }

    /// The provider the jobs go to.
    pub fn provider(&self) -> &ProviderConfig {
        self.provider
    }

    /// One recipient's job: destination checked, template rendered with the
    /// recipient's variables, regional defaults and fallback settings applied. Without a
    /// `message_id` it gets a fresh one.
    pub fn job(&self, recipient: Recipient) -> Result<SendJob, Rejection> {
        self.job_at(usize::MAX, recipient)
    }

    /// [`Planner::job`] for the recipient at `index` of the request, whose id (when it
    /// has none) is derived from the request's identity, if it has one.
    fn job_at(&self, index: usize, recipient: Recipient) -> Result<SendJob, Rejection> {
        let Recipient { to, message_id, variables, metadata: extra_metadata } = recipient;
        check_destination(&to, NumberingPlan::of(&self.config.dispatcher))?;
        let mut fallback = self.request.fallback.clone();
        let content = match &self.source {
            Source::Literal(content) => content.clone(),
            Source::Template { id, content, shared } => {
                let vars = Variables { own: &variables, shared };
                let rendered = render_content(content, &vars).map_err(|e| template_rejection(id, &e))?;
                check_content(&rendered, self.request.channel)?;
                if let Some(fallback) = &mut fallback {
                    fallback.text = render_text(&fallback.text, &vars).map_err(|e| template_rejection(id, &e))?;
                }
                rendered
            }
        };
        let mut options = self.request.options.clone();
        if self.request.channel == Channel::Sms {
            apply_regional_defaults(&to, &mut options.regional, self.provider);
        }
        check_regional(&to, self.request.channel, &options, self.provider)?;
        if let Some(fallback) = &mut fallback {
            self.settle_fallback(&to, fallback)?;
        }
        let message_id = message_id.unwrap_or_else(|| match &self.identity {
            Some(identity) => identity.message_id(index),
            None => new_id(),
        });
        if message_id.is_empty() || message_id.len() > MAX_MESSAGE_ID {
            return Err(Rejection::new(
                "invalid_message_id",
                format!("message_id must be 1-{MAX_MESSAGE_ID} characters"),
            ));
        }
        let mut metadata = self.request.metadata.clone();
        metadata.extend(extra_metadata);
        let job = SendJob {
            priority: self.request.priority,
            schema_version: SCHEMA_VERSION,
            message_id,
            provider: self.provider.id.clone(),
            channel: self.request.channel,
            to,
            sender: self.sender.clone(),
            content,
            options,
            fallback,
            metadata,
            trace_id: self.trace_id.clone(),
            attempts: 0,
            first_attempt_at_ms: None,
            created_at_ms: self.created_at_ms,
            fallback_for: None,
        };
        // What the provider's API cannot carry is refused here, not failed by the worker.
        sendfleet_providers::check_job(self.provider, &job)
            .map_err(|reason| Rejection::new("unsupported_by_provider", reason))?;
        Ok(job)
    }

    /// Fills the fallback from the RCS provider's `sms_fallback` settings and the SMS
    /// provider's regional defaults, then checks India DLT where the SMS provider
    /// requires it: a fallback that would be refused later is refused now.
    fn settle_fallback(&self, to: &str, fallback: &mut SmsFallback) -> Result<(), Rejection> {
        if let Some(settings) = &self.provider.sms_fallback {
            if fallback.sender.is_none() {
                fallback.sender.clone_from(&settings.sender_id);
            }
            if fallback.provider.is_none() {
                fallback.provider.clone_from(&settings.sms_provider);
            }
            if settings.india && to.starts_with(INDIA) {
                let regional = fallback.regional.get_or_insert_with(Default::default);
                if regional.india_dlt.is_none()
                    && let Some(id) = &settings.principal_entity_id
                {
                    regional.india_dlt = Some(IndiaDlt {
                        principal_entity_id: id.clone(),
                        content_template_id: None,
                        telemarketer_id: None,
                    });
                }
            }
        }
        let sms = match &fallback.provider {
            Some(id) => self.config.provider(id).filter(|p| p.channel() == Channel::Sms).ok_or_else(|| {
                Rejection::new("unknown_provider", format!("fallback.provider: no SMS provider with id '{id}'"))
            })?,
            None => self.config.default_provider(Channel::Sms).ok_or_else(|| {
                Rejection::new(
                    "no_default_provider",
                    "the SMS fallback names no provider and there is no default SMS provider",
                )
            })?,
        };
        // The worker sends a fleet-managed fallback through `sms` and would fail the RCS
        // job for a sender that provider does not have; refused now, before any send.
        if let Some(sender) = &fallback.sender
            && self.provider.fallback_mode == FallbackMode::Fleet
            && !sms.sender_ids.iter().any(|s| s == sender)
        {
            return Err(Rejection::new(
                "unknown_sender",
                format!("fallback.sender '{sender}' is not configured for SMS provider '{}'", sms.id),
            ));
        }
        apply_regional_defaults(to, &mut fallback.regional, sms);
        let has_dlt = fallback.regional.as_ref().is_some_and(|r| r.india_dlt.is_some());
        if to.starts_with(INDIA) && sms.require_india_dlt && !has_dlt {
            return Err(Rejection::new(
                "missing_india_dlt",
                format!(
                    "fallback: SMS provider '{}' requires India DLT ids (fallback.regional.india_dlt.principal_entity_id) for +91 destinations",
                    sms.id
                ),
            ));
        }
        Ok(())
    }
}

const INDIA: &str = "+91";
const TURKEY: &str = "+90";

fn template_rejection(id: &str, err: &RenderError) -> Rejection {
    let code = match err {
        RenderError::Missing(_) => "missing_variable",
        _ => "invalid_template",
    };
    Rejection::new(code, format!("template '{id}': {err}"))
}

/// Regional ids from the SMS provider's `regional` settings, where the request gave none.
fn apply_regional_defaults(to: &str, regional: &mut Option<Regional>, provider: &ProviderConfig) {
    let Some(defaults) = &provider.regional else { return };
    if to.starts_with(INDIA)
        && let Some(id) = &defaults.india_principal_entity_id
    {
        let regional = regional.get_or_insert_with(Default::default);
        if regional.india_dlt.is_none() {
            regional.india_dlt =
                Some(IndiaDlt { principal_entity_id: id.clone(), content_template_id: None, telemarketer_id: None });
        }
    }
    if to.starts_with(TURKEY)
        && let Some(kind) = &defaults.turkey_recipient_type
    {
        let regional = regional.get_or_insert_with(Default::default);
        if regional.turkey_iys.is_none() {
            regional.turkey_iys =
                Some(TurkeyIys { recipient_type: kind.clone(), brand_code: defaults.turkey_brand_code });
        }
    }
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

/// The options every recipient shares, checked once: a value the provider would answer
/// with a 400 is refused here instead.
fn check_options(request: &SendRequest) -> Result<(), Rejection> {
    if let Some(send_at) = &request.options.send_at {
        check_send_at(send_at).map_err(|e| Rejection::new("invalid_send_at", format!("options.{e}")))?;
    }
    let fallback = request.fallback.as_ref().and_then(|f| f.regional.as_ref());
    for (field, regional) in [("options.regional", request.options.regional.as_ref()), ("fallback.regional", fallback)]
    {
        if let Some(iys) = regional.and_then(|r| r.turkey_iys.as_ref())
            && !TurkeyIys::is_known_recipient_type(&iys.recipient_type)
        {
            return Err(Rejection::new(
                "invalid_turkey_iys",
                format!(
                    "{field}.turkey_iys.recipient_type '{}' is not one of {}",
                    iys.recipient_type,
                    TurkeyIys::RECIPIENT_TYPES.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn check_regional(
    to: &str,
    channel: Channel,
    options: &SendOptions,
    provider: &ProviderConfig,
) -> Result<(), Rejection> {
    // DLT ids are an SMS obligation; an RCS message carries them in its SMS fallback.
    let india = to.starts_with(INDIA) && channel == Channel::Sms;
    let has_dlt = options.regional.as_ref().is_some_and(|r| r.india_dlt.is_some());
    if india && provider.require_india_dlt && !has_dlt {
        return Err(Rejection::new(
            "missing_india_dlt",
            format!("provider '{}' requires India DLT ids (principal_entity_id) for +91 destinations", provider.id),
        ));
    }
    Ok(())
}

pub(crate) fn check_content(content: &Content, channel: Channel) -> Result<(), Rejection> {
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

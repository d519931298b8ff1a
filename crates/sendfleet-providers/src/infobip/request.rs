//! Building Infobip request bodies from jobs. Pure functions.

use sendfleet_config::{FallbackMode, ProviderConfig};
use sendfleet_protocol::{
    Card, CardAlignment, CardOrientation, CardWidth, Content, MediaHeight, SendJob, SendOptions, Suggestion,
    UrlApplication, WebviewViewMode,
};

use super::{callback::encode_callback_data, wire};
use crate::OutboundEvent;

/// What the body needs besides the job.
pub(crate) struct BodyContext<'a> {
    pub config: &'a ProviderConfig,
    pub callback_url: Option<&'a str>,
}

/// `POST /sms/3/messages` body for a job.
pub(crate) fn build_sms_body(job: &SendJob, ctx: &BodyContext<'_>) -> Result<Vec<u8>, String> {
    let Content::Text { text, .. } = &job.content else {
        return Err(format!("SMS cannot carry {} content", job.content.kind()));
    };
    let message = wire::SmsMessage {
        sender: job.sender.clone(),
        destinations: vec![destination(job)],
        content: wire::SmsContent { text: text.clone() },
        options: message_options(&job.options, true)?,
        webhooks: webhooks(job, ctx, false),
    };
    let request = wire::SendRequest { messages: vec![message], options: request_options(&job.options, ctx.config)? };
    serde_json::to_vec(&request).map_err(|e| e.to_string())
}

/// `POST /rcs/2/messages` body for a job.
pub(crate) fn build_rcs_body(job: &SendJob, ctx: &BodyContext<'_>) -> Result<Vec<u8>, String> {
    let mut options = message_options(&job.options, false)?;
    // Provider-side failover: Infobip sends the SMS itself when RCS fails, and its
    // reports say which channel delivered. In fleet mode the fallback stays with us.
    if ctx.config.fallback_mode == FallbackMode::Provider
        && let Some(fallback) = &job.fallback
    {
        options.sms_failover = Some(wire::SmsFailover {
            sender: fallback.sender.clone(),
            text: fallback.text.clone(),
            validity_period: fallback.validity_period_seconds.map(validity),
            regional: fallback.regional.as_ref().or(job.options.regional.as_ref()).map(regional),
        });
    }
    let message = wire::RcsMessage {
        sender: job.sender.clone(),
        destinations: vec![destination(job)],
        content: rcs_content(&job.content)?,
        options,
        webhooks: webhooks(job, ctx, true),
    };
    let request = wire::SendRequest { messages: vec![message], options: request_options(&job.options, ctx.config)? };
    serde_json::to_vec(&request).map_err(|e| e.to_string())
}

fn destination(job: &SendJob) -> wire::Destination {
    wire::Destination { to: job.to.trim_start_matches('+').to_owned(), message_id: job.message_id.clone() }
}

fn webhooks(job: &SendJob, ctx: &BodyContext<'_>, rcs: bool) -> Option<wire::Webhooks> {
    let delivery = ctx.callback_url.map(|url| wire::DeliveryWebhook {
        url: url.to_owned(),
        intermediate_report: false,
        notify: true,
        receive_triggered_failover_reports: None,
    });
    let seen = ctx.callback_url.filter(|_| rcs).map(|url| wire::SeenWebhook { url: url.to_owned() });
    Some(wire::Webhooks {
        delivery,
        content_type: "application/json",
        callback_data: Some(encode_callback_data(&job.trace_id, job.fallback_for.as_deref(), &job.metadata)),
        seen,
    })
}

fn request_options(options: &SendOptions, config: &ProviderConfig) -> Result<Option<wire::RequestOptions>, String> {
    let schedule = match &options.send_at {
        Some(at) => {
            let at = sendfleet_protocol::check_send_at(at).map_err(|e| e.to_string())?;
            Some(wire::Schedule { send_at: infobip_format(at) })
        }
        None => None,
    };
    let tracking = config.click_tracking.as_ref().filter(|c| c.enabled).map(|c| wire::Tracking {
        shorten_url: true,
        track_clicks: true,
        tracking_url: c.tracking_url.clone(),
        custom_domain: c.custom_domain.clone(),
    });
    Ok((schedule.is_some() || tracking.is_some()).then_some(wire::RequestOptions { schedule, tracking }))
}

fn message_options(options: &SendOptions, sms: bool) -> Result<wire::MessageOptions, String> {
    Ok(wire::MessageOptions {
        validity_period: options.validity_period_seconds.map(validity),
        delivery_time_window: options.delivery_time_window.as_ref().map(|w| wire::DeliveryTimeWindow {
            days: w.days.clone(),
            from: w.from.map(|t| wire::TimeOfDay { hour: t.hour, minute: t.minute }),
            to: w.to.map(|t| wire::TimeOfDay { hour: t.hour, minute: t.minute }),
        }),
        campaign_reference_id: options.campaign_reference_id.clone(),
        // Regional ids belong to SMS; an RCS message carries them in its SMS failover.
        regional: if sms { options.regional.as_ref().map(regional) } else { None },
        sms_failover: None,
    })
}

/// Seconds as Infobip's `{amount, timeUnit}`, in the largest exact unit.
pub(crate) fn validity(seconds: u32) -> wire::ValidityPeriod {
    if seconds.is_multiple_of(3_600) {
        wire::ValidityPeriod { amount: seconds / 3_600, time_unit: "HOURS" }
    } else if seconds.is_multiple_of(60) {
        wire::ValidityPeriod { amount: seconds / 60, time_unit: "MINUTES" }
    } else {
        wire::ValidityPeriod { amount: seconds, time_unit: "SECONDS" }
    }
}

pub(crate) fn regional(regional: &sendfleet_protocol::Regional) -> wire::Regional {
    wire::Regional {
        india_dlt: regional.india_dlt.as_ref().map(|d| wire::IndiaDlt {
            principal_entity_id: d.principal_entity_id.clone(),
            content_template_id: d.content_template_id.clone(),
            telemarketer_id: d.telemarketer_id.clone(),
        }),
        turkey_iys: regional
            .turkey_iys
            .as_ref()
            .map(|t| wire::TurkeyIys { recipient_type: t.recipient_type.clone(), brand_code: t.brand_code }),
    }
}

/// RFC 3339 → Infobip's `yyyy-MM-dd'T'HH:mm:ss.SSSZ` (`+0000` offset).
pub fn infobip_time(rfc3339: &str) -> Result<String, String> {
    let parsed = chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map_err(|e| format!("'{rfc3339}' is not an RFC 3339 time: {e}"))?;
    Ok(infobip_format(parsed))
}

/// Infobip's time format, `2026-01-15T10:40:01.207+0000`.
fn infobip_format(at: chrono::DateTime<chrono::FixedOffset>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string()
}

fn rcs_content(content: &Content) -> Result<wire::RcsContent, String> {
    Ok(match content {
        Content::Text { text, suggestions } => {
            wire::RcsContent::Text { text: text.clone(), suggestions: rcs_suggestions(suggestions)? }
        }
        Content::File { url, thumbnail_url, suggestions } => wire::RcsContent::File {
            file: wire::FileRef { url: url.clone() },
            thumbnail: thumbnail_url.as_ref().map(|url| wire::FileRef { url: url.clone() }),
            suggestions: rcs_suggestions(suggestions)?,
        },
        Content::Card { orientation, alignment, card, suggestions } => wire::RcsContent::Card {
            orientation: match orientation {
                CardOrientation::Horizontal => "HORIZONTAL",
                CardOrientation::Vertical => "VERTICAL",
            },
            alignment: match alignment {
                CardAlignment::Left => "LEFT",
                CardAlignment::Right => "RIGHT",
            },
            content: rcs_card(card)?,
            suggestions: rcs_suggestions(suggestions)?,
        },
        Content::Carousel { card_width, cards, suggestions } => wire::RcsContent::Carousel {
            card_width: match card_width {
                CardWidth::Small => "SMALL",
                CardWidth::Medium => "MEDIUM",
            },
            contents: cards.iter().map(rcs_card).collect::<Result<_, _>>()?,
            suggestions: rcs_suggestions(suggestions)?,
        },
        Content::Template { template_id, parameters } => wire::RcsContent::ProviderTemplate {
            template_id: template_id.clone(),
            parameters: parameters
                .iter()
                .map(|(name, value)| wire::TemplateParameter { name: name.clone(), value: value.clone() })
                .collect(),
        },
    })
}

fn rcs_card(card: &Card) -> Result<wire::CardContent, String> {
    Ok(wire::CardContent {
        title: card.title.clone(),
        description: card.description.clone(),
        media: card.media.as_ref().map(|m| wire::CardMedia {
            file: wire::FileRef { url: m.url.clone() },
            thumbnail: m.thumbnail_url.as_ref().map(|url| wire::FileRef { url: url.clone() }),
            height: match m.height {
                MediaHeight::Short => "SHORT",
                MediaHeight::Medium => "MEDIUM",
                MediaHeight::Tall => "TALL",
            },
        }),
        suggestions: rcs_suggestions(&card.suggestions)?,
    })
}

fn rcs_suggestions(suggestions: &[Suggestion]) -> Result<Vec<wire::Suggestion>, String> {
    suggestions.iter().map(rcs_suggestion).collect()
}

fn rcs_suggestion(suggestion: &Suggestion) -> Result<wire::Suggestion, String> {
    Ok(match suggestion.clone() {
        Suggestion::Reply { text, postback_data } => wire::Suggestion::Reply { text, postback_data },
        Suggestion::OpenUrl { text, postback_data, url, application, webview_view_mode } => wire::Suggestion::OpenUrl {
            text,
            postback_data,
            url,
            application: application.map(|a| match a {
                UrlApplication::Browser => "BROWSER",
                UrlApplication::Webview => "WEBVIEW",
            }),
            webview_view_mode: webview_view_mode.map(|m| match m {
                WebviewViewMode::Full => "FULL",
                WebviewViewMode::Half => "HALF",
                WebviewViewMode::Tall => "TALL",
            }),
        },
        Suggestion::DialPhone { text, postback_data, phone_number } => {
            wire::Suggestion::DialPhone { text, postback_data, phone_number }
        }
        Suggestion::ShowLocation { text, postback_data, latitude, longitude, label } => {
            wire::Suggestion::ShowLocation { text, postback_data, latitude, longitude, label }
        }
        Suggestion::RequestLocation { text, postback_data } => {
            wire::Suggestion::RequestLocation { text, postback_data }
        }
        Suggestion::CreateCalendarEvent { text, postback_data, start_time, end_time, title, description } => {
            wire::Suggestion::CreateCalendarEvent {
                text,
                postback_data,
                start_time: infobip_time(&start_time)?,
                end_time: infobip_time(&end_time)?,
                title,
                description,
            }
        }
    })
}

/// `POST /rcs/1/events` body for one event.
pub(crate) fn build_event_body(event: &OutboundEvent, default_sender: &str) -> Vec<u8> {
    let pick = |sender: &str| if sender.is_empty() { default_sender.to_owned() } else { sender.to_owned() };
    let (to, sender, content) = match event {
        OutboundEvent::TypingIndicator { to, sender } => {
            (to, pick(sender), serde_json::json!({ "type": "TYPING_INDICATOR" }))
        }
        OutboundEvent::ReadReceipt { to, sender, message_id } => {
            (to, pick(sender), serde_json::json!({ "type": "SEEN", "messageId": message_id }))
        }
    };
    let body = serde_json::json!({
        "events": [{
            "sender": sender,
            "destinations": [{ "to": to.trim_start_matches('+') }],
            "content": content,
        }]
    });
    body.to_string().into_bytes()
}

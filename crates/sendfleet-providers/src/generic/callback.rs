//! Parsing Generic delivery reports into events.
//!
//! The body is `{"results": [report, …]}`; a bare array or a single report object is
//! accepted too, so simple middleware can post one report per call. Unknown fields are
//! ignored; a report without `message_id` or `status`, or with an unknown status, is
//! rejected with its index so the vendor can see what to fix (the other reports of the
//! body are still accepted).

use sendfleet_config::ProviderConfig;
use sendfleet_protocol::{Channel, DeliveryOutcome, Event, EventKind, ProviderErrorInfo, ProviderStatus};

use super::wire::DeliveryReport;
use crate::{CallbackError, ParsedCallback, infobip::callback::decode_callback_data};

/// Status groups, numbered as Infobip's so consumers read one scheme for every provider.
const UNDELIVERABLE: (i32, &str) = (2, "UNDELIVERABLE");
const DELIVERED: (i32, &str) = (3, "DELIVERED");
const EXPIRED: (i32, &str) = (4, "EXPIRED");
const REJECTED: (i32, &str) = (5, "REJECTED");

/// The error code that says the handset cannot receive RCS (`docs/generic-api.md`).
const NOT_RCS_CAPABLE: &str = "NOT_RCS_CAPABLE";

/// Parses a delivery-report body report by report: one event per good report
/// (intermediate statuses produce none), and the index and reason of each bad one.
/// `Err` only for a body that is not JSON or not one of the accepted shapes.
pub fn parse_callback(config: &ProviderConfig, body: &[u8]) -> Result<ParsedCallback, CallbackError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| CallbackError::Malformed(format!("not JSON: {e}")))?;
    let reports: Vec<serde_json::Value> = match value {
        serde_json::Value::Object(mut object) if object.contains_key("results") => match object.remove("results") {
            Some(serde_json::Value::Array(items)) => items,
            _ => return Err(CallbackError::Malformed("\"results\" must be an array of reports".into())),
        },
        serde_json::Value::Object(object) => vec![serde_json::Value::Object(object)],
        serde_json::Value::Array(items) => items,
        _ => {
            return Err(CallbackError::Malformed(
                "expected {\"results\": [...]}, an array of reports or one report object".into(),
            ));
        }
    };
    Ok(ParsedCallback::collect(reports.into_iter().map(|report| {
        let report: DeliveryReport =
            serde_json::from_value(report).map_err(|e| CallbackError::Malformed(e.to_string()))?;
        report_event(config, report)
    })))
}

fn report_event(config: &ProviderConfig, report: DeliveryReport) -> Result<Option<Event>, CallbackError> {
    if report.message_id.trim().is_empty() {
        return Err(CallbackError::Malformed("message_id is empty".into()));
    }
    let status = report.status.trim().to_ascii_uppercase();
    let (kind, group, outcome) = match status.as_str() {
        "DELIVERED" => (EventKind::Delivered, DELIVERED, DeliveryOutcome::Delivered),
        "UNDELIVERED" | "UNDELIVERABLE" | "FAILED" => {
            (EventKind::Undelivered, UNDELIVERABLE, DeliveryOutcome::UndeliverableOther)
        }
        "EXPIRED" => (EventKind::Undelivered, EXPIRED, DeliveryOutcome::Expired),
        "REJECTED" => (EventKind::Undelivered, REJECTED, DeliveryOutcome::Rejected),
        "SEEN" | "READ" => (EventKind::Seen, DELIVERED, DeliveryOutcome::Seen),
        // Intermediate states say nothing final; the final report follows.
        "ACCEPTED" | "PENDING" | "SENT" | "ENROUTE" => return Ok(None),
        other => {
            return Err(CallbackError::Unrecognised(format!(
                "status {other:?} (expected DELIVERED, UNDELIVERED, EXPIRED, REJECTED, SEEN, or ACCEPTED/PENDING/SENT)"
            )));
        }
    };
    let channel = match report.channel.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("sms") => Channel::Sms,
        Some("rcs") => Channel::Rcs,
        None => config.channel(),
        Some(other) => return Err(CallbackError::Malformed(format!("channel {other:?} (expected rcs or sms)"))),
    };
    let mut event = Event::new(kind, &config.id, channel);
    event.outcome = Some(outcome);
    event.message_id = Some(report.message_id);
    event.to = report.to;
    event.sender = report.sender;
    if let Some(at) = report.timestamp.as_deref() {
        let parsed = chrono::DateTime::parse_from_rfc3339(at)
            .map_err(|e| CallbackError::Malformed(format!("timestamp {at:?} is not RFC 3339: {e}")))?;
        event.at_ms = parsed.timestamp_millis();
    }
    if kind != EventKind::Seen {
        event.status = Some(ProviderStatus {
            group_id: group.0,
            group_name: Some(group.1.to_owned()),
            id: 0,
            name: Some(status),
            description: None,
        });
    }
    if let Some(error) = report.error {
        let code = match error.code {
            Some(serde_json::Value::String(code)) => Some(code),
            Some(serde_json::Value::Number(code)) => Some(code.to_string()),
            Some(serde_json::Value::Null) | None => None,
            Some(other) => {
                return Err(CallbackError::Malformed(format!("error.code {other} is not a string or number")));
            }
        };
        if outcome == DeliveryOutcome::UndeliverableOther && code.as_deref() == Some(NOT_RCS_CAPABLE) {
            event.outcome = Some(DeliveryOutcome::UndeliverableNotCapable);
        }
        event.error = Some(ProviderErrorInfo {
            group_id: 0,
            id: code.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0),
            name: code,
            description: error.message,
            permanent: error.permanent,
        });
    }
    for (key, value) in report.details {
        let text = match value {
            serde_json::Value::String(text) => text,
            serde_json::Value::Null => continue,
            other => other.to_string(),
        };
        event.details.insert(key, text);
    }
    if let Some(id) = report.vendor_message_id.filter(|v| !v.is_empty()) {
        event.details.insert("vendor_message_id".into(), id);
    }
    decode_callback_data(report.callback_data, &mut event);
    Ok(Some(event))
}

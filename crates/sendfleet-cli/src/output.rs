//! What the commands print: plain text for a terminal, JSON with `--json`.

use sendfleet_status::MessageStatus;
use serde::Serialize;

use crate::{Entry, ReplaySummary, Source, queues::QueueDepth};

/// Pretty JSON on standard output.
pub(crate) fn json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(err) => eprintln!("cannot print as JSON: {err}"),
    }
}

fn time(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| at_ms.to_string())
}

fn age(seconds: Option<u64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7_200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3_600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

/// `list`: one line per message.
pub(crate) fn entries(source: Source, entries: &[Entry]) {
    if entries.is_empty() {
        println!("no {} match", source.noun());
        return;
    }
    println!("{:<38} {:<16} {:<22} {:>6} {:>8}  reason", "id", "provider", "reason code", "age", "attempts");
    for entry in entries {
        println!(
            "{:<38} {:<16} {:<22} {:>6} {:>8}  {}{}",
            entry.id,
            entry.provider.as_deref().unwrap_or("-"),
            entry.reason_code,
            age(entry.age_seconds),
            entry.attempts.map_or("-".into(), |a| a.to_string()),
            entry.reason.as_deref().unwrap_or(""),
            if entry.replayable { "" } else { " [not replayable]" }
        );
    }
}

/// `show`: the message in full (always JSON: it is a document).
pub(crate) fn show(entry: &Entry) {
    let mut value = serde_json::to_value(entry).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("headers".into(), serde_json::to_value(&entry.headers).unwrap_or_default());
        map.insert("body".into(), entry.body.clone());
    }
    json(&value);
}

/// `replay`: what happened.
pub(crate) fn replay(source: Source, summary: &ReplaySummary, as_json: bool) {
    if as_json {
        json(summary);
        return;
    }
    if summary.dry_run {
        println!(
            "dry run: {} of {} {} scanned would be replayed to {} ({} not replayable); nothing was published or removed",
            summary.would_replay.len(),
            summary.scanned,
            source.noun(),
            summary.published_to,
            summary.skipped
        );
        for id in &summary.would_replay {
            println!("  {id}");
        }
        return;
    }
    println!("replayed {} {} from {} to {}", summary.replayed, source.noun(), summary.queue, summary.published_to);
    match source {
        Source::DeadLetters => println!(
            "  each keeps its message id (the sent record still stops a second send of what the provider accepted); \
             attempts and age are reset: each gets retry.max_attempts and retry.max_age_seconds again"
        ),
        Source::Rejected => println!("  each goes through the dispatcher's checks again, as received"),
    }
    if summary.status_reset > 0 {
        println!("  {} status record(s) set to replayed", summary.status_reset);
    }
    if summary.skipped > 0 {
        println!("  {} left in the queue: not replayable (undecodable jobs)", summary.skipped);
    }
    if summary.failed > 0 {
        println!(
            "  {} left in the queue: the copy was not confirmed (first: {})",
            summary.failed,
            summary.first_error.as_deref().unwrap_or("-")
        );
    }
}

/// `queues`: a table.
pub(crate) fn depths(depths: &[QueueDepth]) {
    let number = |n: Option<u64>| n.map_or("-".into(), |n| n.to_string());
    println!("{:<44} {:<13} {:>9} {:>9} {:>9}", "queue", "kind", "ready", "unacked", "consumers");
    for depth in depths {
        let missing = depth.ready.is_none();
        println!(
            "{:<44} {:<13} {:>9} {:>9} {:>9}{}",
            depth.queue,
            depth.kind,
            number(depth.ready.map(u64::from)),
            number(depth.unacked),
            number(depth.consumers.map(u64::from)),
            if missing { "  (not declared)" } else { "" }
        );
    }
}

/// `status`: the record, readable.
pub(crate) fn status(status: &MessageStatus) {
    print_record(status, "");
    if let Some(leg) = &status.sms_leg {
        println!("SMS fallback leg:");
        print_record(leg, "  ");
    }
}

fn print_record(status: &MessageStatus, indent: &str) {
    let channel = status.channel.map_or("-".into(), |c| c.to_string());
    println!("{indent}message {}  ({channel} via {})", status.message_id, status.provider.as_deref().unwrap_or("-"));
    println!(
        "{indent}state   {}{}  attempts {}",
        status.state,
        if status.is_final { " (final)" } else { "" },
        status.attempts
    );
    if let Some(code) = &status.reason_code {
        println!("{indent}reason  {code}: {}", status.reason.as_deref().unwrap_or(""));
    }
    if let Some(provider_status) = &status.provider_status {
        println!(
            "{indent}provider status {} / {} ({}.{})",
            provider_status.group_name.as_deref().unwrap_or("-"),
            provider_status.name.as_deref().unwrap_or("-"),
            provider_status.group_id,
            provider_status.id
        );
    }
    if let Some(error) = &status.provider_error {
        println!("{indent}provider error {} ({})", error.name.as_deref().unwrap_or("-"), error.id);
    }
    for transition in &status.transitions {
        println!("{indent}  {:<20} {}", transition.state.as_str(), time(transition.at_ms));
    }
    if status.stale_updates > 0 {
        println!("{indent}{} late or repeated update(s) ignored", status.stale_updates);
    }
    if status.replays > 0 {
        println!(
            "{indent}replayed {} time(s), last from {}",
            status.replays,
            status.replayed_from.map_or("-", |s| s.as_str())
        );
    }
    if let Some(rcs) = &status.fallback_for {
        println!("{indent}SMS fallback of {rcs}");
    }
}

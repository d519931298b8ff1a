//! What a report about an RCS message means for its fallback: one table, keyed on
//! Infobip's status group and error *ids* (names change over time; ids do not).

use std::ops::RangeInclusive;

use sendfleet_protocol::{Channel, Event, EventKind};

/// Why a fallback was sent: the `reason` label of `sendfleet_fallbacks_total` and the
/// `reason_code` of the `fallback_triggered` event. A bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// The capability check, or error 7002/7005/7201, says the device cannot get RCS.
    NotCapable,
    /// Error 7006: content or feature the device does not support.
    UnsupportedContent,
    /// Error 7017: the agent's tester quota is used up.
    RcsThrottled,
    /// Errors 7050/7051: the RCS provider failed or timed out.
    ProviderError,
    /// Errors 7080–7084: platform or sender configuration problem.
    PlatformError,
    /// Final report in group UNDELIVERABLE (2) with no more specific error.
    Undeliverable,
    /// Final report in group EXPIRED (4): the user stayed offline past the validity.
    Expired,
    /// Final report in group REJECTED (5).
    Rejected,
    /// The RCS send was refused for good (400, rejected status, content the adapter cannot build).
    SendRejected,
    /// Retries ran out (attempts or age) without an accepted RCS send.
    RetriesExhausted,
}

impl FallbackReason {
    /// Every reason (metric series are registered at zero for each).
    pub const ALL: [FallbackReason; 10] = [
        FallbackReason::NotCapable,
        FallbackReason::UnsupportedContent,
        FallbackReason::RcsThrottled,
        FallbackReason::ProviderError,
        FallbackReason::PlatformError,
        FallbackReason::Undeliverable,
        FallbackReason::Expired,
        FallbackReason::Rejected,
        FallbackReason::SendRejected,
        FallbackReason::RetriesExhausted,
    ];

    /// The snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::NotCapable => "not_capable",
            FallbackReason::UnsupportedContent => "unsupported_content",
            FallbackReason::RcsThrottled => "rcs_throttled",
            FallbackReason::ProviderError => "provider_error",
            FallbackReason::PlatformError => "platform_error",
            FallbackReason::Undeliverable => "undeliverable",
            FallbackReason::Expired => "expired",
            FallbackReason::Rejected => "rejected",
            FallbackReason::SendRejected => "send_rejected",
            FallbackReason::RetriesExhausted => "retries_exhausted",
        }
    }
}

/// What to do with an RCS message's fallback after a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportAction {
    /// Send the SMS.
    Fire(FallbackReason),
    /// The RCS message got through, or policy says no SMS for this failure: the
    /// fallback is never to be sent. The text says why (logs).
    Disarm(&'static str),
    /// Not a final word on an RCS message (SMS report, pending, inbound, …).
    Ignore,
}

use FallbackReason as R;
use ReportAction::{Disarm, Fire};

/// Error ids that decide by themselves, checked before the status group.
/// Infobip "Chat error codes"; see `shared/reference/infobip-wire.md` §4.2.
const ERROR_RULES: &[(RangeInclusive<i32>, ReportAction)] = &[
    (7002..=7002, Fire(R::NotCapable)), // EC_UNKNOWN_USER: no RCS on the device / network
    (7005..=7005, Fire(R::NotCapable)), // EC_FORBIDDEN_ACCESS: carrier without RCS, unlaunched agent
    (7201..=7201, Fire(R::NotCapable)), // EC_UNSUPPORTED_DEVICE
    (7006..=7006, Fire(R::UnsupportedContent)), // EC_BAD_REQUEST: feature not supported by the device
    (7003..=7003, Disarm("the user blocked the agent (consent): no SMS")), // EC_BLOCKED_USER
    (7008..=7009, Disarm("template error: fix the request, no SMS")), // EC_INVALID_TEMPLATE(_ARGS)
    (7018..=7018, Disarm("template mapping error: fix the request, no SMS")), // EC_INTERNAL_BAD_MAPPING
    (7017..=7017, Fire(R::RcsThrottled)), // EC_TOO_MANY_REQUESTS (tester quota)
    (7050..=7051, Fire(R::ProviderError)), // EC_PROVIDER_INTERNAL_ERROR / _TIMEOUT
    (7080..=7084, Fire(R::PlatformError)), // internal, configuration, gateway, activation, sender metadata
];

/// Infobip status groups.
const GROUP_RULES: &[(i32, ReportAction)] = &[
    (1, ReportAction::Ignore),   // PENDING: not final (a provider-side failover step, say)
    (2, Fire(R::Undeliverable)), // UNDELIVERABLE
    (3, Disarm("delivered")),    // DELIVERED
    (4, Fire(R::Expired)),       // EXPIRED: what Infobip's own smsFailover falls back on
    (5, Fire(R::Rejected)),      // REJECTED
];

/// Classifies an event about a message. Only RCS reports count: reports about the SMS
/// (our fallback, or the provider's own failover, `channel: SMS`) never touch it.
pub fn classify_report(event: &Event) -> ReportAction {
    if event.channel != Channel::Rcs || event.message_id.is_none() {
        return ReportAction::Ignore;
    }
    match event.kind {
        EventKind::Seen => return Disarm("seen"),
        EventKind::Delivered => return Disarm("delivered"),
        EventKind::Undelivered => {}
        _ => return ReportAction::Ignore,
    }
    if let Some(error) = &event.error
        && let Some((_, action)) = ERROR_RULES.iter().find(|(ids, _)| ids.contains(&error.id))
    {
        return *action;
    }
    let group = event.status.as_ref().map(|s| s.group_id);
    match group.and_then(|g| GROUP_RULES.iter().find(|(id, _)| *id == g)) {
        // A delivered group on an "undelivered" event cannot happen with our parser;
        // trust the status over the kind.
        Some((_, action)) => *action,
        // A final "undelivered" with a group we do not know (or no status, from a
        // vendor without one): the user has not got the message, so send the SMS.
        None => Fire(R::Undeliverable),
    }
}

#[cfg(test)]
mod tests {
    use sendfleet_protocol::{ProviderErrorInfo, ProviderStatus};

    use super::*;

    fn report(kind: EventKind, channel: Channel, group: Option<i32>, error: Option<i32>) -> Event {
        let mut event = Event::new(kind, "ib-rcs", channel);
        event.message_id = Some("m-1".into());
        event.status = group.map(|group_id| ProviderStatus {
            group_id,
            group_name: None,
            id: 0,
            name: Some("NAMES_ARE_NOT_READ".into()),
            description: None,
        });
        event.error = error.map(|id| ProviderErrorInfo {
            group_id: 1,
            id,
            name: Some("EC_NAMES_ARE_NOT_READ".into()),
            description: None,
            permanent: true,
        });
        event
    }

    #[test]
    fn every_row_of_the_table() {
        use EventKind::{Accepted, Delivered, Inbound, Seen, Undelivered};
        let rcs = Channel::Rcs;
        // (kind, channel, status group, error id, expected action)
        type Case = (EventKind, Channel, Option<i32>, Option<i32>, ReportAction);
        let cases: &[Case] = &[
            // The reference fixture: 2/4 UNDELIVERABLE_REJECTED_OPERATOR + 7002.
            (Undelivered, rcs, Some(2), Some(7002), Fire(R::NotCapable)),
            (Undelivered, rcs, Some(5), Some(7005), Fire(R::NotCapable)),
            (Undelivered, rcs, Some(2), Some(7201), Fire(R::NotCapable)),
            (Undelivered, rcs, Some(2), Some(7006), Fire(R::UnsupportedContent)),
            (Undelivered, rcs, Some(2), Some(7017), Fire(R::RcsThrottled)),
            (Undelivered, rcs, Some(2), Some(7050), Fire(R::ProviderError)),
            (Undelivered, rcs, Some(2), Some(7051), Fire(R::ProviderError)),
            (Undelivered, rcs, Some(5), Some(7080), Fire(R::PlatformError)),
            (Undelivered, rcs, Some(5), Some(7084), Fire(R::PlatformError)),
            (Undelivered, rcs, Some(2), Some(7003), Disarm("the user blocked the agent (consent): no SMS")),
            (Undelivered, rcs, Some(2), Some(7008), Disarm("template error: fix the request, no SMS")),
            (Undelivered, rcs, Some(2), Some(7009), Disarm("template error: fix the request, no SMS")),
            (Undelivered, rcs, Some(2), Some(7018), Disarm("template mapping error: fix the request, no SMS")),
            // No specific error: the status group decides.
            (Undelivered, rcs, Some(2), Some(1), Fire(R::Undeliverable)),
            (Undelivered, rcs, Some(2), None, Fire(R::Undeliverable)),
            (Undelivered, rcs, Some(4), None, Fire(R::Expired)),
            (Undelivered, rcs, Some(4), Some(27), Fire(R::Expired)),
            (Undelivered, rcs, Some(5), None, Fire(R::Rejected)),
            (Undelivered, rcs, Some(1), None, ReportAction::Ignore),
            (Undelivered, rcs, Some(99), None, Fire(R::Undeliverable)),
            (Undelivered, rcs, None, None, Fire(R::Undeliverable)),
            // Success disarms.
            (Delivered, rcs, Some(3), None, Disarm("delivered")),
            (Seen, rcs, None, None, Disarm("seen")),
            // Not about the RCS message's fate.
            (Undelivered, Channel::Sms, Some(2), Some(7002), ReportAction::Ignore),
            (Delivered, Channel::Sms, Some(3), None, ReportAction::Ignore),
            (Accepted, rcs, Some(1), None, ReportAction::Ignore),
            (Inbound, rcs, None, None, ReportAction::Ignore),
        ];
        for (kind, channel, group, error, expected) in cases {
            let event = report(*kind, *channel, *group, *error);
            assert_eq!(classify_report(&event), *expected, "{kind:?} {channel:?} group {group:?} error {error:?}");
        }
    }

    #[test]
    fn a_report_without_our_message_id_is_ignored() {
        let mut event = report(EventKind::Undelivered, Channel::Rcs, Some(2), Some(7002));
        event.message_id = None;
        assert_eq!(classify_report(&event), ReportAction::Ignore);
    }

    #[test]
    fn error_rules_do_not_overlap() {
        for (i, (a, _)) in ERROR_RULES.iter().enumerate() {
            for (b, _) in &ERROR_RULES[i + 1..] {
                assert!(a.end() < b.start() || b.end() < a.start(), "{a:?} overlaps {b:?}");
            }
        }
    }

    #[test]
    fn labels_are_snake_case_and_distinct() {
        let all = [
            R::NotCapable,
            R::UnsupportedContent,
            R::RcsThrottled,
            R::ProviderError,
            R::PlatformError,
            R::Undeliverable,
            R::Expired,
            R::Rejected,
            R::SendRejected,
            R::RetriesExhausted,
        ];
        let labels: std::collections::HashSet<&str> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), all.len());
        assert!(labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }
}

//! What a report about an RCS message means for its fallback: one table, keyed on the
//! report's vendor-neutral [`DeliveryOutcome`].

use sendfleet_protocol::{Channel, DeliveryOutcome, Event, EventKind};

/// Why a fallback was sent: the `reason` label of `sendfleet_fallbacks_total` and the
/// `reason_code` of the `fallback_triggered` event. A bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// The capability check, or a report (`undeliverable_not_capable`), says the device cannot get RCS.
    NotCapable,
    /// `undeliverable_unsupported_content`: content or feature the device does not support.
    UnsupportedContent,
    /// `undeliverable_throttled`: the RCS channel was throttled (an agent's tester quota).
    RcsThrottled,
    /// `undeliverable_provider_error`: the RCS provider failed or timed out.
    ProviderError,
    /// `undeliverable_platform_error`: platform or sender configuration problem.
    PlatformError,
    /// `undeliverable_other`: not delivered, with no more specific reason.
    Undeliverable,
    /// `expired`: the user stayed offline past the validity.
    Expired,
    /// `rejected`: refused by the provider or operator.
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

/// What each neutral delivery outcome does to an RCS message's fallback. The adapters
/// map their vendors' statuses and error codes onto the outcomes (Infobip's error ids in
/// `sendfleet-providers`' Infobip module, Twilio's codes in its Twilio module).
fn action_for(outcome: DeliveryOutcome) -> ReportAction {
    match outcome {
        // Not final (a provider-side failover step, say).
        DeliveryOutcome::Pending => ReportAction::Ignore,
        DeliveryOutcome::Delivered => Disarm("delivered"),
        DeliveryOutcome::Seen => Disarm("seen"),
        DeliveryOutcome::UndeliverableNotCapable => Fire(R::NotCapable),
        DeliveryOutcome::UndeliverableUnsupportedContent => Fire(R::UnsupportedContent),
        DeliveryOutcome::UndeliverableBlocked => Disarm("the user blocked the agent (consent): no SMS"),
        DeliveryOutcome::UndeliverableBadTemplate => Disarm("template error: fix the request, no SMS"),
        DeliveryOutcome::UndeliverableThrottled => Fire(R::RcsThrottled),
        DeliveryOutcome::UndeliverableProviderError => Fire(R::ProviderError),
        DeliveryOutcome::UndeliverablePlatformError => Fire(R::PlatformError),
        DeliveryOutcome::UndeliverableOther => Fire(R::Undeliverable),
        // What Infobip's own smsFailover falls back on.
        DeliveryOutcome::Expired => Fire(R::Expired),
        DeliveryOutcome::Rejected => Fire(R::Rejected),
    }
}

/// Classifies an event about a message. Only RCS reports count: reports about the SMS
/// (our fallback, or the provider's own failover, `channel: SMS`) never touch it.
pub fn classify_report(event: &Event) -> ReportAction {
    if event.channel != Channel::Rcs || event.message_id.is_none() {
        return ReportAction::Ignore;
    }
    match (event.kind, event.outcome) {
        (EventKind::Seen | EventKind::Delivered | EventKind::Undelivered, Some(outcome)) => action_for(outcome),
        // A report from a build before outcomes: its kind decides.
        (EventKind::Seen, None) => Disarm("seen"),
        (EventKind::Delivered, None) => Disarm("delivered"),
        (EventKind::Undelivered, None) => Fire(R::Undeliverable),
        _ => ReportAction::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(kind: EventKind, channel: Channel, outcome: Option<DeliveryOutcome>) -> Event {
        let mut event = Event::new(kind, "rcs-provider", channel);
        event.message_id = Some("m-1".into());
        event.outcome = outcome;
        event
    }

    #[test]
    fn every_row_of_the_table() {
        use DeliveryOutcome as O;
        use EventKind::{Accepted, Delivered, Inbound, Seen, Undelivered};
        let rcs = Channel::Rcs;
        let cases: &[(EventKind, Channel, Option<O>, ReportAction)] = &[
            (Undelivered, rcs, Some(O::UndeliverableNotCapable), Fire(R::NotCapable)),
            (Undelivered, rcs, Some(O::UndeliverableUnsupportedContent), Fire(R::UnsupportedContent)),
            (Undelivered, rcs, Some(O::UndeliverableThrottled), Fire(R::RcsThrottled)),
            (Undelivered, rcs, Some(O::UndeliverableProviderError), Fire(R::ProviderError)),
            (Undelivered, rcs, Some(O::UndeliverablePlatformError), Fire(R::PlatformError)),
            (Undelivered, rcs, Some(O::UndeliverableBlocked), Disarm("the user blocked the agent (consent): no SMS")),
            (Undelivered, rcs, Some(O::UndeliverableBadTemplate), Disarm("template error: fix the request, no SMS")),
            (Undelivered, rcs, Some(O::UndeliverableOther), Fire(R::Undeliverable)),
            (Undelivered, rcs, Some(O::Expired), Fire(R::Expired)),
            (Undelivered, rcs, Some(O::Rejected), Fire(R::Rejected)),
            (Undelivered, rcs, Some(O::Pending), ReportAction::Ignore),
            // A delivered outcome on an "undelivered" event: the outcome wins.
            (Undelivered, rcs, Some(O::Delivered), Disarm("delivered")),
            // Reports without an outcome (an older build): the kind decides.
            (Undelivered, rcs, None, Fire(R::Undeliverable)),
            (Delivered, rcs, None, Disarm("delivered")),
            (Seen, rcs, None, Disarm("seen")),
            (Delivered, rcs, Some(O::Delivered), Disarm("delivered")),
            (Seen, rcs, Some(O::Seen), Disarm("seen")),
            // Not about the RCS message's fate.
            (Undelivered, Channel::Sms, Some(O::UndeliverableNotCapable), ReportAction::Ignore),
            (Delivered, Channel::Sms, Some(O::Delivered), ReportAction::Ignore),
            (Accepted, rcs, None, ReportAction::Ignore),
            (Inbound, rcs, None, ReportAction::Ignore),
        ];
        for (kind, channel, outcome, expected) in cases {
            let event = report(*kind, *channel, *outcome);
            assert_eq!(classify_report(&event), *expected, "{kind:?} {channel:?} {outcome:?}");
        }
    }

    #[test]
    fn a_report_without_our_message_id_is_ignored() {
        let mut event = report(EventKind::Undelivered, Channel::Rcs, Some(DeliveryOutcome::UndeliverableNotCapable));
        event.message_id = None;
        assert_eq!(classify_report(&event), ReportAction::Ignore);
    }

    #[test]
    fn labels_are_snake_case_and_distinct() {
        let labels: std::collections::HashSet<&str> = FallbackReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), FallbackReason::ALL.len());
        assert!(labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }
}

//! What an Infobip/JioCX report means, in vendor-neutral words: one table, keyed on
//! Infobip's status group and error *ids* (names change over time; ids do not).
//! Infobip "Chat error codes"; the ids are listed in `docs/providers.md`.

use std::ops::RangeInclusive;

use sendfleet_protocol::{DeliveryOutcome as O, EventKind};

/// Error ids that decide by themselves, checked before the status group.
const ERROR_RULES: &[(RangeInclusive<i32>, O)] = &[
    (7002..=7002, O::UndeliverableNotCapable), // EC_UNKNOWN_USER: no RCS on the device / network
    (7005..=7005, O::UndeliverableNotCapable), // EC_FORBIDDEN_ACCESS: carrier without RCS, unlaunched agent
    (7201..=7201, O::UndeliverableNotCapable), // EC_UNSUPPORTED_DEVICE
    (7006..=7006, O::UndeliverableUnsupportedContent), // EC_BAD_REQUEST: feature not supported by the device
    (7003..=7003, O::UndeliverableBlocked),    // EC_BLOCKED_USER
    (7008..=7009, O::UndeliverableBadTemplate), // EC_INVALID_TEMPLATE(_ARGS)
    (7018..=7018, O::UndeliverableBadTemplate), // EC_INTERNAL_BAD_MAPPING
    (7017..=7017, O::UndeliverableThrottled),  // EC_TOO_MANY_REQUESTS (tester quota)
    (7050..=7051, O::UndeliverableProviderError), // EC_PROVIDER_INTERNAL_ERROR / _TIMEOUT
    (7080..=7084, O::UndeliverablePlatformError), // internal, configuration, gateway, activation, sender metadata
];

/// Infobip status groups.
const GROUP_RULES: &[(i32, O)] = &[
    (1, O::Pending),            // PENDING: not final (a provider-side failover step, say)
    (2, O::UndeliverableOther), // UNDELIVERABLE
    (3, O::Delivered),          // DELIVERED
    (4, O::Expired),            // EXPIRED
    (5, O::Rejected),           // REJECTED
];

/// The outcome of a report event of `kind` with status group `group` and error `error`
/// (`None` for events that are not about delivery).
pub(crate) fn delivery_outcome(kind: EventKind, group: Option<i32>, error: Option<i32>) -> Option<O> {
    match kind {
        EventKind::Delivered => return Some(O::Delivered),
        EventKind::Seen => return Some(O::Seen),
        EventKind::Undelivered => {}
        _ => return None,
    }
    if let Some(error) = error
        && let Some((_, outcome)) = ERROR_RULES.iter().find(|(ids, _)| ids.contains(&error))
    {
        return Some(*outcome);
    }
    // A group we do not know (or no status): the user has not got the message.
    Some(group.and_then(|g| GROUP_RULES.iter().find(|(id, _)| *id == g)).map_or(O::UndeliverableOther, |(_, o)| *o))
}

#[cfg(test)]
mod tests {
    use EventKind::{Accepted, Delivered, Inbound, Seen, Undelivered};

    use super::*;

    #[test]
    fn every_row_of_the_table() {
        // (kind, status group, error id, expected outcome)
        type Case = (EventKind, Option<i32>, Option<i32>, Option<O>);
        let cases: &[Case] = &[
            // The reference fixture: 2/4 UNDELIVERABLE_REJECTED_OPERATOR + 7002.
            (Undelivered, Some(2), Some(7002), Some(O::UndeliverableNotCapable)),
            (Undelivered, Some(5), Some(7005), Some(O::UndeliverableNotCapable)),
            (Undelivered, Some(2), Some(7201), Some(O::UndeliverableNotCapable)),
            (Undelivered, Some(2), Some(7006), Some(O::UndeliverableUnsupportedContent)),
            (Undelivered, Some(2), Some(7017), Some(O::UndeliverableThrottled)),
            (Undelivered, Some(2), Some(7050), Some(O::UndeliverableProviderError)),
            (Undelivered, Some(2), Some(7051), Some(O::UndeliverableProviderError)),
            (Undelivered, Some(5), Some(7080), Some(O::UndeliverablePlatformError)),
            (Undelivered, Some(5), Some(7084), Some(O::UndeliverablePlatformError)),
            (Undelivered, Some(2), Some(7003), Some(O::UndeliverableBlocked)),
            (Undelivered, Some(2), Some(7008), Some(O::UndeliverableBadTemplate)),
            (Undelivered, Some(2), Some(7009), Some(O::UndeliverableBadTemplate)),
            (Undelivered, Some(2), Some(7018), Some(O::UndeliverableBadTemplate)),
            // No specific error: the status group decides.
            (Undelivered, Some(2), Some(1), Some(O::UndeliverableOther)),
            (Undelivered, Some(2), None, Some(O::UndeliverableOther)),
            (Undelivered, Some(4), None, Some(O::Expired)),
            (Undelivered, Some(4), Some(27), Some(O::Expired)),
            (Undelivered, Some(5), None, Some(O::Rejected)),
            (Undelivered, Some(1), None, Some(O::Pending)),
            (Undelivered, Some(99), None, Some(O::UndeliverableOther)),
            (Undelivered, None, None, Some(O::UndeliverableOther)),
            (Delivered, Some(3), None, Some(O::Delivered)),
            (Seen, None, None, Some(O::Seen)),
            (Accepted, Some(1), None, None),
            (Inbound, None, None, None),
        ];
        for (kind, group, error, expected) in cases {
            assert_eq!(delivery_outcome(*kind, *group, *error), *expected, "{kind:?} group {group:?} error {error:?}");
        }
    }

    #[test]
    fn error_rules_do_not_overlap() {
        for (i, (a, _)) in ERROR_RULES.iter().enumerate() {
            for (b, _) in &ERROR_RULES[i + 1..] {
                assert!(a.end() < b.start() || b.end() < a.start(), "{a:?} overlaps {b:?}");
            }
        }
    }
}

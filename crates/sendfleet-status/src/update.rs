//! One change to a message's record, and how events become changes.

use sendfleet_protocol::{Channel, Event, EventKind, ProviderErrorInfo, ProviderStatus, SendJob};

use crate::State;

/// One change to a message's status record. Applied atomically in Redis: the record
/// moves to `state` only when it ranks above the record's current state; the time of
/// each state, the attempts (the highest seen) and the sticky fields are kept either way.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    /// The record's message id: the job's own id (an SMS fallback's is `<rcs id>.sms`).
    pub message_id: String,
    /// The state it reports.
    pub state: State,
    /// When it happened, ms since the epoch.
    pub at_ms: i64,
    /// Attempts made so far (0: not known from this update).
    pub attempts: u32,
    /// The message's channel (kept from the first update that gives it).
    pub channel: Option<Channel>,
    /// The provider id (kept from the first update that gives it).
    pub provider: Option<String>,
    /// On an SMS fallback's record: the RCS message it replaces.
    pub fallback_for: Option<String>,
    /// On an RCS message's record: its SMS fallback's message id, once fired.
    pub sms_leg: Option<String>,
    /// The provider's own id of the message, when it differs from ours (Generic vendors).
    pub provider_message_id: Option<String>,
    /// Bounded reason code (failures, retries, fallbacks), replaced with the state.
    pub reason_code: Option<String>,
    /// Human reason, replaced with the state.
    pub reason: Option<String>,
    /// The provider's status ([`encode_status`]), replaced with the state.
    pub provider_status: Option<String>,
    /// The provider's error ([`encode_error`]), replaced with the state.
    pub provider_error: Option<String>,
}

impl StatusUpdate {
    /// A bare update: `state` of `message_id` at `at_ms`, nothing else known.
    pub fn new(message_id: impl Into<String>, state: State, at_ms: i64) -> StatusUpdate {
        StatusUpdate {
            message_id: message_id.into(),
            state,
            at_ms,
            attempts: 0,
            channel: None,
            provider: None,
            fallback_for: None,
            sms_leg: None,
            provider_message_id: None,
            reason_code: None,
            reason: None,
            provider_status: None,
            provider_error: None,
        }
    }

    /// The update an event stands for, or `None` for events that say nothing about one
    /// of our messages' delivery (inbound messages, typing, conversations).
    ///
    /// Events about an SMS fallback carry the RCS message's id with the SMS's own id in
    /// `details.fallback_message_id` (protocol.md); they update the SMS's own record,
    /// which points back at the RCS message. An RCS event carrying that detail (a
    /// `failed` or `fallback_triggered` that fired the SMS) updates the RCS record and
    /// links the SMS leg.
    pub fn from_event(event: &Event) -> Option<StatusUpdate> {
        let state = match event.kind {
            EventKind::Accepted => State::Accepted,
            EventKind::Failed => State::Failed,
            EventKind::Retrying => State::Retrying,
            EventKind::Delivered => State::Delivered,
            EventKind::Undelivered => State::Undelivered,
            EventKind::Seen => State::Seen,
            EventKind::FallbackTriggered => State::FallbackTriggered,
            EventKind::Inbound | EventKind::Typing | EventKind::ConversationStarted => return None,
        };
        let message_id = event.message_id.as_deref()?;
        let sms_id = event.details.get("fallback_message_id");
        let about_sms_leg = sms_id.is_some() && event.channel == Channel::Sms && state != State::FallbackTriggered;
        let mut update = match (about_sms_leg, sms_id) {
            (true, Some(own)) => {
                let mut update = StatusUpdate::new(own.clone(), state, event.at_ms);
                update.fallback_for = Some(message_id.to_owned());
                update
            }
            (_, sms_id) => {
                let mut update = StatusUpdate::new(message_id, state, event.at_ms);
                update.sms_leg = sms_id.cloned();
                update
            }
        };
        update.attempts = event.attempt.map_or(0, |attempt| {
            // A deferral made no request: the attempt it names is the next one.
            let deferred = event.details.get("deferred").is_some_and(|d| d == "true");
            if deferred { attempt.saturating_sub(1) } else { attempt }
        });
        update.channel = Some(event.channel);
        update.provider = Some(event.provider.clone());
        update.provider_message_id = event.details.get("vendor_message_id").cloned();
        update.reason_code = event.details.get("reason_code").cloned();
        update.reason = event.reason.as_deref().map(shortened);
        update.provider_status = event.status.as_ref().map(encode_status);
        update.provider_error = event.error.as_ref().map(encode_error);
        Some(update)
    }

    /// The worker fired `rcs`'s SMS fallback, `sms`, for `reason_code`.
    pub fn fallback_triggered(rcs: &SendJob, sms: &SendJob, reason_code: &str, at_ms: i64) -> StatusUpdate {
        let mut update = StatusUpdate::new(rcs.message_id.clone(), State::FallbackTriggered, at_ms);
        update.channel = Some(rcs.channel);
        update.provider = Some(rcs.provider.clone());
        update.sms_leg = Some(sms.message_id.clone());
        update.reason_code = Some(reason_code.to_owned());
        update
    }
}

/// Longest value Redis keeps a hash compact for (`hash-max-listpack-value`, 64 bytes by
/// default). One longer value turns the record into a hash table for good, about 2.5×
/// the memory, so the stored reason is cut to fit (the event keeps it whole).
const COMPACT_VALUE_BYTES: usize = 64;

/// `reason`, cut to [`COMPACT_VALUE_BYTES`] at a character boundary, ending in `…`.
fn shortened(reason: &str) -> String {
    if reason.len() <= COMPACT_VALUE_BYTES {
        return reason.to_owned();
    }
    let mut end = COMPACT_VALUE_BYTES - '…'.len_utf8();
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

/// A status as stored: `group_id|id|group_name|name` (the description is not kept: it
/// restates the name, and would make the record large).
pub(crate) fn encode_status(status: &ProviderStatus) -> String {
    let (group, name) = (status.group_name.as_deref().unwrap_or(""), status.name.as_deref().unwrap_or(""));
    format!("{}|{}|{group}|{name}", status.group_id, status.id)
}

/// A status as [`encode_status`] stored it.
pub(crate) fn decode_status(text: &str) -> Option<ProviderStatus> {
    let mut parts = text.splitn(4, '|');
    let (group_id, id) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    let named = |part: Option<&str>| part.filter(|p| !p.is_empty()).map(str::to_owned);
    let (group_name, name) = (named(parts.next()), named(parts.next()));
    Some(ProviderStatus { group_id, group_name, id, name, description: None })
}

/// An error as stored: `group_id|id|permanent (0/1)|name`.
pub(crate) fn encode_error(error: &ProviderErrorInfo) -> String {
    format!("{}|{}|{}|{}", error.group_id, error.id, u8::from(error.permanent), error.name.as_deref().unwrap_or(""))
}

/// An error as [`encode_error`] stored it.
pub(crate) fn decode_error(text: &str) -> Option<ProviderErrorInfo> {
    let mut parts = text.splitn(4, '|');
    let (group_id, id) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    let permanent = parts.next()? == "1";
    let name = parts.next().filter(|p| !p.is_empty()).map(str::to_owned);
    Some(ProviderErrorInfo { group_id, id, name, description: None, permanent })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, channel: Channel) -> Event {
        let mut event = Event::new(kind, "p", channel);
        event.message_id = Some("m-1".into());
        event.at_ms = 1_000;
        event
    }

    #[test]
    fn outcomes_and_reports_update_the_message_they_name() {
        let mut accepted = event(EventKind::Accepted, Channel::Sms);
        accepted.attempt = Some(2);
        accepted.status = Some(ProviderStatus {
            group_id: 1,
            group_name: Some("PENDING".into()),
            id: 26,
            name: Some("PENDING_ACCEPTED".into()),
            description: None,
        });
        let update = StatusUpdate::from_event(&accepted).expect("an update");
        assert_eq!((update.message_id.as_str(), update.state, update.attempts), ("m-1", State::Accepted, 2));
        assert_eq!(update.provider_status.as_deref(), Some("1|26|PENDING|PENDING_ACCEPTED"));
        let status = decode_status("1|26|PENDING|PENDING_ACCEPTED").expect("decodes");
        assert_eq!((status.group_id, status.id, status.name.as_deref()), (1, 26, Some("PENDING_ACCEPTED")));
        let error = ProviderErrorInfo {
            group_id: 1,
            id: 7002,
            name: Some("EC_UNKNOWN_USER".into()),
            description: None,
            permanent: true,
        };
        assert_eq!(decode_error(&encode_error(&error)), Some(error));
        assert_eq!(decode_status("x|1||"), None);
        assert_eq!((update.channel, update.provider.as_deref()), (Some(Channel::Sms), Some("p")));
        let mut deferred = event(EventKind::Retrying, Channel::Sms);
        deferred.attempt = Some(3);
        deferred.details.insert("deferred".into(), "true".into());
        deferred.details.insert("reason_code".into(), "sent_store_unavailable".into());
        let update = StatusUpdate::from_event(&deferred).expect("an update");
        assert_eq!((update.attempts, update.reason_code.as_deref()), (2, Some("sent_store_unavailable")));
        assert_eq!(StatusUpdate::from_event(&event(EventKind::Inbound, Channel::Sms)), None);
        let mut unpaired = event(EventKind::Delivered, Channel::Sms);
        unpaired.message_id = None;
        assert_eq!(StatusUpdate::from_event(&unpaired), None);
    }

    #[test]
    fn long_reasons_are_cut_to_keep_the_record_compact() {
        let reason = "é".repeat(100);
        let cut = shortened(&reason);
        assert!(cut.len() <= COMPACT_VALUE_BYTES && cut.ends_with('…'), "{cut}");
        assert_eq!(shortened("HTTP 503"), "HTTP 503");
    }

    #[test]
    fn events_about_an_sms_fallback_update_its_own_record_and_rcs_ones_link_it() {
        let mut sms = event(EventKind::Delivered, Channel::Sms);
        sms.details.insert("fallback_message_id".into(), "m-1.sms".into());
        let update = StatusUpdate::from_event(&sms).expect("an update");
        assert_eq!(update.message_id, "m-1.sms");
        assert_eq!(update.fallback_for.as_deref(), Some("m-1"));
        for kind in [EventKind::Failed, EventKind::FallbackTriggered] {
            let mut rcs = event(kind, Channel::Rcs);
            rcs.details.insert("fallback_message_id".into(), "m-1.sms".into());
            let update = StatusUpdate::from_event(&rcs).expect("an update");
            assert_eq!((update.message_id.as_str(), update.sms_leg.as_deref()), ("m-1", Some("m-1.sms")));
            assert_eq!(update.fallback_for, None);
        }
        // Provider-side failover: an SMS report under the RCS id, no fallback id.
        let failover = StatusUpdate::from_event(&event(EventKind::Delivered, Channel::Sms)).expect("an update");
        assert_eq!((failover.message_id.as_str(), failover.fallback_for), ("m-1", None));
    }
}

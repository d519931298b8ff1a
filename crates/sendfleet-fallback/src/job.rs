//! The SMS job a fallback sends, resolved when the fallback is armed.

use std::time::Duration;

use sendfleet_config::{Config, FallbackMode};
use sendfleet_protocol::{Channel, Content, SCHEMA_VERSION, SendJob, SendOptions, now_ms};

use crate::FallbackError;

/// Infobip's validity when a request sets none (48 h): how long RCS may still be tried.
pub const DEFAULT_VALIDITY_SECONDS: u64 = 172_800;

/// Namespace of fallback message ids derived from long RCS ids (a fixed random UUID).
const FALLBACK_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x0f4b_55a1_9c2e_4d3b_8e7a_52c6_1d90_a3f7);

/// The SMS's own message id: `<rcs id>.sms`, or a UUIDv5 of the RCS id when that would
/// pass the 200-character limit. Deterministic, so a fallback published twice after a
/// crash carries the same id and the sent-record suppresses the second send; distinct
/// from the RCS id, so the provider does not refuse it as a duplicate message id.
pub fn fallback_message_id(rcs_message_id: &str) -> String {
    let readable = format!("{rcs_message_id}.sms");
    if readable.len() <= 200 {
        readable
    } else {
        uuid::Uuid::new_v5(&FALLBACK_ID_NAMESPACE, rcs_message_id.as_bytes()).to_string()
    }
}

/// The SMS job of an RCS job's fleet-managed fallback: `None` when the job has no
/// fallback, is not RCS, or its provider sends the fallback itself (`fallback_mode =
/// "provider"`). The SMS provider is the fallback's `provider` or the SMS default; the
/// sender is the fallback's `sender` (one of that provider's) or its first sender id.
pub fn fallback_job(config: &Config, rcs: &SendJob) -> Result<Option<SendJob>, FallbackError> {
    let Some(fallback) = &rcs.fallback else { return Ok(None) };
    if rcs.channel != Channel::Rcs {
        return Ok(None);
    }
    if config.provider(&rcs.provider).is_some_and(|p| p.fallback_mode == FallbackMode::Provider) {
        return Ok(None);
    }
    let provider = match &fallback.provider {
        Some(id) => {
            let provider = config
                .provider(id)
                .ok_or_else(|| FallbackError::Invalid(format!("no provider with id '{id}' for the SMS fallback")))?;
            if provider.channel() != Channel::Sms {
                return Err(FallbackError::Invalid(format!("fallback provider '{id}' does not send SMS")));
            }
            provider
        }
        None => config
            .default_provider(Channel::Sms)
            .ok_or_else(|| FallbackError::Invalid("no fallback provider given and no default SMS provider".into()))?,
    };
    let sender = match &fallback.sender {
        Some(sender) if provider.sender_ids.is_empty() || provider.sender_ids.contains(sender) => sender.clone(),
        Some(sender) => {
            return Err(FallbackError::Invalid(format!(
                "fallback sender '{sender}' is not configured for provider '{}'",
                provider.id
            )));
        }
        None => provider
            .default_sender()
            .ok_or_else(|| FallbackError::Invalid(format!("provider '{}' has no sender id", provider.id)))?
            .to_owned(),
    };
    let options = SendOptions {
        validity_period_seconds: fallback.validity_period_seconds,
        send_at: None,
        delivery_time_window: rcs.options.delivery_time_window.clone(),
        campaign_reference_id: rcs.options.campaign_reference_id.clone(),
        // DLT ids belong to the SMS; the RCS request may carry them for this purpose.
        regional: fallback.regional.clone().or_else(|| rcs.options.regional.clone()),
    };
    Ok(Some(SendJob {
        // The fallback keeps its message's lane: an OTP's SMS is as urgent as its RCS.
        priority: rcs.priority,
        schema_version: SCHEMA_VERSION,
        message_id: fallback_message_id(&rcs.message_id),
        provider: provider.id.clone(),
        channel: Channel::Sms,
        to: rcs.to.clone(),
        sender,
        content: Content::Text { text: fallback.text.clone(), suggestions: Vec::new() },
        options,
        fallback: None,
        metadata: rcs.metadata.clone(),
        trace_id: rcs.trace_id.clone(),
        attempts: 0,
        first_attempt_at_ms: None,
        created_at_ms: now_ms(),
        fallback_for: Some(rcs.message_id.clone()),
    }))
}

/// How long an armed fallback lives: RCS validity (48 h by default), plus the RCS
/// provider's retry age (the job may be retried that long before it is sent), plus
/// `worker.fallback_ttl_margin_seconds` for late reports.
pub fn fallback_ttl(config: &Config, rcs: &SendJob) -> Duration {
    let validity = rcs.options.validity_period_seconds.map_or(DEFAULT_VALIDITY_SECONDS, u64::from);
    let retry_age = config.provider(&rcs.provider).map_or(0, |p| p.retry.max_age_seconds);
    Duration::from_secs(validity + retry_age + config.worker.fallback_ttl_margin_seconds)
}

#[cfg(test)]
mod tests {
    use sendfleet_protocol::{IndiaDlt, Regional, SmsFallback};

    use super::*;

    const TOML: &str = r#"
[[providers]]
id = "rcs"
kind = "infobip_rcs"
base_url = "https://x.api.infobip.com"
api_key_env = "K"
sender_ids = ["Agent"]
default_for_channel = true

[[providers]]
id = "rcs-own"
kind = "infobip_rcs"
base_url = "https://x.api.infobip.com"
api_key_env = "K"
sender_ids = ["Agent"]
fallback_mode = "provider"

[[providers]]
id = "sms"
kind = "infobip_sms"
base_url = "https://x.api.infobip.com"
api_key_env = "K"
sender_ids = ["ACMEIN", "ACMEOTP"]
default_for_channel = true

[[providers]]
id = "sms-2"
kind = "infobip_sms"
base_url = "https://y.api.infobip.com"
api_key_env = "K"
sender_ids = ["OTHER"]
"#;

    fn config() -> Config {
        Config::from_toml(TOML, &|_| Some("key".into()), &sendfleet_providers::VENDORS).unwrap()
    }

    fn rcs_job(fallback: Option<SmsFallback>) -> SendJob {
        SendJob {
            priority: Default::default(),
            schema_version: 1,
            message_id: "m-1".into(),
            provider: "rcs".into(),
            channel: Channel::Rcs,
            to: "+919876543210".into(),
            sender: "Agent".into(),
            content: Content::Text { text: "rich".into(), suggestions: vec![] },
            options: SendOptions {
                validity_period_seconds: Some(600),
                campaign_reference_id: Some("c".into()),
                regional: Some(Regional {
                    india_dlt: Some(IndiaDlt {
                        principal_entity_id: "p".into(),
                        content_template_id: None,
                        telemarketer_id: None,
                    }),
                    turkey_iys: None,
                }),
                ..SendOptions::default()
            },
            fallback,
            metadata: [("k".to_owned(), "v".to_owned())].into(),
            trace_id: "t".into(),
            attempts: 2,
            first_attempt_at_ms: Some(5),
            created_at_ms: 1,
            fallback_for: None,
        }
    }

    fn fallback() -> SmsFallback {
        SmsFallback {
            text: "plain".into(),
            sender: None,
            provider: None,
            regional: None,
            validity_period_seconds: None,
        }
    }

    #[test]
    fn defaults_resolve_to_the_sms_default_provider_and_its_first_sender() {
        let job = fallback_job(&config(), &rcs_job(Some(fallback()))).unwrap().unwrap();
        assert_eq!((job.provider.as_str(), job.sender.as_str()), ("sms", "ACMEIN"));
        assert_eq!(job.channel, Channel::Sms);
        assert_eq!(job.message_id, "m-1.sms");
        assert_eq!(job.fallback_for.as_deref(), Some("m-1"));
        assert_eq!(job.content, Content::Text { text: "plain".into(), suggestions: vec![] });
        assert_eq!(job.attempts, 0, "the SMS gets its own retries");
        assert!(job.fallback.is_none());
        assert_eq!(job.options.regional, rcs_job(None).options.regional, "DLT ids travel to the SMS");
        assert_eq!(job.options.validity_period_seconds, None, "the RCS validity is not the SMS's");
        assert_eq!(job.metadata.get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn explicit_provider_and_sender_are_checked() {
        let chosen = SmsFallback { provider: Some("sms-2".into()), sender: Some("OTHER".into()), ..fallback() };
        let job = fallback_job(&config(), &rcs_job(Some(chosen))).unwrap().unwrap();
        assert_eq!((job.provider.as_str(), job.sender.as_str()), ("sms-2", "OTHER"));
        for (bad, needle) in [
            (SmsFallback { provider: Some("nope".into()), ..fallback() }, "no provider with id 'nope'"),
            (SmsFallback { provider: Some("rcs".into()), ..fallback() }, "does not send SMS"),
            (SmsFallback { sender: Some("ACME".into()), ..fallback() }, "sender 'ACME'"),
        ] {
            let err = fallback_job(&config(), &rcs_job(Some(bad))).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn no_job_without_a_fleet_managed_fallback() {
        assert!(fallback_job(&config(), &rcs_job(None)).unwrap().is_none());
        let mut own = rcs_job(Some(fallback()));
        own.provider = "rcs-own".into();
        assert!(fallback_job(&config(), &own).unwrap().is_none(), "the provider sends its own smsFailover");
        let mut sms = rcs_job(Some(fallback()));
        sms.channel = Channel::Sms;
        assert!(fallback_job(&config(), &sms).unwrap().is_none());
    }

    #[test]
    fn long_ids_get_a_stable_uuid() {
        let long = "x".repeat(200);
        let id = fallback_message_id(&long);
        assert_eq!(id.len(), 36);
        assert_eq!(id, fallback_message_id(&long));
        assert_ne!(id, fallback_message_id(&"y".repeat(200)));
    }

    #[test]
    fn ttl_covers_validity_retry_age_and_margin() {
        let config = config();
        let job = rcs_job(Some(fallback()));
        assert_eq!(fallback_ttl(&config, &job), Duration::from_secs(600 + 3_600 + 3_600));
        let mut open = job;
        open.options.validity_period_seconds = None;
        assert_eq!(fallback_ttl(&config, &open), Duration::from_secs(DEFAULT_VALIDITY_SECONDS + 7_200));
    }
}

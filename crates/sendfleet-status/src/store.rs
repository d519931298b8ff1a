//! Reading records (the API, the CLI) and resetting them for a replay.

use std::collections::HashMap;

use schemars::JsonSchema;
use sendfleet_config::Config;
use sendfleet_protocol::{Channel, ProviderErrorInfo, ProviderStatus};
use serde::{Deserialize, Serialize};

use crate::{RESET_LUA, State, StatusError, record_key};

/// A message's record as `GET /v1/messages/{id}` and `sendfleet status` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessageStatus {
    /// Our message id.
    pub message_id: String,
    /// The current state.
    pub state: State,
    /// Whether the state is final ([`State::is_final`]).
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The message's channel, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// The provider id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Attempts made (the highest any update reported; reset by a replay).
    pub attempts: u32,
    /// The vendor's own id of the message, when it differs from ours (Generic vendors;
    /// for Infobip and JioCX the provider's id *is* our message id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// The provider's status reported with the current state (without its description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<ProviderStatus>,
    /// The provider's error reported with the current state (without its description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_error: Option<ProviderErrorInfo>,
    /// Bounded reason code of the current state (failures, retries, fallbacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// Human reason of the current state (at most 64 bytes; the event has it whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Each state reported, with the first time it was, in state order.
    pub transitions: Vec<Transition>,
    /// When the current state was reached, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at_ms: Option<i64>,
    /// Updates refused because the record was already in a later state (late or
    /// repeated reports).
    pub stale_updates: u64,
    /// How often the message was replayed from the dead letters.
    pub replays: u32,
    /// The state the record was in before the last replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_from: Option<State>,
    /// On an SMS fallback's record: the RCS message it replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_for: Option<String>,
    /// On an RCS message's record: its SMS fallback's record, once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_leg: Option<Box<MessageStatus>>,
    /// Seconds until the record expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<u64>,
}

/// A state and the first time it was reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Transition {
    /// The state.
    pub state: State,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

impl MessageStatus {
    /// A record from its hash fields; `None` without a known `state` (no record).
    fn from_fields(message_id: &str, fields: &HashMap<String, String>, ttl: i64) -> Option<MessageStatus> {
        let state = State::parse(fields.get("state")?)?;
        let text = |name: &str| fields.get(name).cloned();
        let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let mut transitions: Vec<Transition> = fields
            .iter()
            .filter_map(|(field, at)| {
                let state = State::parse(field.strip_prefix("at.")?)?;
                Some(Transition { state, at_ms: at.parse().ok()? })
            })
            .collect();
        // The walk in state order: states only move up, and the times come from different
        // clocks (the worker's, the provider's report), so a report can carry an earlier
        // time than the `accepted` that the worker recorded after it.
        transitions.sort_by_key(|t| (t.state, t.at_ms));
        Some(MessageStatus {
            message_id: message_id.to_owned(),
            state,
            is_final: state.is_final(),
            channel: fields.get("channel").and_then(|c| serde_json::from_value(c.as_str().into()).ok()),
            provider: text("provider"),
            attempts: u32::try_from(number("attempts")).unwrap_or(u32::MAX),
            provider_message_id: text("provider_message_id"),
            provider_status: fields.get("status").and_then(|s| crate::update::decode_status(s)),
            provider_error: fields.get("error").and_then(|e| crate::update::decode_error(e)),
            reason_code: text("reason_code"),
            reason: text("reason"),
            transitions,
            updated_at_ms: fields.get("updated_ms").and_then(|v| v.parse().ok()),
            stale_updates: number("stale"),
            replays: u32::try_from(number("replays")).unwrap_or(u32::MAX),
            replayed_from: fields.get("replayed_from").and_then(|s| State::parse(s)),
            fallback_for: text("fallback_for"),
            sms_leg: None,
            expires_in_seconds: u64::try_from(ttl).ok(),
        })
    }
}

/// Reads records, and resets them for a replay. Cheap to clone.
#[derive(Clone)]
pub struct StatusStore {
    pool: Option<sendfleet_redis::RedisPool>,
    prefix: String,
    ttl_seconds: u64,
}

impl StatusStore {
    /// The store of `config`, with a small Redis pool of its own (connections open on
    /// first use). With `status.enabled = false` every call answers
    /// [`StatusError::Disabled`].
    pub fn connect(config: &Config) -> Result<StatusStore, StatusError> {
        let pool = if config.status.enabled { Some(crate::pool(config, 4)?) } else { None };
        Ok(StatusStore { pool, prefix: config.redis.key_prefix.clone(), ttl_seconds: config.status.ttl_seconds })
    }

    async fn connection(&self) -> Result<sendfleet_redis::RedisConnection, StatusError> {
        let pool = self.pool.as_ref().ok_or(StatusError::Disabled)?;
        pool.get().await.map_err(|e| StatusError::Unavailable(e.to_string()))
    }

    /// The record of `message_id` with its SMS leg; `None` when there is none (never
    /// written, or expired).
    pub async fn get(&self, message_id: &str) -> Result<Option<MessageStatus>, StatusError> {
        let mut connection = self.connection().await?;
        let sms_id = sendfleet_fallback::fallback_message_id(message_id);
        let (own, own_ttl, sms, sms_ttl): (HashMap<String, String>, i64, HashMap<String, String>, i64) = redis::pipe()
            .cmd("HGETALL")
            .arg(record_key(&self.prefix, message_id))
            .cmd("TTL")
            .arg(record_key(&self.prefix, message_id))
            .cmd("HGETALL")
            .arg(record_key(&self.prefix, &sms_id))
            .cmd("TTL")
            .arg(record_key(&self.prefix, &sms_id))
            .query_async(&mut *connection)
            .await
            .map_err(|e| StatusError::Unavailable(e.to_string()))?;
        let Some(mut status) = MessageStatus::from_fields(message_id, &own, own_ttl) else { return Ok(None) };
        // Only a leg that says it replaces this message: `<id>.sms` could be a message
        // of its own.
        status.sms_leg = MessageStatus::from_fields(&sms_id, &sms, sms_ttl)
            .filter(|leg| leg.fallback_for.as_deref() == Some(message_id))
            .map(Box::new);
        Ok(Some(status))
    }

    /// Starts a new life for each record (a replay put its job back): state
    /// `replayed`, attempts and reasons cleared, `replays` + 1, the previous state in
    /// `replayed_from`. One pipeline for all of them.
    pub async fn reset_for_replay(&self, message_ids: &[&str], at_ms: i64) -> Result<(), StatusError> {
        if message_ids.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        let mut pipe = redis::pipe();
        for id in message_ids {
            pipe.cmd("EVAL").arg(RESET_LUA).arg(1).arg(record_key(&self.prefix, id)).arg(at_ms).arg(self.ttl_seconds);
        }
        pipe.query_async::<()>(&mut *connection).await.map_err(|e| StatusError::Unavailable(e.to_string()))
    }
}

//! Message status: "what happened to message X?".
//!
//! One record per message id in Redis, a hash at `<key_prefix>:status:<message id>`,
//! living `status.ttl_seconds` (default 7 days) after its last change:
//!
//! | field | written | holds |
//! |---|---|---|
//! | `state` | when an update wins | the current [`State`] |
//! | `at.<state>` | first time each state is reported, also when it does not win | ms since the epoch |
//! | `updated_ms` | when an update wins | when the current state was reached |
//! | `attempts` | the highest reported | attempts made |
//! | `channel`, `provider`, `fallback_for` | first update that gives them | `rcs`/`sms`, provider id, the RCS message an SMS fallback replaces |
//! | `sms_leg`, `provider_message_id` | whenever given | the SMS fallback's id, the vendor's own id |
//! | `reason_code`, `reason`, `status`, `error` | replaced when an update wins | why (the reason cut to 64 bytes), the provider's status `group_id\|id\|group_name\|name` and error `group_id\|id\|permanent\|name` |
//! | `stale` | incremented when an update does not win | late or repeated reports refused |
//! | `replays`, `replayed_from` | by `sendfleet dead-letters replay` | replays, and the state before the last one |
//!
//! **Monotonic**: an update moves the record only to a state ranked *higher* than its
//! current one (the order of [`State`]), decided inside Redis by one Lua script per
//! update, so a `delivered` followed by a late `accepted` or a repeated report stays
//! `delivered` whatever the interleaving of writers.
//!
//! **Off the hot path**: the sender-worker and callback-ingest hand updates to a
//! [`StatusWriter`] without waiting; a background task sends whatever queued up as one
//! pipeline (up to 512 scripts per round trip, two round trips in flight). When its
//! bounded queue is full the update is dropped and counted, never waited for: a slow
//! Redis slows the status down, not the sending. Status is informational: a process
//! that dies loses the updates it had not written yet.
//!
//! Reading ([`StatusStore::get`]) takes the record and, for an RCS message, the record
//! of its SMS fallback (`<rcs id>.sms`, [`sendfleet_fallback::fallback_message_id`]).

mod state;
mod store;
mod update;
mod writer;

pub use state::State;
pub use store::{MessageStatus, StatusStore, Transition};
pub use update::StatusUpdate;
pub use writer::StatusWriter;

use sendfleet_config::Config;

/// Why the status store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The Redis URL cannot be used (a config built without validation).
    #[error("status store: {0}")]
    Setup(String),
    /// Redis could not be reached or refused a command.
    #[error("status store unavailable: {0}")]
    Unavailable(String),
    /// The store is switched off (`status.enabled = false`).
    #[error("the message status store is switched off (status.enabled = false)")]
    Disabled,
}

/// The Redis key of a message's record.
pub fn record_key(key_prefix: &str, message_id: &str) -> String {
    format!("{key_prefix}:status:{message_id}")
}

/// A small pool of its own, so status traffic never takes a connection the send path
/// (claims, rate slots) waits for. Connections open on first use.
fn pool(config: &Config, size: usize) -> Result<sendfleet_redis::RedisPool, StatusError> {
    sendfleet_redis::RedisPool::new(&config.redis, size).map_err(|e| StatusError::Setup(e.to_string()))
}

/// Applies one update (see the crate docs). KEYS[1] the record; ARGV: state, at_ms,
/// ttl_s, attempts, then three groups each led by its pair count: fields set only if
/// absent, fields always set, fields set when the update wins. Returns 1 when it won.
const APPLY_LUA: &str = r"
local RANK = __RANKS__
local key = KEYS[1]
local state = ARGV[1]
local rank = RANK[state]
if rank == nil then return redis.error_reply('unknown status state ' .. state) end
local current = redis.call('HGET', key, 'state')
local wins = (not current) or rank > (RANK[current] or -1)
redis.call('HSETNX', key, 'at.' .. state, ARGV[2])
local attempts = tonumber(ARGV[4])
if attempts > 0 and attempts > tonumber(redis.call('HGET', key, 'attempts') or '0') then
  redis.call('HSET', key, 'attempts', attempts)
end
local i = 5
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSETNX', key, ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', key, ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
if wins then
  redis.call('HDEL', key, 'reason_code', 'reason', 'status', 'error')
  redis.call('HSET', key, 'state', state, 'updated_ms', ARGV[2])
  for _ = 1, n do redis.call('HSET', key, ARGV[i], ARGV[i + 1]); i = i + 2 end
else
  redis.call('HINCRBY', key, 'stale', 1)
end
redis.call('EXPIRE', key, ARGV[3])
if wins then return 1 end
return 0
";

/// Starts a record's new life after a replay: keeps what identifies the message
/// (channel, provider, the fallback links) and the replay count, drops the rest, and
/// sets `replayed`. KEYS[1] the record; ARGV: at_ms, ttl_s.
const RESET_LUA: &str = r"
local key = KEYS[1]
local current = redis.call('HGET', key, 'state')
local keep = {channel = true, provider = true, fallback_for = true, sms_leg = true, replays = true}
for _, field in ipairs(redis.call('HKEYS', key)) do
  if not keep[field] then redis.call('HDEL', key, field) end
end
if current then redis.call('HSET', key, 'replayed_from', current) end
redis.call('HINCRBY', key, 'replays', 1)
redis.call('HSET', key, 'state', 'replayed', 'at.replayed', ARGV[1], 'updated_ms', ARGV[1])
redis.call('EXPIRE', key, ARGV[2])
return 1
";

/// The apply script with the rank table of [`State`] in it.
fn apply_script() -> redis::Script {
    redis::Script::new(&APPLY_LUA.replace("__RANKS__", &State::lua_ranks()))
}

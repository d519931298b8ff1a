//! The states of a message and their order.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a message is. The declaration order is the **rank**: an update moves a record
/// only to a state ranked higher than the one it is in, so a report arriving late (an
/// `accepted` after `delivered`, a repeated report) never moves it back. The same order
/// is written into the Lua script that applies updates in Redis ([`State::lua_ranks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Put back from the dead letters by `sendfleet dead-letters replay`: a new life
    /// starts (every later update wins).
    Replayed,
    /// A transient failure (or a deferral): a copy waits in a retry tier.
    Retrying,
    /// The provider accepted the message (not yet delivered).
    Accepted,
    /// Never accepted: refused for good, out of retries or too old, not RCS capable
    /// without a fallback. Final.
    Failed,
    /// The worker sent the RCS message's SMS fallback instead (not capable, refused, out
    /// of retries); the SMS leg has its own record. Final for the RCS leg.
    FallbackTriggered,
    /// A final delivery report says it did not arrive (undeliverable, expired,
    /// rejected). Final.
    Undelivered,
    /// A delivery report says it reached the handset. Final.
    Delivered,
    /// The recipient opened it (RCS). Final.
    Seen,
}

impl State {
    /// Every state, lowest rank first.
    pub const ALL: [State; 8] = [
        State::Replayed,
        State::Retrying,
        State::Accepted,
        State::Failed,
        State::FallbackTriggered,
        State::Undelivered,
        State::Delivered,
        State::Seen,
    ];

    /// The snake_case name stored in Redis and shown in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Replayed => "replayed",
            State::Retrying => "retrying",
            State::Accepted => "accepted",
            State::Failed => "failed",
            State::FallbackTriggered => "fallback_triggered",
            State::Undelivered => "undelivered",
            State::Delivered => "delivered",
            State::Seen => "seen",
        }
    }

    /// The state of a stored name.
    pub fn parse(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// Its rank: a record only moves to a higher one.
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// Whether nothing but a later-ranked report can follow: the message will not be
    /// sent (again) on this leg.
    pub fn is_final(self) -> bool {
        self >= State::Failed
    }

    /// The rank table as a Lua table constructor, `{replayed=0,retrying=1,…}`.
    pub(crate) fn lua_ranks() -> String {
        let entries: Vec<String> = State::ALL.iter().map(|s| format!("{}={}", s.as_str(), s.rank())).collect();
        format!("{{{}}}", entries.join(","))
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_the_documented_order_and_names_round_trip() {
        let ranks: Vec<u8> = State::ALL.iter().map(|s| s.rank()).collect();
        assert_eq!(ranks, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert!(State::Accepted < State::Delivered && State::Delivered < State::Seen);
        assert!(State::Failed < State::Undelivered, "a report about an attempt that timed out still counts");
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_string(&state).unwrap(), format!("\"{}\"", state.as_str()));
        }
        assert_eq!(State::parse("pending"), None);
        assert!(!State::Accepted.is_final() && State::Failed.is_final());
        assert_eq!(
            State::lua_ranks(),
            "{replayed=0,retrying=1,accepted=2,failed=3,fallback_triggered=4,undelivered=5,delivered=6,seen=7}"
        );
    }
}

//! The fallback record in Redis.
//!
//! One key per RCS message, `<prefix>:fallback:<message id>`, whose value is one of
//! - `A<MessagePack SMS job>`: armed;
//! - `C<deadline ms>:<token>:<MessagePack SMS job>`: claimed by the trigger holding
//!   `token` (a random UUID per fire), which is publishing the SMS job; the deadline is
//!   Redis's own clock (`TIME`) plus the claim timeout, so clients' clocks do not matter;
//! - `F`: fired (the SMS job is confirmed by the broker);
//! - `D`: disarmed (the RCS message was delivered or seen, or policy says no SMS).
//!
//! Every transition is one Lua script, so it is atomic against every other worker and
//! callback-ingest instance:
//!
//! ```text
//!  arm ──► A ──claim──► C ──mark fired (own token)──► F
//!          ▲            │ ▲
//!          └──release───┘ └─claim after the deadline (reclaim, new token)
//!  A, C ──disarm──► D
//! ```
//!
//! Firing is two-phase so no step can lose the SMS: a claim keeps the job in Redis until
//! the claimer has the broker's confirm and marks it fired. A claimer that dies, is
//! cancelled or loses a Redis reply leaves a claim that the next trigger reclaims once
//! its deadline passed; before the deadline the next trigger hears "in progress". Mark
//! fired and release are compare-and-set on the caller's own token, so a claimer whose
//! claim was taken over (it stalled past its deadline) cannot overwrite the newer claim.
//!
//! `F` is a tombstone rather than a deleted key: a redelivered or retried RCS job arms
//! again before it sends, and without the tombstone it would find nothing and arm a
//! second SMS.

use std::time::Duration;

use sendfleet_protocol::{SendJob, decode, encode};

use crate::FallbackError;

const ARMED: u8 = b'A';

/// Arms unless the key exists; refreshes the TTL of an armed value. Returns `new`, or
/// the first letter of the existing state (a claim is not touched: a trigger is firing it).
const LUA_ARM: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 'new'
end
local state = string.sub(v, 1, 1)
if state == 'A' then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return state
";

/// Claims an armed value, or a claim whose deadline passed, for token ARGV[1] until
/// Redis's now + ARGV[2] ms (TTL kept). Returns `{'claimed', job}`, `{'reclaimed', job}`,
/// `{'busy', ms left}`, `{'none'}`, `{'corrupt'}` or `{<state letter>}`.
const LUA_CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  return {'none'}
end
local state = string.sub(v, 1, 1)
if state ~= 'A' and state ~= 'C' then
  return {state}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local job
local outcome
if state == 'A' then
  job = string.sub(v, 2)
  outcome = 'claimed'
else
  local deadline, token = string.match(v, '^C(%d+):(%x+):')
  if not deadline then
    return {'corrupt'}
  end
  local left = tonumber(deadline) - now
  if left > 0 then
    return {'busy', string.format('%d', left)}
  end
  job = string.sub(v, string.len(deadline) + string.len(token) + 4)
  outcome = 'reclaimed'
end
local claim = 'C' .. string.format('%d', now + tonumber(ARGV[2])) .. ':' .. ARGV[1] .. ':'
redis.call('SET', KEYS[1], claim .. job, 'KEEPTTL')
return {outcome, job}
";

/// Marks our own claim (token ARGV[1]) fired. Returns `done`, `other` (someone else's
/// claim), `none` or the state letter found.
const LUA_MARK_FIRED: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  return 'none'
end
local state = string.sub(v, 1, 1)
if state ~= 'C' then
  return state
end
if string.match(v, '^C%d+:(%x+):') ~= ARGV[1] then
  return 'other'
end
redis.call('SET', KEYS[1], 'F', 'KEEPTTL')
return 'done'
";

/// Turns our own claim (token ARGV[1]) back into the armed value. Same answers as
/// LUA_MARK_FIRED.
const LUA_RELEASE: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  return 'none'
end
local state = string.sub(v, 1, 1)
if state ~= 'C' then
  return state
end
local deadline, token = string.match(v, '^C(%d+):(%x+):')
if token ~= ARGV[1] then
  return 'other'
end
redis.call('SET', KEYS[1], 'A' .. string.sub(v, string.len(deadline) + string.len(token) + 4), 'KEEPTTL')
return 'done'
";

/// Disarms an armed or claimed value; returns 1 if it was either.
const LUA_DISARM: &str = r"
local v = redis.call('GET', KEYS[1])
if v then
  local state = string.sub(v, 1, 1)
  if state == 'A' or state == 'C' then
    redis.call('SET', KEYS[1], 'D', 'KEEPTTL')
    return 1
  end
end
return 0
";

/// What arming found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmState {
    /// Armed now, or already armed by an earlier attempt (TTL refreshed): send the RCS.
    Armed,
    /// A trigger has claimed the fallback and is publishing the SMS (or died doing so
    /// and its claim has not been taken over yet). Do not send the RCS message and do
    /// not treat the job as settled: fire it later ([`Fallbacks::fire`](crate::Fallbacks::fire)),
    /// which reclaims it once the claim's deadline passed, or hears
    /// [`FireOutcome::InProgress`](crate::FireOutcome::InProgress) before that.
    InProgress,
    /// The fallback was already fired: do not send the RCS message again.
    AlreadyFired,
    /// The RCS message was already delivered or seen.
    Disarmed,
}

/// A claim this caller holds: the job, and the token that proves it is ours.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Claim {
    /// The armed job, ours to publish until the claim's deadline.
    pub job: Box<SendJob>,
    /// Our token (in the claimed value).
    pub token: String,
    /// Whether this took over a claim whose deadline had passed (its claimer died, was
    /// cancelled or stalled): its SMS may be in the broker already.
    pub reclaimed: bool,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Taken {
    /// The job, now claimed by us.
    Claimed(Claim),
    /// Claimed by another trigger whose deadline is this far away.
    InProgress { retry_after: Duration },
    /// Someone fired it before.
    AlreadyFired,
    /// Delivered or seen before.
    Disarmed,
    /// Never armed, or expired.
    NotArmed,
}

/// What a compare-and-set on our claim (mark fired, release) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Our claim was turned into the new state.
    Done,
    /// Not our claim any more: it was taken over after its deadline.
    OtherClaim,
    /// Armed again (the claim that took ours over was released).
    Armed,
    /// Fired (by the claim that took ours over).
    Fired,
    /// Disarmed while claimed.
    Disarmed,
    /// The key expired.
    Gone,
}

impl Settled {
    fn parse(answer: &str) -> Settled {
        match answer {
            "done" => Settled::Done,
            "other" => Settled::OtherClaim,
            "A" => Settled::Armed,
            "F" => Settled::Fired,
            "D" => Settled::Disarmed,
            _ => Settled::Gone,
        }
    }
}

/// A failed Redis call of the store, counted for the Redis-unreachable alert.
fn store_error(err: impl std::fmt::Display) -> FallbackError {
    sendfleet_telemetry::metrics::RedisStore::Fallback.failed(1);
    FallbackError::Store(err.to_string())
}

/// The fallback record. Cheap to clone.
#[derive(Clone)]
pub struct FallbackStore {
    pool: sendfleet_redis::RedisPool,
    prefix: String,
    arm: redis::Script,
    claim: redis::Script,
    mark_fired: redis::Script,
    release: redis::Script,
    disarm: redis::Script,
}

impl FallbackStore {
    /// A store writing `<key_prefix>:fallback:<message id>` keys.
    pub fn new(pool: sendfleet_redis::RedisPool, key_prefix: &str) -> FallbackStore {
        FallbackStore {
            pool,
            prefix: format!("{key_prefix}:fallback:"),
            arm: redis::Script::new(LUA_ARM),
            claim: redis::Script::new(LUA_CLAIM),
            mark_fired: redis::Script::new(LUA_MARK_FIRED),
            release: redis::Script::new(LUA_RELEASE),
            disarm: redis::Script::new(LUA_DISARM),
        }
    }

    fn key(&self, message_id: &str) -> String {
        format!("{}{message_id}", self.prefix)
    }

    async fn connection(&self) -> Result<sendfleet_redis::RedisConnection, FallbackError> {
        self.pool.get().await.map_err(store_error)
    }

    /// Arms `sms` as the fallback of RCS message `message_id` for `ttl`.
    pub async fn arm(&self, message_id: &str, sms: &SendJob, ttl: Duration) -> Result<ArmState, FallbackError> {
        let mut value = vec![ARMED];
        value.extend_from_slice(&encode(sms));
        let mut connection = self.connection().await?;
        let state: String = self
            .arm
            .key(self.key(message_id))
            .arg(value)
            .arg(ttl.as_secs().max(1))
            .invoke_async(&mut *connection)
            .await
            .map_err(store_error)?;
        Ok(match state.as_str() {
            "C" => ArmState::InProgress,
            "F" => ArmState::AlreadyFired,
            "D" => ArmState::Disarmed,
            _ => ArmState::Armed,
        })
    }

    /// Claims the armed job (exactly one caller gets it) for `timeout`, or takes over a
    /// claim whose deadline passed. The job stays in Redis until [`Self::mark_fired`].
    pub(crate) async fn claim(&self, message_id: &str, timeout: Duration) -> Result<Taken, FallbackError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut connection = self.connection().await?;
        let answer: Vec<Vec<u8>> = self
            .claim
            .key(self.key(message_id))
            .arg(&token)
            .arg(timeout_ms)
            .invoke_async(&mut *connection)
            .await
            .map_err(store_error)?;
        drop(connection);
        let corrupt = |reason: String| FallbackError::Corrupt { message_id: message_id.to_owned(), reason };
        let (head, rest) = answer.split_first().ok_or_else(|| corrupt("empty answer from the claim script".into()))?;
        Ok(match (head.as_slice(), rest.first()) {
            (b"claimed" | b"reclaimed", Some(bytes)) => match decode::<SendJob>(bytes) {
                Ok(job) => Taken::Claimed(Claim { job: Box::new(job), token, reclaimed: head == b"reclaimed" }),
                Err(err) => {
                    // Nobody can ever publish it: give the value back as it was, so the
                    // next trigger reports the same error instead of "in progress".
                    drop(self.release(message_id, &token).await);
                    return Err(corrupt(err.to_string()));
                }
            },
            (b"busy", Some(left)) => {
                let ms = std::str::from_utf8(left).ok().and_then(|l| l.parse::<u64>().ok()).unwrap_or(1);
                Taken::InProgress { retry_after: Duration::from_millis(ms) }
            }
            (b"F", _) => Taken::AlreadyFired,
            (b"D", _) => Taken::Disarmed,
            (b"corrupt", _) => return Err(corrupt("a claim without deadline and token".into())),
            _ => Taken::NotArmed,
        })
    }

    /// Marks our claim fired (its SMS job is confirmed). Compare-and-set on `token`.
    pub(crate) async fn mark_fired(&self, message_id: &str, token: &str) -> Result<Settled, FallbackError> {
        self.settle(&self.mark_fired, message_id, token).await
    }

    /// Gives our claim back (its publish failed), so the next trigger fires it at once
    /// rather than after the deadline. Compare-and-set on `token`.
    pub(crate) async fn release(&self, message_id: &str, token: &str) -> Result<Settled, FallbackError> {
        self.settle(&self.release, message_id, token).await
    }

    async fn settle(&self, script: &redis::Script, message_id: &str, token: &str) -> Result<Settled, FallbackError> {
        let mut connection = self.connection().await?;
        let answer: String =
            script.key(self.key(message_id)).arg(token).invoke_async(&mut *connection).await.map_err(store_error)?;
        Ok(Settled::parse(&answer))
    }

    /// Disarms: the RCS message got through (or policy says no SMS). Returns whether a
    /// fallback was armed or claimed.
    ///
    /// A claimed fallback is disarmed too: the RCS message got through, so no SMS is due
    /// any more. If its claimer already has the SMS job in the broker it is still sent
    /// (the user gets both, as when RCS is delivered after its fallback fired); if the
    /// claimer died or its publish fails, nothing fires it again, and its mark fired or
    /// release finds `D` and leaves it.
    pub async fn disarm(&self, message_id: &str) -> Result<bool, FallbackError> {
        let mut connection = self.connection().await?;
        let was: i64 =
            self.disarm.key(self.key(message_id)).invoke_async(&mut *connection).await.map_err(store_error)?;
        Ok(was == 1)
    }
}

#[cfg(test)]
mod tests {
    use sendfleet_protocol::{Channel, Content, SendOptions};

    use super::*;

    use sendfleet_test_support::redis_url;

    /// A store under a unique prefix, and a guard deleting its keys.
    struct TestStore {
        store: FallbackStore,
        pool: sendfleet_redis::RedisPool,
        prefix: String,
    }

    impl TestStore {
        fn new() -> TestStore {
            let pool = sendfleet_redis::RedisPool::from(
                deadpool_redis::Config::from_url(redis_url())
                    .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                    .expect("redis pool"),
            );
            let prefix = format!("sft-fbstore-{}", uuid::Uuid::new_v4().simple());
            TestStore { store: FallbackStore::new(pool.clone(), &prefix), pool, prefix }
        }

        /// A second store on its own pool: another process, as far as Redis can tell.
        fn other_process(&self) -> FallbackStore {
            let pool = sendfleet_redis::RedisPool::from(
                deadpool_redis::Config::from_url(redis_url())
                    .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                    .expect("redis pool"),
            );
            FallbackStore::new(pool, &self.prefix)
        }

        async fn raw(&self, message_id: &str) -> Option<Vec<u8>> {
            let mut connection = self.pool.get().await.unwrap();
            redis::cmd("GET").arg(self.store.key(message_id)).query_async(&mut *connection).await.unwrap()
        }

        async fn ttl(&self, message_id: &str) -> i64 {
            let mut connection = self.pool.get().await.unwrap();
            redis::cmd("TTL").arg(self.store.key(message_id)).query_async(&mut *connection).await.unwrap()
        }

        async fn cleanup(self) {
            sendfleet_test_support::delete_redis_keys(&self.prefix).await;
        }
    }

    fn sms(id: &str) -> SendJob {
        SendJob {
            priority: Default::default(),
            schema_version: 1,
            message_id: format!("{id}.sms"),
            provider: "sms".into(),
            channel: Channel::Sms,
            to: "+15550000001".into(),
            sender: "ACME".into(),
            content: Content::Text { text: "plain".into(), suggestions: vec![] },
            options: SendOptions::default(),
            fallback: None,
            metadata: Default::default(),
            trace_id: "t".into(),
            attempts: 0,
            first_attempt_at_ms: None,
            created_at_ms: 1,
            fallback_for: Some(id.into()),
        }
    }

    const TTL: Duration = Duration::from_secs(600);
    const CLAIM: Duration = Duration::from_secs(30);

    fn claimed(taken: Taken) -> Claim {
        match taken {
            Taken::Claimed(claim) => claim,
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exactly_one_of_many_concurrent_claimers_gets_the_job() {
        let t = TestStore::new();
        let other = t.other_process();
        for round in 0..20 {
            let id = format!("m-{round}");
            assert_eq!(t.store.arm(&id, &sms(&id), TTL).await.unwrap(), ArmState::Armed);
            let takers = (0..32).map(|i| {
                let store = if i % 2 == 0 { t.store.clone() } else { other.clone() };
                let id = id.clone();
                tokio::spawn(async move { store.claim(&id, CLAIM).await.unwrap() })
            });
            let taken: Vec<Taken> =
                futures_util::future::join_all(takers).await.into_iter().map(Result::unwrap).collect();
            let claims: Vec<&Taken> = taken.iter().filter(|t| matches!(t, Taken::Claimed(_))).collect();
            assert_eq!(claims.len(), 1, "round {round}: {taken:?}");
            let Taken::Claimed(claim) = claims[0] else { unreachable!() };
            assert_eq!(*claim.job, sms(&id), "the job comes back whole");
            assert!(!claim.reclaimed);
            // The others hear "in progress" until the claim's deadline, not "fired": the
            // SMS is not confirmed yet.
            for t in taken.iter().filter(|t| !matches!(t, Taken::Claimed(_))) {
                assert!(
                    matches!(t, Taken::InProgress { retry_after } if *retry_after <= CLAIM && *retry_after > CLAIM / 2),
                    "{t:?}"
                );
            }
        }
        t.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_keeps_the_job_until_marked_and_a_released_one_is_claimed_again() {
        let t = TestStore::new();
        assert_eq!(t.store.claim("m", CLAIM).await.unwrap(), Taken::NotArmed);
        t.store.arm("m", &sms("m"), TTL).await.unwrap();
        let claim = claimed(t.store.claim("m", CLAIM).await.unwrap());
        let raw = t.raw("m").await.unwrap();
        assert_eq!(raw[0], b'C', "claimed, the job still in Redis");
        assert!(raw.windows(claim.token.len()).any(|w| w == claim.token.as_bytes()), "with our token");
        assert!(t.ttl("m").await > 500, "the claim keeps the TTL");
        // A redelivered RCS job arming meanwhile neither re-arms nor sends the RCS.
        assert_eq!(t.store.arm("m", &sms("m"), TTL).await.unwrap(), ArmState::InProgress);
        assert_eq!(t.raw("m").await.unwrap(), raw, "arming left the claim alone");
        // The publish failed: release it; the next trigger claims it at once.
        assert_eq!(t.store.release("m", &claim.token).await.unwrap(), Settled::Done);
        assert_eq!(t.raw("m").await.unwrap()[0], b'A');
        let again = claimed(t.store.claim("m", CLAIM).await.unwrap());
        assert_eq!(again.job, claim.job);
        assert_ne!(again.token, claim.token, "a token per claim");
        assert_eq!(t.store.mark_fired("m", &again.token).await.unwrap(), Settled::Done);
        assert_eq!(t.raw("m").await.as_deref(), Some(&b"F"[..]), "a tombstone, not a deleted key");
        assert!(t.ttl("m").await > 500, "the tombstone keeps the TTL");
        assert_eq!(t.store.mark_fired("m", &again.token).await.unwrap(), Settled::Fired, "once");
        // A redelivered RCS job arming again must not bring a second SMS back.
        assert_eq!(t.store.arm("m", &again.job, TTL).await.unwrap(), ArmState::AlreadyFired);
        assert_eq!(t.store.claim("m", CLAIM).await.unwrap(), Taken::AlreadyFired);
        t.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_past_its_deadline_is_taken_over_and_the_stale_claimer_cannot_settle_it() {
        let t = TestStore::new();
        let short = Duration::from_millis(150);
        t.store.arm("s", &sms("s"), TTL).await.unwrap();
        // The first claimer stalls (or died) past its deadline.
        let stale = claimed(t.store.claim("s", short).await.unwrap());
        assert!(matches!(t.store.claim("s", short).await.unwrap(), Taken::InProgress { .. }));
        tokio::time::sleep(short + Duration::from_millis(50)).await;
        let fresh = claimed(t.other_process().claim("s", CLAIM).await.unwrap());
        assert!(fresh.reclaimed, "taken over, not armed");
        assert_eq!(fresh.job, stale.job, "the same job");
        let held = t.raw("s").await.unwrap();
        // The stale claimer wakes up: neither its release nor its mark touches the new claim.
        assert_eq!(t.store.release("s", &stale.token).await.unwrap(), Settled::OtherClaim);
        assert_eq!(t.store.mark_fired("s", &stale.token).await.unwrap(), Settled::OtherClaim);
        assert_eq!(t.raw("s").await.unwrap(), held, "the newer claim is untouched");
        assert!(matches!(t.store.claim("s", CLAIM).await.unwrap(), Taken::InProgress { .. }), "still in progress");
        // Once the new claimer is done, the stale one still cannot undo it.
        assert_eq!(t.store.mark_fired("s", &fresh.token).await.unwrap(), Settled::Done);
        assert_eq!(t.store.release("s", &stale.token).await.unwrap(), Settled::Fired);
        assert_eq!(t.store.claim("s", CLAIM).await.unwrap(), Taken::AlreadyFired);
        // Released by the newer claimer: the stale one cannot mark it fired either.
        t.store.arm("r", &sms("r"), TTL).await.unwrap();
        let stale = claimed(t.store.claim("r", short).await.unwrap());
        tokio::time::sleep(short + Duration::from_millis(50)).await;
        let fresh = claimed(t.store.claim("r", CLAIM).await.unwrap());
        assert_eq!(t.store.release("r", &fresh.token).await.unwrap(), Settled::Done);
        assert_eq!(t.store.mark_fired("r", &stale.token).await.unwrap(), Settled::Armed);
        assert_eq!(t.raw("r").await.unwrap()[0], b'A', "still armed for the next trigger");
        t.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disarm_beats_later_failures_and_claims() {
        let t = TestStore::new();
        t.store.arm("d", &sms("d"), TTL).await.unwrap();
        // Arming again (a retried RCS job) keeps one armed value and refreshes its TTL.
        assert_eq!(t.store.arm("d", &sms("d"), Duration::from_secs(900)).await.unwrap(), ArmState::Armed);
        assert!(t.ttl("d").await > 800);
        assert!(t.store.disarm("d").await.unwrap());
        assert!(!t.store.disarm("d").await.unwrap(), "only once");
        assert_eq!(t.store.claim("d", CLAIM).await.unwrap(), Taken::Disarmed, "a late failure report sends nothing");
        assert_eq!(t.store.arm("d", &sms("d"), TTL).await.unwrap(), ArmState::Disarmed);
        // Delivered while claimed: disarmed; the claimer's release does not resurrect it
        // and its mark fired leaves the tombstone.
        t.store.arm("r", &sms("r"), TTL).await.unwrap();
        let claim = claimed(t.store.claim("r", CLAIM).await.unwrap());
        assert!(t.store.disarm("r").await.unwrap(), "a claimed fallback is disarmed");
        assert_eq!(t.store.release("r", &claim.token).await.unwrap(), Settled::Disarmed);
        assert_eq!(t.store.mark_fired("r", &claim.token).await.unwrap(), Settled::Disarmed);
        assert_eq!(t.raw("r").await.as_deref(), Some(&b"D"[..]));
        assert_eq!(t.store.claim("r", CLAIM).await.unwrap(), Taken::Disarmed);
        t.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreadable_value_is_reported_not_fired() {
        let t = TestStore::new();
        let mut connection = t.pool.get().await.unwrap();
        let _: () =
            redis::cmd("SET").arg(t.store.key("bad")).arg("Agarbage").query_async(&mut *connection).await.unwrap();
        let err = t.store.claim("bad", CLAIM).await.unwrap_err();
        assert!(err.to_string().contains("bad"), "{err}");
        // Given back as it was: the next trigger hears the same error, not "in progress".
        assert_eq!(t.raw("bad").await.as_deref(), Some(&b"Agarbage"[..]));
        assert!(matches!(t.store.claim("bad", CLAIM).await, Err(FallbackError::Corrupt { .. })));
        let _: () = redis::cmd("SET").arg(t.store.key("c")).arg("Cjunk").query_async(&mut *connection).await.unwrap();
        assert!(matches!(t.store.claim("c", CLAIM).await, Err(FallbackError::Corrupt { .. })));
        drop(connection);
        t.cleanup().await;
    }
}

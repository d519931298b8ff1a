//! The fallback record in Redis.
//!
//! One key per RCS message, `<prefix>:fallback:<message id>`, whose value is one of
//! - `A<MessagePack SMS job>`: armed;
//! - `F`: fired (the SMS job was taken to be published);
//! - `D`: disarmed (the RCS message was delivered or seen).
//!
//! Every transition is one Lua script, so it is atomic against every other worker and
//! callback-ingest instance. Taking leaves the `F` tombstone rather than deleting the
//! key (a plain GETDEL): a redelivered or retried RCS job arms again before it sends,
//! and without the tombstone it would find nothing and arm a second SMS.

use std::time::Duration;

use sendfleet_protocol::{SendJob, decode, encode};

use crate::FallbackError;

const ARMED: u8 = b'A';
const FIRED: &[u8] = b"F";
const DISARMED: &[u8] = b"D";

/// Arms unless the key exists; refreshes the TTL of an armed value. Returns `new`, or
/// the first letter of the existing state.
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

/// Takes an armed value, leaving the fired tombstone; returns the previous value.
const LUA_TAKE: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 1) == 'A' then
  redis.call('SET', KEYS[1], 'F', 'KEEPTTL')
end
return v
";

/// Puts a taken value back, but only over our own tombstone (or a key that expired
/// meanwhile); a disarm that happened in between wins.
const LUA_RESTORE: &str = r"
local v = redis.call('GET', KEYS[1])
if v == 'F' then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
";

/// Disarms an armed value; returns 1 if it was armed.
const LUA_DISARM: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 1) == 'A' then
  redis.call('SET', KEYS[1], 'D', 'KEEPTTL')
  return 1
end
return 0
";

/// What arming found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmState {
    /// Armed now, or already armed by an earlier attempt (TTL refreshed): send the RCS.
    Armed,
    /// The fallback was already fired: do not send the RCS message again.
    AlreadyFired,
    /// The RCS message was already delivered or seen.
    Disarmed,
}

/// What a take found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Taken {
    /// The armed job, now ours to publish.
    Job(Box<SendJob>),
    /// Someone fired it before.
    AlreadyFired,
    /// Delivered or seen before.
    Disarmed,
    /// Never armed, or expired.
    NotArmed,
}

/// The fallback record. Cheap to clone.
#[derive(Clone)]
pub struct FallbackStore {
    pool: deadpool_redis::Pool,
    prefix: String,
    arm: redis::Script,
    take: redis::Script,
    restore: redis::Script,
    disarm: redis::Script,
}

impl FallbackStore {
    /// A store writing `<key_prefix>:fallback:<message id>` keys.
    pub fn new(pool: deadpool_redis::Pool, key_prefix: &str) -> FallbackStore {
        FallbackStore {
            pool,
            prefix: format!("{key_prefix}:fallback:"),
            arm: redis::Script::new(LUA_ARM),
            take: redis::Script::new(LUA_TAKE),
            restore: redis::Script::new(LUA_RESTORE),
            disarm: redis::Script::new(LUA_DISARM),
        }
    }

    fn key(&self, message_id: &str) -> String {
        format!("{}{message_id}", self.prefix)
    }

    async fn connection(&self) -> Result<deadpool_redis::Connection, FallbackError> {
        self.pool.get().await.map_err(|e| FallbackError::Store(e.to_string()))
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
            .map_err(|e| FallbackError::Store(e.to_string()))?;
        Ok(match state.as_str() {
            "F" => ArmState::AlreadyFired,
            "D" => ArmState::Disarmed,
            _ => ArmState::Armed,
        })
    }

    /// Takes the armed job (exactly one caller gets it), leaving the fired tombstone.
    pub(crate) async fn take(&self, message_id: &str) -> Result<Taken, FallbackError> {
        let mut connection = self.connection().await?;
        let value: Option<Vec<u8>> = self
            .take
            .key(self.key(message_id))
            .invoke_async(&mut *connection)
            .await
            .map_err(|e| FallbackError::Store(e.to_string()))?;
        Ok(match value {
            None => Taken::NotArmed,
            Some(value) if value.first() == Some(&ARMED) => {
                let job = decode::<SendJob>(&value[1..])
                    .map_err(|e| FallbackError::Corrupt { message_id: message_id.to_owned(), reason: e.to_string() })?;
                Taken::Job(Box::new(job))
            }
            Some(value) if value == FIRED => Taken::AlreadyFired,
            Some(value) if value == DISARMED => Taken::Disarmed,
            Some(_) => Taken::NotArmed,
        })
    }

    /// Puts a taken job back after its publish failed, so the next trigger fires it.
    pub(crate) async fn restore(&self, message_id: &str, sms: &SendJob, ttl: Duration) -> Result<(), FallbackError> {
        let mut value = vec![ARMED];
        value.extend_from_slice(&encode(sms));
        let mut connection = self.connection().await?;
        let _: i64 = self
            .restore
            .key(self.key(message_id))
            .arg(value)
            .arg(ttl.as_secs().max(1))
            .invoke_async(&mut *connection)
            .await
            .map_err(|e| FallbackError::Store(e.to_string()))?;
        Ok(())
    }

    /// Disarms: the RCS message got through. Returns whether a fallback was armed.
    pub async fn disarm(&self, message_id: &str) -> Result<bool, FallbackError> {
        let mut connection = self.connection().await?;
        let was: i64 = self
            .disarm
            .key(self.key(message_id))
            .invoke_async(&mut *connection)
            .await
            .map_err(|e| FallbackError::Store(e.to_string()))?;
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
        pool: deadpool_redis::Pool,
        prefix: String,
    }

    impl TestStore {
        fn new() -> TestStore {
            let pool = deadpool_redis::Config::from_url(redis_url())
                .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                .expect("redis pool");
            let prefix = format!("sft-fbstore-{}", uuid::Uuid::new_v4().simple());
            TestStore { store: FallbackStore::new(pool.clone(), &prefix), pool, prefix }
        }

        /// A second store on its own pool: another process, as far as Redis can tell.
        fn other_process(&self) -> FallbackStore {
            let pool = deadpool_redis::Config::from_url(redis_url())
                .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                .expect("redis pool");
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exactly_one_of_many_concurrent_takers_gets_the_job() {
        let t = TestStore::new();
        let other = t.other_process();
        for round in 0..20 {
            let id = format!("m-{round}");
            assert_eq!(t.store.arm(&id, &sms(&id), TTL).await.unwrap(), ArmState::Armed);
            let takers = (0..32).map(|i| {
                let store = if i % 2 == 0 { t.store.clone() } else { other.clone() };
                let id = id.clone();
                tokio::spawn(async move { store.take(&id).await.unwrap() })
            });
            let taken: Vec<Taken> =
                futures_util::future::join_all(takers).await.into_iter().map(Result::unwrap).collect();
            let jobs: Vec<&Taken> = taken.iter().filter(|t| matches!(t, Taken::Job(_))).collect();
            assert_eq!(jobs.len(), 1, "round {round}: {taken:?}");
            assert_eq!(jobs[0], &Taken::Job(Box::new(sms(&id))), "the job comes back whole");
            assert!(taken.iter().filter(|t| !matches!(t, Taken::Job(_))).all(|t| *t == Taken::AlreadyFired));
        }
        t.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restored_job_is_taken_again_and_a_fired_one_is_not_rearmed() {
        let t = TestStore::new();
        assert_eq!(t.store.take("m").await.unwrap(), Taken::NotArmed);
        t.store.arm("m", &sms("m"), TTL).await.unwrap();
        let Taken::Job(job) = t.store.take("m").await.unwrap() else { panic!("armed job") };
        assert_eq!(t.raw("m").await.as_deref(), Some(FIRED), "a tombstone, not a deleted key");
        assert!(t.ttl("m").await > 500, "the tombstone keeps the TTL");
        // The publish failed: put it back; the next trigger gets it.
        t.store.restore("m", &job, TTL).await.unwrap();
        assert_eq!(t.store.take("m").await.unwrap(), Taken::Job(job.clone()));
        // A redelivered RCS job arming again must not bring a second SMS back.
        assert_eq!(t.store.arm("m", &job, TTL).await.unwrap(), ArmState::AlreadyFired);
        assert_eq!(t.store.take("m").await.unwrap(), Taken::AlreadyFired);
        t.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disarm_beats_later_failures_and_restores() {
        let t = TestStore::new();
        t.store.arm("d", &sms("d"), TTL).await.unwrap();
        // Arming again (a retried RCS job) keeps one armed value and refreshes its TTL.
        assert_eq!(t.store.arm("d", &sms("d"), Duration::from_secs(900)).await.unwrap(), ArmState::Armed);
        assert!(t.ttl("d").await > 800);
        assert!(t.store.disarm("d").await.unwrap());
        assert!(!t.store.disarm("d").await.unwrap(), "only once");
        assert_eq!(t.store.take("d").await.unwrap(), Taken::Disarmed, "a late failure report sends nothing");
        assert_eq!(t.store.arm("d", &sms("d"), TTL).await.unwrap(), ArmState::Disarmed);
        // A restore racing a disarm does not resurrect the fallback.
        t.store.arm("r", &sms("r"), TTL).await.unwrap();
        let Taken::Job(job) = t.store.take("r").await.unwrap() else { panic!("armed job") };
        assert!(!t.store.disarm("r").await.unwrap(), "fired, not armed");
        t.store.restore("r", &job, TTL).await.unwrap();
        assert_eq!(t.store.take("r").await.unwrap(), Taken::Job(job), "restored over our own tombstone");
        t.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreadable_value_is_reported_not_fired() {
        let t = TestStore::new();
        let mut connection = t.pool.get().await.unwrap();
        let _: () =
            redis::cmd("SET").arg(t.store.key("bad")).arg("Agarbage").query_async(&mut *connection).await.unwrap();
        let err = t.store.take("bad").await.unwrap_err();
        assert!(err.to_string().contains("bad"), "{err}");
        drop(connection);
        t.cleanup().await;
    }
}

//! Redis connections for every Redis user of the fleet (rate leases, fleet permits,
//! sent records, the fallback store, the capability cache, the status store).
//!
//! [`RedisPool`] is one pool type over two set-ups: a single Redis (`redis.url`) or a
//! primary managed by Redis Sentinel (`redis.sentinels` and `redis.master_name`). With
//! Sentinel, every new connection asks the Sentinels for the current primary, and a
//! pooled connection is checked with `ROLE` before it is handed out again: a connection
//! to a node that is no longer the primary (it failed, or came back as a replica after a
//! failover) is dropped, so a failover is followed without a restart.

use std::{
    ops::{Deref, DerefMut},
    sync::Arc,
    time::{Duration, Instant},
};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use redis::{
    IntoConnectionInfo, RedisError, Value,
    aio::MultiplexedConnection,
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};
use sendfleet_config::RedisConfig;

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum RedisPoolError {
    /// The pool could not be built from the config (caught by config validation first).
    #[error("redis: {0}")]
    Config(String),
    /// No connection: Redis (or every Sentinel) unreachable, or the pool timed out.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
}

/// A pool of multiplexed connections to the fleet's Redis primary.
#[derive(Clone)]
pub enum RedisPool {
    /// One Redis at a fixed address.
    Direct(deadpool_redis::Pool),
    /// The primary Redis Sentinel names, followed across failovers; writes that must
    /// survive a failover wait for its replica.
    Sentinel(managed::Pool<SentinelManager>, Arc<ReplicaWait>),
}

impl From<deadpool_redis::Pool> for RedisPool {
    fn from(pool: deadpool_redis::Pool) -> RedisPool {
        RedisPool::Direct(pool)
    }
}

impl RedisPool {
    /// The pool for `config`, at most `size` connections.
    pub fn new(config: &RedisConfig, size: usize) -> Result<RedisPool, RedisPoolError> {
        if config.sentinels.is_empty() {
            let mut pool_config = deadpool_redis::Config::from_url(config.url.expose());
            pool_config.pool = Some(deadpool_redis::PoolConfig::new(size));
            let pool = pool_config
                .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                .map_err(|e| RedisPoolError::Config(format!("{e} ({})", config.url)))?;
            return Ok(RedisPool::Direct(pool));
        }
        // The nodes' own settings (password, database) come from `redis.url`.
        let node = config.url.expose().into_connection_info().map_err(|e| RedisPoolError::Config(e.to_string()))?;
        let sentinels: Vec<String> = config.sentinels.iter().map(|url| url.expose().to_owned()).collect();
        let client = SentinelClient::build(
            sentinels,
            config.master_name.clone(),
            Some(SentinelNodeConnectionInfo::default().set_redis_connection_info(node.redis_settings().clone())),
            SentinelServerType::Master,
        )
        .map_err(|e| RedisPoolError::Config(format!("redis.sentinels: {e}")))?;
        let manager = SentinelManager { client: tokio::sync::Mutex::new(client) };
        let pool = managed::Pool::builder(manager)
            .max_size(size)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| RedisPoolError::Config(e.to_string()))?;
        Ok(RedisPool::Sentinel(pool, Arc::default()))
    }

    /// Waits until a replica holds what `connection` wrote so far (`WAIT 1`), where a
    /// replica may take over (a Sentinel set-up; elsewhere it returns at once).
    /// Replication is asynchronous: a write the primary had not passed on before it
    /// failed is gone on the promoted replica. When no replica answers within
    /// [`REPLICA_WAIT`] (none is connected, so no failover can go to one) the write
    /// stands anyway, and for [`REPLICA_ABSENT_FOR`] the wait is skipped: a primary
    /// without a replica (the old one still down after a failover) would otherwise
    /// spend [`REPLICA_WAIT`] on every such write.
    pub async fn wait_for_replica(&self, connection: &mut RedisConnection) -> Result<(), RedisError> {
        let RedisPool::Sentinel(_, replica) = self else { return Ok(()) };
        if replica.absent_until.lock().is_some_and(|until| Instant::now() < until) {
            return Ok(());
        }
        let acknowledged: i64 =
            redis::cmd("WAIT").arg(1).arg(REPLICA_WAIT.as_millis() as u64).query_async(&mut **connection).await?;
        if acknowledged == 0 {
            *replica.absent_until.lock() = Some(Instant::now() + REPLICA_ABSENT_FOR);
            tracing::warn!("redis: no replica acknowledged a write within {REPLICA_WAIT:?}; writes go on unreplicated");
        }
        Ok(())
    }

    /// A connection to the primary.
    pub async fn get(&self) -> Result<RedisConnection, RedisPoolError> {
        match self {
            RedisPool::Direct(pool) => {
                pool.get().await.map(RedisConnection::Direct).map_err(|e| RedisPoolError::Unavailable(e.to_string()))
            }
            RedisPool::Sentinel(pool, _) => {
                pool.get().await.map(RedisConnection::Sentinel).map_err(|e| RedisPoolError::Unavailable(e.to_string()))
            }
        }
    }
}

/// How long a write waits for a replica's acknowledgement. A replica on the same network
/// answers in about a millisecond; the wait must stay well inside the rate-lease horizon
/// (50 ms), or the slots a lease waits for are past before they can be used.
pub const REPLICA_WAIT: Duration = Duration::from_millis(20);

/// After a wait no replica answered, how long writes skip the wait.
pub const REPLICA_ABSENT_FOR: Duration = Duration::from_secs(1);

/// Whether the primary's replica answers lately (see [`RedisPool::wait_for_replica`]).
#[derive(Debug, Default)]
pub struct ReplicaWait {
    absent_until: parking_lot::Mutex<Option<Instant>>,
}

/// A pooled connection; dereferences to the multiplexed connection commands run on.
pub enum RedisConnection {
    /// From a direct pool.
    Direct(deadpool_redis::Connection),
    /// From a Sentinel pool.
    Sentinel(managed::Object<SentinelManager>),
}

impl Deref for RedisConnection {
    type Target = MultiplexedConnection;

    fn deref(&self) -> &MultiplexedConnection {
        match self {
            RedisConnection::Direct(connection) => connection,
            RedisConnection::Sentinel(connection) => connection,
        }
    }
}

impl DerefMut for RedisConnection {
    fn deref_mut(&mut self) -> &mut MultiplexedConnection {
        match self {
            RedisConnection::Direct(connection) => connection,
            RedisConnection::Sentinel(connection) => connection,
        }
    }
}

/// The longest a new connection to the primary may take.
const CONNECT_TIMEOUT: std::time::Duration = Duration::from_secs(2);
/// The longest a command may wait for its answer (the slowest, `WAIT`, takes 100 ms).
const RESPONSE_TIMEOUT: std::time::Duration = Duration::from_secs(5);

/// Makes connections to the primary the Sentinels name, and keeps only those that are
/// still to the primary.
pub struct SentinelManager {
    client: tokio::sync::Mutex<SentinelClient>,
}

impl managed::Manager for SentinelManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        // The primary's address is asked for each new connection; the lock only covers
        // the Sentinel lookup, not the connection to the primary.
        let primary = self.client.lock().await.async_get_client().await?;
        // Bounded: a primary that died mid-command must fail the command, not hold it
        // (and the task waiting on it) for ever.
        let bounded = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        primary.get_multiplexed_async_connection_with_config(&bounded).await.map_err(|e| {
            tracing::debug!(primary = %primary.get_connection_info().addr(), error = %e, "redis: cannot reach the primary the Sentinels name");
            e
        })
    }

    async fn recycle(&self, connection: &mut MultiplexedConnection, _: &Metrics) -> RecycleResult<RedisError> {
        let role: Vec<Value> = redis::cmd("ROLE").query_async(connection).await?;
        if is_primary(&role) {
            Ok(())
        } else {
            tracing::info!("redis: a pooled connection is no longer to the primary; dropped");
            Err(RecycleError::message("not the primary any more"))
        }
    }
}

/// Whether a `ROLE` answer is a primary's (`["master", offset, replicas]`).
fn is_primary(role: &[Value]) -> bool {
    match role.first() {
        Some(Value::BulkString(name)) => name.as_slice() == b"master",
        Some(Value::SimpleString(name)) => name == "master",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_primarys_role_keeps_a_connection() {
        assert!(is_primary(&[Value::BulkString(b"master".to_vec()), Value::Int(0)]));
        assert!(!is_primary(&[Value::BulkString(b"slave".to_vec())]));
        assert!(!is_primary(&[]));
    }
}

//! A unique broker prefix per test, cleaned up at the end.

use sendfleet_broker::{
    Topology,
    lapin::{
        Connection, ConnectionProperties,
        options::{ExchangeDeleteOptions, QueueDeleteOptions},
    },
};
use sendfleet_config::{BrokerConfig, BrokerUrls, QueueType};

/// A test's private slice of the broker: every name starts with `prefix`.
pub struct Namespace {
    /// The prefix (`sft-<test>-<random>`).
    pub prefix: String,
    /// Provider ids whose job queues exist.
    pub providers: Vec<String>,
    /// The broker's nodes (one: the test broker).
    pub urls: Vec<String>,
    /// Classic on the test broker, quorum on a cluster.
    pub queue_type: QueueType,
    cleaned: bool,
}

impl Namespace {
    /// A fresh prefix for a test called `name`, with classic queues on the test broker.
    pub fn new(name: &str, providers: &[&str]) -> Namespace {
        Namespace::on_broker(name, providers, &[], QueueType::Classic)
    }

    /// A fresh prefix on the broker whose nodes are `urls` (none: the test broker).
    pub fn on_broker(name: &str, providers: &[&str], urls: &[String], queue_type: QueueType) -> Namespace {
        let short = uuid::Uuid::new_v4().simple().to_string();
        Namespace {
            prefix: format!("sft-{name}-{}", &short[..8]),
            providers: providers.iter().map(|p| (*p).to_owned()).collect(),
            urls: if urls.is_empty() { vec![crate::amqp_url()] } else { urls.to_vec() },
            queue_type,
            cleaned: false,
        }
    }

    /// The broker config of this namespace.
    pub fn broker_config(&self) -> BrokerConfig {
        BrokerConfig {
            url: BrokerUrls::list(self.urls.iter().cloned()),
            prefix: self.prefix.clone(),
            queue_type: self.queue_type,
            ..BrokerConfig::default()
        }
    }

    /// The topology of this namespace.
    pub fn topology(&self) -> Topology {
        Topology::new(&self.broker_config())
    }

    /// A plain connection to the first of the broker's nodes that answers.
    pub async fn connect(&self) -> Connection {
        connect_any(&self.urls)
            .await
            .expect("RabbitMQ must run on 127.0.0.1:5672 for the tests (rabbitmq-server -detached)")
    }

    /// Messages waiting in a queue of this namespace.
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let connection = self.connect().await;
        let channel = connection.create_channel().await.expect("channel");
        let options = sendfleet_broker::lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        let depth = channel
            .queue_declare(queue.into(), options, Default::default())
            .await
            .map(|q| q.message_count())
            .unwrap_or(0);
        drop(connection.close(200, "".into()).await);
        depth
    }

    /// Deletes every queue and exchange of this namespace.
    pub async fn cleanup(mut self) {
        delete_all(&self.prefix, &self.providers, &self.urls).await;
        self.cleaned = true;
    }
}

/// Deletes every Redis key under `<prefix>:`, best effort. SCAN, not KEYS: the test Redis
/// may hold many keys, and KEYS blocks it (and timed out) on a large one.
pub async fn delete_redis_keys(prefix: &str) {
    let Ok(client) = redis::Client::open(crate::redis_url()) else { return };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else { return };
    let mut cursor: u64 = 0;
    loop {
        let scanned: Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await;
        let Ok((next, keys)) = scanned else { return };
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut connection).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// A connection to the first of `urls` that answers (within 5 s each: a node shutting
/// down may accept the connection and never finish the handshake).
pub(crate) async fn connect_any(urls: &[String]) -> Option<Connection> {
    for url in urls {
        let connecting = Connection::connect(url, ConnectionProperties::default());
        if let Ok(Ok(connection)) = tokio::time::timeout(std::time::Duration::from_secs(5), connecting).await {
            return Some(connection);
        }
    }
    None
}

async fn delete_all(prefix: &str, providers: &[String], urls: &[String]) {
    delete_redis_keys(prefix).await;
    let Some(connection) = connect_any(urls).await else { return };
    let topology = Topology::new(&BrokerConfig { prefix: prefix.to_owned(), ..BrokerConfig::default() });
    if let Ok(channel) = connection.create_channel().await {
        for queue in topology.all_queues(providers.iter().map(String::as_str)) {
            drop(channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await);
        }
        for exchange in topology.all_exchanges() {
            drop(channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await);
        }
    }
    drop(connection.close(200, "".into()).await);
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        // A test that panicked before `cleanup`: clean up on a thread of its own, since
        // Drop cannot await and may run inside the test's runtime.
        let prefix = self.prefix.clone();
        let providers = self.providers.clone();
        let urls = self.urls.clone();
        let cleaner = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                runtime.block_on(delete_all(&prefix, &providers, &urls));
            }
        });
        drop(cleaner.join());
    }
}

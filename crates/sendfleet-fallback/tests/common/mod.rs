//! What the fallback integration tests share: a namespace on the real RabbitMQ and
//! Redis with an RCS and an SMS provider, and reports and jobs to fire.

#![allow(dead_code, reason = "each test binary uses part of it")]

use std::time::Duration;

use sendfleet_broker::{
    Topology,
    lapin::{Connection, options::BasicGetOptions},
};
use sendfleet_config::Config;
use sendfleet_protocol::{
    Channel, Content, Event, EventKind, ProviderErrorInfo, ProviderStatus, SendJob, SendOptions, SmsFallback,
};

use sendfleet_test_support::{Namespace, amqp_url, redis_url};

/// A TTL long enough for any test.
pub const TTL: Duration = Duration::from_secs(600);

/// A test namespace: config, a broker connection, the prefix to clean up.
pub struct Env {
    pub config: Config,
    pub connection: Connection,
    pub ns: Namespace,
}

impl Env {
    pub async fn new(name: &str) -> Env {
        let ns = Namespace::new(name, &["rcs", "sms"]);
        let prefix = &ns.prefix;
        let toml = format!(
            r#"
[broker]
url = "{}"
prefix = "{prefix}"
[redis]
url = "{}"
key_prefix = "{prefix}"
[[providers]]
id = "rcs"
kind = "infobip_rcs"
base_url = "http://127.0.0.1:9"
api_key_env = "K"
sender_ids = ["Agent"]
default_for_channel = true
[[providers]]
id = "sms"
kind = "infobip_sms"
base_url = "http://127.0.0.1:9"
api_key_env = "K"
sender_ids = ["ACME"]
default_for_channel = true
"#,
            amqp_url(),
            redis_url()
        );
        let config = Config::from_toml(&toml, &|_| Some("key".into()), &sendfleet_providers::VENDORS).expect("config");
        let connection = ns.connect().await;
        Env { config, connection, ns }
    }

    pub fn topology(&self) -> Topology {
        Topology::new(&self.config.broker)
    }

    pub async fn declare(&self, providers: &[&str]) {
        let channel = self.connection.create_channel().await.unwrap();
        let providers: Vec<String> = providers.iter().map(|p| (*p).to_owned()).collect();
        self.topology().declare(&channel, &providers).await.unwrap();
    }

    pub async fn drain(&self, queue: &str) -> Vec<Vec<u8>> {
        let channel = self.connection.create_channel().await.unwrap();
        let mut bodies = Vec::new();
        while let Ok(Some(message)) = channel.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await {
            bodies.push(message.delivery.data.clone());
        }
        bodies
    }

    pub fn redis_key(&self, message_id: &str) -> String {
        format!("{}:fallback:{message_id}", self.ns.prefix)
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    /// The fallback record's raw value.
    pub async fn raw(&self, message_id: &str) -> Option<Vec<u8>> {
        redis::cmd("GET").arg(self.redis_key(message_id)).query_async(&mut self.redis().await).await.unwrap()
    }

    pub async fn set_raw(&self, message_id: &str, value: &[u8]) {
        let () = redis::cmd("SET")
            .arg(self.redis_key(message_id))
            .arg(value)
            .query_async(&mut self.redis().await)
            .await
            .unwrap();
    }

    pub async fn cleanup(self) {
        drop(self.connection.close(200, "".into()).await);
        self.ns.cleanup().await;
    }
}

/// An RCS job with an SMS fallback.
pub fn rcs_job(id: &str) -> SendJob {
    SendJob {
        priority: Default::default(),
        schema_version: 1,
        message_id: id.into(),
        provider: "rcs".into(),
        channel: Channel::Rcs,
        to: "+919876543210".into(),
        sender: "Agent".into(),
        content: Content::Text { text: "rich".into(), suggestions: vec![] },
        options: SendOptions::default(),
        fallback: Some(SmsFallback {
            text: "plain".into(),
            sender: None,
            provider: None,
            regional: None,
            validity_period_seconds: None,
        }),
        metadata: [("k".to_owned(), "v".to_owned())].into(),
        trace_id: "trace-9".into(),
        attempts: 0,
        first_attempt_at_ms: None,
        created_at_ms: 1,
        fallback_for: None,
    }
}

/// A final RCS report that fires the fallback (error 7002).
pub fn not_capable_report(id: &str) -> Event {
    let mut event = Event::new(EventKind::Undelivered, "rcs", Channel::Rcs);
    event.message_id = Some(id.into());
    event.status = Some(ProviderStatus {
        group_id: 2,
        group_name: Some("UNDELIVERABLE".into()),
        id: 4,
        name: Some("UNDELIVERABLE_REJECTED_OPERATOR".into()),
        description: None,
    });
    event.error = Some(ProviderErrorInfo {
        group_id: 1,
        id: 7002,
        name: Some("EC_UNKNOWN_USER".into()),
        description: None,
        permanent: true,
    });
    // What the Infobip adapter says of error 7002.
    event.outcome = Some(sendfleet_protocol::DeliveryOutcome::UndeliverableNotCapable);
    event
}

//! What the callback-ingest integration tests share: callback-ingest running in-process
//! on port 0 against a test namespace on the real RabbitMQ and Redis.

#![allow(dead_code, reason = "each test binary uses part of it")]

use std::{sync::Arc, time::Duration};

use sendfleet_config::Config;
use sendfleet_test_support::{EventCollector, Namespace};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The callback token of the Infobip providers.
pub const TOKEN: &str = "ingest-test-token-0123456789";
/// JioCX's callback token.
pub const JIO_TOKEN: &str = "jiocx-test-token-0123456789";
/// JioCX's Basic auth password.
pub const JIO_PASSWORD: &str = "jio-basic-password";
/// Provider ids of the test config.
pub const PROVIDERS: [&str; 3] = ["ib-sms", "ib-rcs", "jio"];

/// A fixture body from `fixtures/infobip/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../fixtures/infobip/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// callback-ingest running in-process on port 0 against a namespace.
pub struct Ingest {
    /// The test's namespace (broker names and Redis keys).
    pub ns: Namespace,
    /// Every event published.
    pub events: EventCollector,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// A client without a timeout.
    pub client: reqwest::Client,
    /// The config it runs with.
    pub config: Arc<Config>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Ingest {
    /// Starts it with `max_body_bytes`, on the test broker unless `broker_url` says otherwise.
    pub async fn start(name: &str, broker_url: Option<String>, max_body_bytes: usize) -> Ingest {
        Ingest::start_with(name, broker_url, &format!("max_body_bytes = {max_body_bytes}")).await
    }

    /// Starts it with `callback_ingest` lines of its own (`max_in_flight = 2`, …).
    pub async fn start_with(name: &str, broker_url: Option<String>, callback_ingest: &str) -> Ingest {
        sendfleet_test_support::init_tracing();
        let ns = Namespace::new(name, &PROVIDERS);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind ingest");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let toml = format!(
            r#"
[broker]
url = "{url}"
prefix = "{prefix}"

[redis]
url = "{redis}"
key_prefix = "{prefix}"

[callback_ingest]
public_base_url = "{base}"
{callback_ingest}

[[providers]]
id = "ib-sms"
kind = "infobip_sms"
base_url = "http://127.0.0.1:9"
api_key_env = "KEY"
sender_ids = ["ACMEIN"]
callback_token_env = "TOKEN"

[[providers]]
id = "ib-rcs"
kind = "infobip_rcs"
base_url = "http://127.0.0.1:9"
api_key_env = "KEY"
sender_ids = ["AcmeRetailAgent"]
callback_token_env = "TOKEN"

[[providers]]
id = "jio"
kind = "jiocx_rcs"
base_url = "http://127.0.0.1:9"
api_key_env = "KEY"
sender_ids = ["AcmeRetailAgent"]
callback_token_env = "JIO_TOKEN"
callback_basic_auth = {{ username = "clevertap", password_env = "JIO_PASSWORD" }}
"#,
            url = broker_url.unwrap_or_else(sendfleet_test_support::amqp_url),
            redis = sendfleet_test_support::redis_url(),
            prefix = ns.prefix,
        );
        let lookup = |name: &str| match name {
            "KEY" => Some("api-key-0123".to_owned()),
            "TOKEN" => Some(TOKEN.to_owned()),
            "JIO_TOKEN" => Some(JIO_TOKEN.to_owned()),
            "JIO_PASSWORD" => Some(JIO_PASSWORD.to_owned()),
            _ => None,
        };
        let config = Arc::new(Config::from_toml(&toml, &lookup, &sendfleet_providers::VENDORS).expect("test config"));
        // The events queue must exist before the collector consumes it.
        let connection = ns.connect().await;
        let channel = connection.create_channel().await.expect("channel");
        ns.topology().declare(&channel, &config.provider_ids()).await.expect("declare");
        drop(connection.close(200, "".into()).await);
        let events = EventCollector::start(&ns.topology().events_queue()).await;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let run_config = config.clone();
        let task = tokio::spawn(async move {
            sendfleet_callback_ingest::run(run_config, listener, stop).await.expect("callback-ingest");
        });
        let ingest = Ingest { ns, events, base, client: reqwest::Client::new(), config, shutdown, task };
        assert!(ingest.wait_ready(Duration::from_secs(20)).await, "callback-ingest never became ready");
        ingest
    }

    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(response) = self.client.get(format!("{}/health", self.base)).send().await
                && response.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn url(&self, provider: &str, token: &str, kind: &str) -> String {
        format!("{}/callbacks/{provider}/{token}{kind}", self.base)
    }

    pub async fn post(&self, url: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self.client.post(url).header("content-type", "application/json").body(body).send().await;
        let response = response.expect("callback-ingest answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn metrics(&self) -> String {
        let response = self.client.get(format!("{}/metrics", self.base)).send().await.expect("metrics");
        response.text().await.unwrap_or_default()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        drop(tokio::time::timeout(Duration::from_secs(30), self.task).await);
        self.ns.cleanup().await;
    }
}

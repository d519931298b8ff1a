//! The whole fleet in-process, on port 0, against one namespace.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use sendfleet_broker::{Outgoing, Publisher};
use sendfleet_config::{Config, QueueType};
use sendfleet_mock_provider::{Behaviour, MockConfig, MockHandle};
use sendfleet_protocol::{SendRequest, encode};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{EventCollector, Namespace};

/// The API key the test providers use and the mock accepts.
pub const TEST_API_KEY: &str = "test-api-key-0123";
/// A second API key (`api_key_env = "TEST_JIOCX_API_KEY"`), for a provider on its own
/// mock with its own key.
pub const TEST_JIOCX_API_KEY: &str = "test-jiocx-key-4567";
/// The callback token of every test provider.
pub const TEST_CALLBACK_TOKEN: &str = "test-callback-token-0123456789";

/// What to start.
#[derive(Clone)]
pub struct FleetOptions {
    /// Test name (part of the prefix).
    pub name: &'static str,
    /// `[[providers]]` tables; `{mock}` is replaced by the mock's base URL.
    pub providers_toml: String,
    /// Provider ids (for queue clean-up).
    pub provider_ids: Vec<&'static str>,
    /// Extra top-level TOML (sections other than broker/callback_ingest/providers).
    pub extra_toml: String,
    /// The mock's initial behaviour.
    pub behaviour: Behaviour,
    /// Sender-workers to start.
    pub workers: usize,
    /// Start the dispatcher.
    pub dispatcher: bool,
    /// Start callback-ingest.
    pub ingest: bool,
    /// Redis the services use instead of the test default ([`crate::redis_url`]).
    pub redis_url: Option<String>,
    /// Redis Sentinels (`redis.sentinels`, master name `sendfleet`); with them the
    /// services reach the primary the Sentinels name.
    pub redis_sentinels: Vec<String>,
    /// Check destinations against their country's numbering plan
    /// (`dispatcher.check_numbering_plan`). Off by default: the suites send to fictional
    /// numbers (+1 555 …); the docs test runs the documented (valid) numbers with it on.
    pub check_numbering_plan: bool,
    /// The AMQP URLs of a RabbitMQ cluster's nodes: the services get them all as
    /// `broker.url` and declare quorum queues. Empty: classic queues on the test broker.
    pub cluster: Vec<String>,
}

impl FleetOptions {
    /// The shape of the load tests: one Infobip SMS provider `ib-sms` on the mock (the
    /// SMS default, requests time out after 2 s) with `keys` added to its table (rate,
    /// concurrency, sender ids, …), `workers` sender-workers, no delivery reports and no
    /// callback-ingest.
    pub fn sms_load(name: &'static str, keys: &str, workers: usize) -> FleetOptions {
        let providers_toml = format!(
            "[[providers]]\nid = \"ib-sms\"\nkind = \"infobip_sms\"\nbase_url = \"{{mock}}\"\n\
             api_key_env = \"TEST_API_KEY\"\ndefault_for_channel = true\nrequest_timeout_ms = 2000\n\
             callback_token_env = \"TEST_CALLBACK_TOKEN\"\n{keys}\n"
        );
        FleetOptions {
            providers_toml,
            provider_ids: vec!["ib-sms"],
            behaviour: Behaviour { delivery_reports: false, ..Behaviour::default() },
            workers,
            ingest: false,
            ..FleetOptions::infobip(name)
        }
    }

    /// An Infobip SMS provider (`ib-sms`, SMS default) and an Infobip RCS provider
    /// (`ib-rcs`, RCS default), both on the mock; one of each service.
    pub fn infobip(name: &'static str) -> FleetOptions {
        let providers_toml = r#"
[[providers]]
id = "ib-sms"
kind = "infobip_sms"
base_url = "{mock}"
api_key_env = "TEST_API_KEY"
sender_ids = ["ACMEIN"]
default_for_channel = true
rate_per_second = 4600
concurrency = 64
callback_token_env = "TEST_CALLBACK_TOKEN"
retry = { initial_delay_ms = 200, max_delay_ms = 2000 }

[[providers]]
id = "ib-rcs"
kind = "infobip_rcs"
base_url = "{mock}"
api_key_env = "TEST_API_KEY"
sender_ids = ["AcmeAgent"]
default_for_channel = true
rate_per_second = 4600
concurrency = 64
callback_token_env = "TEST_CALLBACK_TOKEN"
retry = { initial_delay_ms = 200, max_delay_ms = 2000 }
"#
        .to_owned();
        FleetOptions {
            name,
            providers_toml,
            provider_ids: vec!["ib-sms", "ib-rcs"],
            extra_toml: String::new(),
            behaviour: Behaviour::default(),
            workers: 1,
            dispatcher: true,
            ingest: true,
            redis_url: None,
            redis_sentinels: Vec::new(),
            check_numbering_plan: false,
            cluster: Vec::new(),
        }
    }
}

struct Service {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    ops: SocketAddr,
}

/// A running fleet.
pub struct Fleet {
    /// The namespace (prefix) of this fleet.
    pub ns: Namespace,
    /// The config every service runs with.
    pub config: Arc<Config>,
    /// The mock provider.
    pub mock: MockHandle,
    /// Every event published.
    pub events: EventCollector,
    /// callback-ingest's base URL (`http://127.0.0.1:<port>`), when started.
    pub ingest_url: Option<String>,
    /// The dispatcher's base URL (HTTP API, `/metrics`), when started.
    pub dispatcher_url: Option<String>,
    publisher: Publisher,
    _publisher_connection: sendfleet_broker::lapin::Connection,
    workers: Vec<Option<Service>>,
    others: Vec<Service>,
    mock_shutdown: CancellationToken,
}

/// The `[redis]` keys naming Sentinels (none: nothing).
fn sentinels_toml(sentinels: &[String]) -> String {
    if sentinels.is_empty() {
        return String::new();
    }
    let list: Vec<String> = sentinels.iter().map(|url| format!("\"{url}\"")).collect();
    format!("sentinels = [{}]\nmaster_name = \"sendfleet\"\n", list.join(", "))
}

impl Fleet {
    /// Starts the mock, declares the topology, starts the services and waits until each
    /// reports ready.
    pub async fn start(options: FleetOptions) -> Fleet {
        crate::init_tracing();
        let queue_type = if options.cluster.is_empty() { QueueType::Classic } else { QueueType::Quorum };
        let ns = Namespace::on_broker(options.name, &options.provider_ids, &options.cluster, queue_type);
        let mock_shutdown = CancellationToken::new();
        let ingest_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind ingest");
        let ingest_url = format!("http://{}", ingest_listener.local_addr().expect("addr"));
        let mock = sendfleet_mock_provider::start(
            TcpListener::bind("127.0.0.1:0").await.expect("bind mock"),
            MockConfig {
                twilio_auth_token: None,
                api_keys: vec![TEST_API_KEY.into()],
                default_dlr_url: None,
                behaviour: options.behaviour.clone(),
            },
            mock_shutdown.clone(),
        )
        .await
        .expect("start mock");

        let toml = format!(
            "{}\n[broker]\nurl = [{}]\nprefix = \"{}\"\nqueue_type = \"{}\"\n\n[redis]\nurl = \"{}\"\nkey_prefix = \"{}\"\n{}\n[callback_ingest]\npublic_base_url = \"{}\"\n{}",
            options.extra_toml,
            ns.urls.iter().map(|url| format!("\"{url}\"")).collect::<Vec<_>>().join(", "),
            ns.prefix,
            if queue_type == QueueType::Quorum { "quorum" } else { "classic" },
            options.redis_url.clone().unwrap_or_else(crate::redis_url),
            ns.prefix,
            sentinels_toml(&options.redis_sentinels),
            ingest_url,
            options.providers_toml.replace("{mock}", &mock.base_url()),
        );
        let lookup = |name: &str| match name {
            "TEST_API_KEY" => Some(TEST_API_KEY.to_owned()),
            "TEST_JIOCX_API_KEY" => Some(TEST_JIOCX_API_KEY.to_owned()),
            "TEST_CALLBACK_TOKEN" => Some(TEST_CALLBACK_TOKEN.to_owned()),
            _ => None,
        };
        let mut config = Config::from_toml(&toml, &lookup, &sendfleet_providers::VENDORS).expect("test config");
        // The suites send to fictional numbers (+1 555 …); the plan check has its own tests.
        config.dispatcher.check_numbering_plan = options.check_numbering_plan;
        let config = Arc::new(config);

        let connection = ns.connect().await;
        let declare = connection.create_channel().await.expect("channel");
        ns.topology().declare(&declare, &config.provider_ids()).await.expect("declare");
        let publisher = Publisher::open(&connection).await.expect("publisher");
        let events = EventCollector::start_on(&ns.urls, &ns.topology().events_queue()).await;

        let mut others = Vec::new();
        let mut dispatcher_url = None;
        if options.dispatcher {
            let service = start_service(config.clone(), |c, l, s| async move {
                sendfleet_dispatcher::run(c, l, s).await.expect("dispatcher");
            })
            .await;
            dispatcher_url = Some(format!("http://{}", service.ops));
            others.push(service);
        }
        let mut ingest = None;
        if options.ingest {
            let shutdown = CancellationToken::new();
            let (c, s) = (config.clone(), shutdown.clone());
            let ops = ingest_listener.local_addr().expect("addr");
            let task = tokio::spawn(async move {
                sendfleet_callback_ingest::run(c, ingest_listener, s).await.expect("callback-ingest");
            });
            others.push(Service { shutdown, task, ops });
            ingest = Some(ingest_url);
        }
        let mut fleet = Fleet {
            ns,
            config,
            mock,
            events,
            ingest_url: ingest,
            dispatcher_url,
            publisher,
            _publisher_connection: connection,
            workers: Vec::new(),
            others,
            mock_shutdown,
        };
        for _ in 0..options.workers {
            fleet.start_worker().await;
        }
        for service in &fleet.others {
            wait_ready(service.ops).await;
        }
        fleet
    }

    /// Starts one more sender-worker; returns its index.
    pub async fn start_worker(&mut self) -> usize {
        let worker = start_service(self.config.clone(), |c, l, s| async move {
            sendfleet_sender_worker::run(c, l, s).await.expect("sender-worker");
        })
        .await;
        wait_ready(worker.ops).await;
        self.workers.push(Some(worker));
        self.workers.len() - 1
    }

    /// Stops worker `index` gracefully (SIGTERM semantics) and waits for it.
    pub async fn stop_worker(&mut self, index: usize) {
        if let Some(worker) = self.workers.get_mut(index).and_then(Option::take) {
            worker.shutdown.cancel();
            drop(tokio::time::timeout(Duration::from_secs(60), worker.task).await);
        }
    }

    /// Aborts worker `index` without draining (the closest in-process analogue of a
    /// crash: its connection drops with jobs unacked).
    pub fn abort_worker(&mut self, index: usize) {
        if let Some(worker) = self.workers.get_mut(index).and_then(Option::take) {
            worker.task.abort();
        }
    }

    /// The ops address (`/metrics`, `/health`) of worker `index`.
    pub fn worker_ops(&self, index: usize) -> Option<SocketAddr> {
        self.workers.get(index).and_then(|w| w.as_ref()).map(|w| w.ops)
    }

    /// The `/metrics` text of worker `index`.
    pub async fn worker_metrics(&self, index: usize) -> String {
        let Some(addr) = self.worker_ops(index) else { return String::new() };
        match reqwest::get(format!("http://{addr}/metrics")).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Takes every message waiting in `queue`: (headers as strings, body).
    pub async fn drain_queue(&self, queue: &str) -> Vec<(std::collections::BTreeMap<String, String>, Vec<u8>)> {
        use sendfleet_broker::lapin::{
            options::{BasicAckOptions, BasicGetOptions},
            types::AMQPValue,
        };
        let connection = self.ns.connect().await;
        let channel = connection.create_channel().await.expect("channel");
        let mut messages = Vec::new();
        while let Ok(Some(message)) = channel.basic_get(queue.into(), BasicGetOptions::default()).await {
            let mut headers = std::collections::BTreeMap::new();
            if let Some(table) = message.delivery.properties.headers() {
                for (name, value) in table.inner() {
                    if let AMQPValue::LongString(text) = value {
                        headers.insert(name.to_string(), String::from_utf8_lossy(text.as_bytes()).into_owned());
                    }
                }
            }
            drop(message.delivery.acker.ack(BasicAckOptions::default()).await);
            messages.push((headers, message.delivery.data.clone()));
        }
        drop(connection.close(200, "".into()).await);
        messages
    }

    /// Publishes a send request to the requests exchange (confirmed).
    pub async fn publish_request(&self, request: &SendRequest) {
        self.publish_bytes(&self.ns.topology().requests_exchange(), "", &encode(request)).await;
    }

    /// Publishes raw bytes (confirmed).
    pub async fn publish_bytes(&self, exchange: &str, routing_key: &str, bytes: &[u8]) {
        self.publisher.publish(Outgoing::new(exchange, routing_key, bytes)).await.expect("publish");
    }

    /// Stops every service (gracefully), the mock, and deletes the namespace.
    pub async fn stop(mut self) {
        for index in 0..self.workers.len() {
            self.stop_worker(index).await;
        }
        for service in self.others.drain(..) {
            service.shutdown.cancel();
            drop(tokio::time::timeout(Duration::from_secs(30), service.task).await);
        }
        self.mock_shutdown.cancel();
        self.events.stop();
        self.ns.cleanup().await;
    }
}

async fn start_service<F, Fut>(config: Arc<Config>, run: F) -> Service
where
    F: FnOnce(Arc<Config>, TcpListener, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ops = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(config, listener, shutdown.clone()));
    Service { shutdown, task, ops }
}

/// Waits (≤ 20 s) until `GET /health` answers 200.
async fn wait_ready(addr: SocketAddr) {
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/health");
    for _ in 0..1_000 {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("service at {addr} never became ready");
}

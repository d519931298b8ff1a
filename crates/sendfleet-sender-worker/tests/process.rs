//! The sender-worker binary as a process: `kill -9` and SIGTERM under load, against the
//! real RabbitMQ and Redis and the mock provider.

use std::{collections::HashSet, path::PathBuf, process::Stdio, time::Duration};

use futures_util::{StreamExt, stream};
use sendfleet_broker::{Outgoing, Publisher};
use sendfleet_mock_provider::{Behaviour, MockConfig, MockHandle};
use sendfleet_protocol::{Channel, Content, EventKind, SendJob, encode, now_ms};
use sendfleet_test_support::{EventCollector, Namespace, TEST_API_KEY, amqp_url, redis_url, wait_until};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

const PROVIDER: &str = "proc-sms";
const CONCURRENCY: u32 = 32;
const PREFETCH: u64 = 2 * CONCURRENCY as u64;

struct Setup {
    ns: Namespace,
    mock: MockHandle,
    mock_shutdown: CancellationToken,
    events: EventCollector,
    config: PathBuf,
}

async fn setup(name: &'static str, latency_ms: u64) -> Setup {
    sendfleet_test_support::init_tracing();
    let ns = Namespace::new(name, &[PROVIDER]);
    let mock_shutdown = CancellationToken::new();
    let mock = sendfleet_mock_provider::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        MockConfig {
            twilio_auth_token: None,
            api_keys: vec![TEST_API_KEY.into()],
            default_dlr_url: None,
            behaviour: Behaviour { latency_ms, delivery_reports: false, record_bodies: false, ..Behaviour::default() },
        },
        mock_shutdown.clone(),
    )
    .await
    .unwrap();
    let toml = format!(
        r#"
[broker]
url = "{amqp}"
prefix = "{prefix}"
[redis]
url = "{redis}"
key_prefix = "{prefix}"
[worker]
listen = "127.0.0.1:0"
shutdown_grace_seconds = 10
[[providers]]
id = "{PROVIDER}"
kind = "infobip_sms"
base_url = "{mock}"
api_key_env = "TEST_API_KEY"
sender_ids = ["ACMEIN"]
rate_per_second = 4600
concurrency = {CONCURRENCY}
"#,
        amqp = amqp_url(),
        prefix = ns.prefix,
        redis = redis_url(),
        mock = mock.base_url(),
    );
    let config = std::env::temp_dir().join(format!("{}.toml", ns.prefix));
    std::fs::write(&config, toml).unwrap();
    let connection = ns.connect().await;
    let channel = connection.create_channel().await.unwrap();
    ns.topology().declare(&channel, &[PROVIDER.to_owned()]).await.unwrap();
    drop(connection.close(200, "".into()).await);
    let events = EventCollector::start(&ns.topology().events_queue()).await;
    Setup { ns, mock, mock_shutdown, events, config }
}

impl Setup {
    async fn preload(&self, count: usize) {
        let connection = self.ns.connect().await;
        let publisher = Publisher::open(&connection).await.unwrap();
        let exchange = self.ns.topology().jobs_exchange();
        let mut confirms = stream::iter(0..count)
            .map(|i| {
                let (publisher, exchange) = (publisher.clone(), exchange.clone());
                async move {
                    let job = SendJob {
                        priority: Default::default(),
                        schema_version: 1,
                        message_id: format!("p-{i:06}"),
                        provider: PROVIDER.into(),
                        channel: Channel::Sms,
                        to: format!("+1555{i:07}"),
                        sender: "ACMEIN".into(),
                        content: Content::Text { text: format!("process test {i}"), suggestions: vec![] },
                        options: Default::default(),
                        fallback: None,
                        metadata: Default::default(),
                        trace_id: format!("t-{i}"),
                        attempts: 0,
                        first_attempt_at_ms: None,
                        created_at_ms: now_ms(),
                        fallback_for: None,
                    };
                    publisher.publish(Outgoing::new(&exchange, PROVIDER, &encode(&job))).await
                }
            })
            .buffer_unordered(500);
        while let Some(result) = confirms.next().await {
            result.unwrap();
        }
        drop(connection.close(200, "".into()).await);
    }

    fn spawn_worker(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_sender-worker"))
            .env("SENDFLEET_CONFIG", &self.config)
            .env("TEST_API_KEY", TEST_API_KEY)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start sender-worker")
    }

    fn accepted_ids(&self) -> HashSet<String> {
        self.events
            .events()
            .into_iter()
            .filter(|e| e.kind == EventKind::Accepted)
            .filter_map(|e| e.message_id)
            .collect()
    }

    async fn teardown(self) {
        self.mock_shutdown.cancel();
        drop(std::fs::remove_file(&self.config));
        self.ns.cleanup().await;
    }
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_restart_loses_nothing() {
    let setup = setup("kill9", 1).await;
    const N: usize = 20_000;
    setup.preload(N).await;
    let mut first = setup.spawn_worker();
    assert!(
        wait_until(Duration::from_secs(60), || setup.mock.stats().accepted >= 5_000).await,
        "worker never got going"
    );
    first.start_kill().expect("kill -9");
    first.wait().await.expect("reaped");

    let mut second = setup.spawn_worker();
    let done = wait_until(Duration::from_secs(180), || setup.accepted_ids().len() >= N).await;
    assert!(done, "only {} of {N} jobs ended accepted", setup.accepted_ids().len());

    let events = setup.events.events();
    let outcome_ids: HashSet<&str> =
        events.iter().filter(|e| e.kind == EventKind::Accepted).map(|e| e.event_id.as_str()).collect();
    assert_eq!(outcome_ids.len(), N, "exactly one terminal outcome per job (repeats share their event id)");
    assert_eq!(events.iter().filter(|e| e.kind == EventKind::Failed).count(), 0);
    let duplicates = setup.mock.stats().duplicate_message_ids;
    eprintln!("kill -9 with {PREFETCH} jobs prefetched ({CONCURRENCY} in flight at most): {duplicates} sent twice");
    // The permit is given back when the answer arrives, before the sent mark is written,
    // so the jobs between answer and mark are bounded by what the worker held (the
    // prefetch), not by the concurrency: RELIABILITY.md's window.
    assert!(
        duplicates <= PREFETCH,
        "requests sent twice ({duplicates}) stay within the jobs the worker held ({PREFETCH})"
    );

    sigterm(&second);
    drop(tokio::time::timeout(Duration::from_secs(20), second.wait()).await);
    setup.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let setup = setup("sigterm", 50).await;
    const N: usize = 3_000;
    setup.preload(N).await;
    let mut worker = setup.spawn_worker();
    assert!(wait_until(Duration::from_secs(60), || setup.mock.stats().accepted >= 500).await);
    let asked = tokio::time::Instant::now();
    sigterm(&worker);
    let status = tokio::time::timeout(Duration::from_secs(15), worker.wait())
        .await
        .expect("exited within the 10 s grace period (plus margin)")
        .expect("status");
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
    assert!(asked.elapsed() < Duration::from_secs(12));
    let sent_by_first = setup.mock.stats().accepted;
    assert!(sent_by_first < N as u64, "stopped before the queue ran dry ({sent_by_first})");

    let mut second = setup.spawn_worker();
    let done = wait_until(Duration::from_secs(120), || setup.accepted_ids().len() >= N).await;
    assert!(done, "only {} of {N} accepted", setup.accepted_ids().len());
    assert_eq!(setup.mock.stats().duplicate_message_ids, 0, "nothing was sent twice");
    assert_eq!(setup.mock.stats().accepted, N as u64);
    sigterm(&second);
    drop(tokio::time::timeout(Duration::from_secs(20), second.wait()).await);
    setup.teardown().await;
}

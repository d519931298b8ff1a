//! The metrics catalogue against the real binaries: dispatcher, sender-worker and
//! callback-ingest run as processes (from `target/debug`, built by `cargo build --bins`)
//! for a short run; each one's `/metrics` must export every metric `docs/METRICS.md`
//! says it exports, and every metric the Grafana dashboard or an alert rule queries
//! must be exported by some binary. The values that show the cap are checked too: the
//! configured rate and burst per provider, the slots leased for the message sent, the
//! events queue's bound, and what each binary says it is (`sendfleet_build_info`).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use sendfleet_broker::{Outgoing, Publisher};
use sendfleet_mock_provider::{Behaviour, MockConfig};
use sendfleet_protocol::{Channel, Content, EventKind, SendRequest, encode};
use sendfleet_test_support::{
    EventCollector, Namespace, TEST_API_KEY, TEST_CALLBACK_TOKEN, amqp_url, redis_url, wait_until,
};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

pub(crate) const BINARIES: [&str; 3] = ["dispatcher", "sender-worker", "callback-ingest"];
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/<profile>/<name>`, next to this test's own executable (`…/deps/it-…`).
pub(crate) fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe.parent().and_then(Path::parent).expect("target dir").join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace --bins` first", path.display());
    path
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Metric names in a Prometheus text exposition, histogram series folded into their base name.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut histograms = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some("histogram")) = (parts.next(), parts.next()) {
                histograms.insert(name.to_owned());
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        names.insert(name.to_owned());
    }
    names
        .into_iter()
        .map(|name| {
            HISTOGRAM_SUFFIXES
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|base| histograms.contains(*base)).map(str::to_owned))
                .unwrap_or(name)
        })
        .collect()
}

/// The value of the sample of `name` whose labels include every pair of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
        let matches = series_name == name
            && labels.iter().all(|(label, wanted)| series_labels.contains(&format!("{label}=\"{wanted}\"")));
        matches.then(|| value.parse().ok()).flatten()
    })
}

async fn scrape(client: &reqwest::Client, name: &str, port: u16) -> String {
    client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("scrape {name}: {e}"))
        .text()
        .await
        .unwrap()
}

/// The broker, Redis and listen sections of a test config for the three binaries on
/// `ports` (by binary name), under `prefix`.
pub(crate) fn services_toml(prefix: &str, ports: &BTreeMap<&str, u16>) -> String {
    format!(
        r#"
[broker]
url = "{amqp}"
prefix = "{prefix}"
[redis]
url = "{redis}"
key_prefix = "{prefix}"
[dispatcher]
listen = "127.0.0.1:{dispatcher}"
check_numbering_plan = false
[worker]
listen = "127.0.0.1:{worker}"
[callback_ingest]
listen = "127.0.0.1:{ingest}"
public_base_url = "http://127.0.0.1:{ingest}"
"#,
        amqp = amqp_url(),
        redis = redis_url(),
        dispatcher = ports["dispatcher"],
        worker = ports["sender-worker"],
        ingest = ports["callback-ingest"],
    )
}

/// `docs/METRICS.md`'s table: metric → the binaries that export it.
fn catalogue() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(repo_root().join("docs/METRICS.md")).expect("docs/METRICS.md");
    let mut rows = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `sendfleet_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_owned();
        let exporters = match cells[4] {
            "all three" => BINARIES.iter().map(|b| (*b).to_owned()).collect(),
            list => list.split(',').map(|b| b.trim().to_owned()).collect(),
        };
        rows.insert(name, exporters);
    }
    assert!(rows.len() >= 15, "docs/METRICS.md lists {} metrics", rows.len());
    rows
}

/// Every `sendfleet_*` name in a dashboard or rules file, histogram suffixes folded.
fn queried_names(path: &str, catalogue: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join(path)).expect(path);
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("sendfleet_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let base = HISTOGRAM_SUFFIXES
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| catalogue.contains_key(*b)))
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    assert!(!names.is_empty(), "{path} queries no sendfleet metric");
    names
}

/// Starts a binary; its (JSON) log lines go to `log`, at debug level for sendfleet crates.
fn spawn(name: &str, config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(binary(name))
        .env("SENDFLEET_CONFIG", config)
        .env("TEST_API_KEY", TEST_API_KEY)
        .env("TEST_CALLBACK_TOKEN", TEST_CALLBACK_TOKEN)
        .env("RUST_LOG", "warn,sendfleet_sender_worker=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
}

fn request(message_id: &str, to: &str) -> SendRequest {
    SendRequest {
        priority: Default::default(),
        schema_version: 1,
        message_id: Some(message_id.into()),
        channel: Channel::Sms,
        provider: None,
        to: Some(to.into()),
        recipients: vec![],
        sender: None,
        content: Some(Content::Text { text: "metrics run".into(), suggestions: vec![] }),
        template: None,
        options: Default::default(),
        fallback: None,
        metadata: Default::default(),
        trace_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_catalogued_metric_is_exported_and_every_queried_metric_exists() {
    sendfleet_test_support::init_tracing();
    let catalogue = catalogue();
    let ns = Namespace::new("metrics", &["m-sms", "m-rcs"]);
    let mock_shutdown = CancellationToken::new();
    let mock = sendfleet_mock_provider::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        MockConfig {
            twilio_auth_token: None,
            api_keys: vec![TEST_API_KEY.into()],
            default_dlr_url: None,
            behaviour: Behaviour::default(),
        },
        mock_shutdown.clone(),
    )
    .await
    .unwrap();
    let ports: BTreeMap<&str, u16> = BINARIES.iter().map(|b| (*b, free_port())).collect();
    let toml = format!(
        r#"{services}
[telemetry]
log_format = "json"
[[providers]]
id = "m-sms"
kind = "infobip_sms"
base_url = "{mock}"
api_key_env = "TEST_API_KEY"
sender_ids = ["ACMEIN"]
default_for_channel = true
rate_per_second = 1000
concurrency = 16
callback_token_env = "TEST_CALLBACK_TOKEN"
[[providers]]
id = "m-rcs"
kind = "infobip_rcs"
base_url = "{mock}"
api_key_env = "TEST_API_KEY"
sender_ids = ["AcmeAgent"]
default_for_channel = true
rate_per_second = 1000
concurrency = 16
callback_token_env = "TEST_CALLBACK_TOKEN"
"#,
        services = services_toml(&ns.prefix, &ports),
        mock = mock.base_url(),
    );
    let config = std::env::temp_dir().join(format!("{}.toml", ns.prefix));
    std::fs::write(&config, toml).unwrap();
    let connection = ns.connect().await;
    let channel = connection.create_channel().await.unwrap();
    ns.topology().declare(&channel, &ns.providers).await.unwrap();
    let events = EventCollector::start(&ns.topology().events_queue()).await;
    let log_of = |name: &str| std::env::temp_dir().join(format!("{}-{name}.log", ns.prefix));
    let mut children: Vec<(&str, Child)> = BINARIES.iter().map(|b| (*b, spawn(b, &config, &log_of(b)))).collect();

    let client = reqwest::Client::new();
    for (name, port) in &ports {
        let url = format!("http://127.0.0.1:{port}/health");
        let mut ready = false;
        for _ in 0..300 {
            if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "{name} never became ready on port {port}");
    }

    // A short run: one message delivered end to end, one request rejected.
    let publisher = Publisher::open(&connection).await.unwrap();
    let requests = ns.topology().requests_exchange();
    let mut traced = request("metrics-ok", "+15551230000");
    traced.trace_id = Some("trace-metrics-0001".into());
    for request in [traced, request("metrics-bad", "not-a-number")] {
        publisher.publish(Outgoing::new(&requests, "", &encode(&request))).await.unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(30), || events.count(EventKind::Delivered) >= 1).await,
        "the message was not delivered"
    );

    // The worker publishes its slot counters every second: wait for the message's slot.
    let leased = |text: &str| sample(text, "sendfleet_rate_slots_leased_total", &[("provider", "m-sms")]);
    let mut worker_text = String::new();
    for _ in 0..50 {
        worker_text = scrape(&client, "sender-worker", ports["sender-worker"]).await;
        if leased(&worker_text).is_some_and(|n| n >= 1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(leased(&worker_text).is_some_and(|n| n >= 1.0), "the slot of the message sent is counted");

    let mut exported_by: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut texts: BTreeMap<&str, String> = BTreeMap::new();
    for (name, port) in &ports {
        let text = scrape(&client, name, *port).await;
        exported_by.insert(name, exported_names(&text));
        texts.insert(name, text);
    }
    // The cap as configured (rate_per_second = 1000, burst rate/100) per provider, and
    // the slot counters registered from the start.
    let worker = &texts["sender-worker"];
    for provider in ["m-sms", "m-rcs"] {
        let of = |name: &str| sample(worker, name, &[("provider", provider)]);
        assert_eq!(of("sendfleet_rate_limit_per_second"), Some(1000.0), "{provider}'s configured rate");
        assert_eq!(of("sendfleet_rate_burst"), Some(10.0), "{provider}'s burst in effect");
        assert!(of("sendfleet_rate_slots_expired_total").is_some(), "{provider}'s expired slots are exported");
    }
    assert_eq!(
        sample(worker, "sendfleet_rate_slots_leased_total", &[("provider", "m-rcs")]),
        Some(0.0),
        "no slot leased for a provider that sent nothing"
    );
    for store in ["rate_leases", "sent_record", "capability_cache", "fallback"] {
        assert_eq!(sample(worker, "sendfleet_redis_errors_total", &[("store", store)]), Some(0.0), "{store}");
    }
    let events_queue = format!("{}.events", ns.prefix);
    for (name, text) in &texts {
        let build = [("binary", *name), ("version", env!("CARGO_PKG_VERSION"))];
        assert_eq!(sample(text, "sendfleet_build_info", &build), Some(1.0), "{name}'s build info");
        assert_eq!(
            sample(text, "sendfleet_events_queue_max_length", &[("queue", events_queue.as_str())]),
            Some(250_000.0),
            "{name} exports the events queue's default bound"
        );
    }
    let mut missing = Vec::new();
    for (metric, exporters) in &catalogue {
        for exporter in exporters {
            let Some(names) = exported_by.get(exporter.as_str()) else {
                panic!("docs/METRICS.md names an unknown binary {exporter:?} for {metric}");
            };
            if !names.contains(metric) {
                missing.push(format!("{exporter} does not export {metric}"));
            }
        }
    }
    assert!(missing.is_empty(), "docs/METRICS.md promises metrics the binaries do not export:\n{}", missing.join("\n"));

    let all_exported: BTreeSet<&String> = exported_by.values().flatten().collect();
    let undocumented: Vec<&&String> =
        all_exported.iter().filter(|n| n.starts_with("sendfleet_") && !catalogue.contains_key(n.as_str())).collect();
    assert!(undocumented.is_empty(), "exported but not in docs/METRICS.md: {undocumented:?}");
    for file in ["deploy/grafana/dashboards/sendfleet.json", "deploy/prometheus/alerts.yml"] {
        let unknown: Vec<String> =
            queried_names(file, &catalogue).into_iter().filter(|n| !all_exported.contains(n)).collect();
        assert!(unknown.is_empty(), "{file} queries metrics no binary exports: {unknown:?}");
    }

    for (name, child) in &mut children {
        let pid = child.id().expect("running").to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .unwrap_or_else(|_| panic!("{name} did not exit after SIGTERM"))
            .unwrap();
        assert_eq!(status.code(), Some(0), "{name} exits 0 on SIGTERM");
    }
    // JSON logs: every worker line about the message carries its trace id (from the job span).
    let worker_log = std::fs::read_to_string(log_of("sender-worker")).unwrap();
    let about: Vec<serde_json::Value> = worker_log
        .lines()
        .filter(|l| l.contains("metrics-ok"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    assert!(!about.is_empty(), "the worker logged nothing about the message at debug level");
    for line in &about {
        assert_eq!(line["span"]["trace_id"], "trace-metrics-0001", "log line without the trace id: {line}");
    }
    let delivered = events.events().into_iter().find(|e| e.kind == EventKind::Delivered).unwrap();
    assert_eq!(delivered.trace_id.as_deref(), Some("trace-metrics-0001"), "the delivery event carries the trace id");

    drop(connection.close(200, "".into()).await);
    mock_shutdown.cancel();
    for name in BINARIES {
        drop(std::fs::remove_file(log_of(name)));
    }
    drop(std::fs::remove_file(&config));
    ns.cleanup().await;
}

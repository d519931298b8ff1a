//! callback-ingest end to end: real HTTP in, the real RabbitMQ out.
//!
//! Broker outages are simulated with a loopback TCP proxy between callback-ingest and
//! the shared RabbitMQ, which the test cuts and restores (the broker itself keeps
//! running for everyone else).

mod common;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{Ingest, JIO_PASSWORD, JIO_TOKEN, TOKEN, fixture};
use parking_lot::Mutex;
use sendfleet_protocol::{Channel, EventKind};
use sendfleet_test_support::wait_until;
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinSet};

/// A loopback TCP proxy to RabbitMQ that can be cut (every connection closed, new ones
/// closed on accept) and restored.
struct BrokerProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<JoinSet<()>>>,
    task: tokio::task::JoinHandle<()>,
}

impl BrokerProxy {
    async fn start() -> BrokerProxy {
        let upstream: SocketAddr = "127.0.0.1:5672".parse().expect("addr");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let (flag, set) = (up.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                set.lock().spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        drop(tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await);
                    }
                });
            }
        });
        BrokerProxy { addr, up, connections, task }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Closes every proxied connection and refuses new ones.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.connections.lock().abort_all();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for BrokerProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.connections.lock().abort_all();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_callback_format_becomes_the_right_event_in_the_broker() {
    let ingest = Ingest::start("cb-formats", None, 1 << 20).await;
    let cases: [(&str, &str, &str, usize); 12] = [
        ("ib-sms", "/delivery", "sms-dlr-delivered.json", 1),
        ("ib-sms", "/delivery", "sms-dlr-legacy.json", 2),
        ("ib-sms", "", "sms-dlr-undeliverable.json", 1),
        ("ib-sms", "/inbound", "sms-inbound.json", 1),
        ("ib-rcs", "/delivery", "rcs-dlr-delivered.json", 1),
        ("ib-rcs", "/delivery", "rcs-dlr-failed-not-capable.json", 1),
        ("ib-rcs", "/seen", "rcs-seen.json", 1),
        ("ib-rcs", "/inbound", "rcs-inbound-text.json", 1),
        ("ib-rcs", "/inbound", "rcs-inbound-file.json", 1),
        ("ib-rcs", "/inbound", "rcs-inbound-location.json", 1),
        ("ib-rcs", "/events", "rcs-typing.json", 1),
        ("ib-rcs", "/events", "rcs-conversation-started.json", 1),
    ];
    let mut expected = 0;
    for (provider, kind, name, n) in cases {
        let (status, body) = ingest.post(&ingest.url(provider, TOKEN, kind), fixture(name)).await;
        assert_eq!((status, body["accepted"].as_u64()), (200, Some(n as u64)), "{name}: {body}");
        expected += n;
    }
    // JioCX: one URL for reports and inbound messages, Basic auth on top of the token.
    let jio = ingest
        .client
        .post(ingest.url("jio", JIO_TOKEN, ""))
        .basic_auth("clevertap", Some(JIO_PASSWORD))
        .body(fixture("jiocx-mixed-batch.json"))
        .send()
        .await
        .expect("answer");
    assert_eq!(jio.status().as_u16(), 200);
    expected += 3;

    assert!(
        wait_until(Duration::from_secs(20), || ingest.events.events().len() >= expected).await,
        "{} of {expected} events arrived",
        ingest.events.events().len()
    );
    let events = ingest.events.events();
    assert_eq!(events.len(), expected, "exactly one event per result");
    let count =
        |kind: EventKind, provider: &str| events.iter().filter(|e| e.kind == kind && e.provider == provider).count();
    assert_eq!(count(EventKind::Delivered, "ib-sms"), 2);
    assert_eq!(count(EventKind::Undelivered, "ib-sms"), 2);
    assert_eq!(count(EventKind::Inbound, "ib-sms"), 1);
    assert_eq!(count(EventKind::Delivered, "ib-rcs"), 1);
    assert_eq!(count(EventKind::Undelivered, "ib-rcs"), 1);
    assert_eq!(count(EventKind::Seen, "ib-rcs"), 1);
    assert_eq!(count(EventKind::Inbound, "ib-rcs"), 3);
    assert_eq!(count(EventKind::Typing, "ib-rcs"), 1);
    assert_eq!(count(EventKind::ConversationStarted, "ib-rcs"), 1);
    assert_eq!(count(EventKind::Delivered, "jio") + count(EventKind::Inbound, "jio"), 3);
    let file = events
        .iter()
        .find(|e| e.inbound.as_ref().is_some_and(|i| i.kind == "file"))
        .expect("the file arrived with its inbound part");
    assert_eq!(file.inbound.as_ref().and_then(|i| i.size_bytes), Some(123_456));
    let started = events.iter().find(|e| e.kind == EventKind::ConversationStarted).expect("conversation");
    assert_eq!(started.billing.as_ref().and_then(|b| b.conversation_id.as_deref()), Some("conv-7d1e2f3a"));
    let sms_mo = events.iter().find(|e| e.kind == EventKind::Inbound && e.provider == "ib-sms").expect("sms mo");
    assert_eq!(sms_mo.channel, Channel::Sms);
    assert_eq!(ingest.events.undecodable(), 0);

    let metrics = ingest.metrics().await;
    assert!(
        metrics.contains(r#"sendfleet_callbacks_total{provider="ib-rcs",kind="conversation_started",outcome="ok"} 1"#),
        "{metrics}"
    );
    ingest.stop().await;
}

/// Posts `body` with `Transfer-Encoding: chunked` (no Content-Length) over a raw
/// connection; returns the status code.
async fn post_chunked(base: &str, path: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(512) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything: ignore write errors.
    drop(stream.write_all(&request).await);
    let mut answer = Vec::new();
    drop(tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await);
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_callbacks_are_refused_with_a_reason_and_publish_nothing() {
    let limit = 4_096;
    let ingest = Ingest::start("cb-refusals", None, limit).await;
    let good = fixture("sms-dlr-delivered.json");

    let (status, body) = ingest.post(&ingest.url("ib-sms", TOKEN, "/delivery"), b"{\"results\": [".to_vec()).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("expected")), "{body}");
    let (status, body) = ingest
        .post(&ingest.url("ib-sms", TOKEN, ""), br#"{"results":[{"status":{"groupId":3,"id":5}}]}"#.to_vec())
        .await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("results[0]") && e.contains("messageId")), "{body}");
    let (status, _) = ingest.post(&ingest.url("ib-sms", TOKEN, ""), br#"{"results":[{"hello":1}]}"#.to_vec()).await;
    assert_eq!(status, 400);

    let wrong = "ingest-test-token-0123456780";
    assert_eq!(ingest.post(&ingest.url("ib-sms", wrong, "/delivery"), good.clone()).await.0, 401);
    assert_eq!(ingest.post(&ingest.url("ib-sms", "short", ""), good.clone()).await.0, 401);
    assert_eq!(ingest.post(&ingest.url("jio", JIO_TOKEN, ""), good.clone()).await.0, 401, "Basic auth missing");
    let wrong_password = ingest
        .client
        .post(ingest.url("jio", JIO_TOKEN, ""))
        .basic_auth("clevertap", Some("nope"))
        .body(good.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(wrong_password.status().as_u16(), 401);
    assert_eq!(ingest.post(&ingest.url("nobody", TOKEN, ""), good.clone()).await.0, 404);
    assert_eq!(ingest.post(&ingest.url("ib-sms", TOKEN, "/whatever"), good.clone()).await.0, 404);

    // Too large: declared by Content-Length, and streamed without one.
    let mut big: Value = serde_json::from_slice(&good).expect("json");
    big["results"][0]["padding"] = json!("x".repeat(limit));
    let big = big.to_string().into_bytes();
    let (status, body) = ingest.post(&ingest.url("ib-sms", TOKEN, ""), big.clone()).await;
    assert_eq!(status, 413);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("4096")), "{body}");
    assert_eq!(post_chunked(&ingest.base, &format!("/callbacks/ib-sms/{TOKEN}"), &big).await, 413);

    // Then one good callback: it is the only event.
    assert_eq!(ingest.post(&ingest.url("ib-sms", TOKEN, "/delivery"), good).await.0, 200);
    assert_eq!(ingest.events.wait_for(EventKind::Delivered, 1, Duration::from_secs(20)).await, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ingest.events.events().len(), 1, "refused callbacks published nothing");

    let metrics = ingest.metrics().await;
    for outcome in ["malformed", "unrecognised", "unauthorized", "too_large", "unknown_route"] {
        assert!(metrics.contains(&format!("outcome=\"{outcome}\"")), "{outcome} not counted:\n{metrics}");
    }
    assert!(metrics.contains(r#"provider="unknown",kind="any",outcome="unknown_provider"} 1"#), "{metrics}");
    assert!(!metrics.contains(TOKEN) && !metrics.contains(JIO_PASSWORD), "no secret in metrics");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_unreachable_callbacks_get_503_and_nothing_is_lost() {
    let proxy = BrokerProxy::start().await;
    let ingest = Ingest::start("cb-outage", Some(proxy.url()), 1 << 20).await;
    let report = |n: usize| {
        json!({"results": [{
            "messageId": format!("outage-{n:03}"), "to": "919876543210", "sender": "ACMEIN",
            "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"}
        }]})
        .to_string()
        .into_bytes()
    };
    let url = ingest.url("ib-sms", TOKEN, "/delivery");
    assert_eq!(ingest.post(&url, report(0)).await.0, 200);

    proxy.cut();
    // As a provider would: whatever is not answered 2xx is posted again later.
    let mut pending: Vec<usize> = Vec::new();
    let mut refused = 0;
    for n in 1..=20 {
        let (status, _) = ingest.post(&url, report(n)).await;
        if status != 200 {
            assert_eq!(status, 503, "an outage is answered 503");
            refused += 1;
            pending.push(n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused >= 15, "only {refused} of 20 callbacks were refused during the outage");

    proxy.restore();
    assert!(ingest.wait_ready(Duration::from_secs(30)).await, "callback-ingest did not reconnect");
    for _ in 0..100 {
        let mut still = Vec::new();
        for n in pending {
            if ingest.post(&url, report(n)).await.0 != 200 {
                still.push(n);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(pending.is_empty(), "still refused after the broker came back: {pending:?}");

    assert!(
        wait_until(Duration::from_secs(20), || {
            let ids: std::collections::BTreeSet<String> =
                ingest.events.events().into_iter().filter_map(|e| e.message_id).collect();
            (0..=20).all(|n| ids.contains(&format!("outage-{n:03}")))
        })
        .await,
        "a report was lost"
    );
    let metrics = ingest.metrics().await;
    assert!(metrics.contains(r#"outcome="broker_unavailable""#), "{metrics}");
    ingest.stop().await;
    drop(proxy);
}

fn rcs_report(id: &str) -> Value {
    json!({"messageId": id, "to": "919876543210", "sender": "AcmeRetailAgent",
        "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"}})
}

/// The value of one series in a Prometheus text scrape (0 when absent).
fn series_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_malformed_report_of_50_is_counted_and_the_other_49_published() {
    // On ib-rcs, where no other test of this binary posts bad reports: under plain
    // `cargo test` the tests share one metrics recorder.
    let ingest = Ingest::start("cb-partial", None, 1 << 20).await;
    let malformed = r#"sendfleet_callback_reports_rejected_total{provider="ib-rcs",reason="malformed"}"#;
    let unrecognised = r#"sendfleet_callback_reports_rejected_total{provider="ib-rcs",reason="unrecognised"}"#;
    let before = ingest.metrics().await;
    assert!(before.contains(malformed) && before.contains(unrecognised), "registered at zero:\n{before}");
    let mut results: Vec<Value> = (0..50).map(|i| rcs_report(&format!("batch-{i:02}"))).collect();
    // Providers do not retry a 4xx: refusing the body would lose the 49 good reports.
    results[23] = json!({"to": "919876543210", "status": {"groupId": 3, "id": 5}});
    let body = json!({ "results": results }).to_string().into_bytes();
    let (status, answer) = ingest.post(&ingest.url("ib-rcs", TOKEN, "/delivery"), body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"].as_u64(), Some(49), "{answer}");
    assert_eq!(answer["rejected"][0]["index"].as_u64(), Some(23), "{answer}");
    assert!(answer["rejected"][0]["reason"].as_str().is_some_and(|r| r.contains("messageId")), "{answer}");
    assert_eq!(ingest.events.wait_for(EventKind::Delivered, 49, Duration::from_secs(20)).await, 49);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids: std::collections::BTreeSet<String> =
        ingest.events.events().into_iter().filter_map(|e| e.message_id).collect();
    assert_eq!(ids.len(), 49, "one event per good report, nothing for the bad one");
    assert!(!ids.contains("batch-23"));
    let after = ingest.metrics().await;
    assert_eq!(series_value(&after, malformed) - series_value(&before, malformed), 1.0, "{after}");

    // A body whose every report is bad is still refused, with the reasons.
    let bad = json!({"results": [{"hello": 1}, {"status": {"groupId": 3, "id": 5}}]}).to_string().into_bytes();
    let (status, answer) = ingest.post(&ingest.url("ib-rcs", TOKEN, ""), bad).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["rejected"].as_array().map(Vec::len), Some(2), "{answer}");
    let last = ingest.metrics().await;
    assert_eq!(series_value(&last, malformed) - series_value(&before, malformed), 2.0, "{last}");
    assert_eq!(series_value(&last, unrecognised) - series_value(&before, unrecognised), 1.0, "{last}");
    ingest.stop().await;
}

/// Opens a connection and sends a callback's headers and the start of its body, then
/// stalls: callback-ingest holds an in-flight slot for it until the body ends.
///
/// Returns only once the handler holds its slot. Writing to a fresh connection says
/// nothing about when the server gets to it: a request on a connection it already
/// serves (the client's pooled one) can overtake it, take the slot, and the stalled one
/// is then refused itself. So the headers carry `Expect: 100-continue` and the body is
/// sent after `100 Continue`, which the server only sends once the handler starts
/// reading the body, after it took its slot.
async fn stalled_callback(base: &str, path: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\nexpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 512];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "connection closed before an answer: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.expect("an answer to the headers");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 100 Continue\r\n"), "the stalled callback holds a slot: {answer}");
    stream.write_all(b"{\"results\": [").await.expect("write");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_in_flight_callbacks_are_answered_503_at_once() {
    let ingest = Ingest::start_with("cb-bound", None, "max_in_flight = 2").await;
    let path = format!("/callbacks/ib-sms/{TOKEN}/delivery");
    let url = ingest.url("ib-sms", TOKEN, "/delivery");
    let good = fixture("sms-dlr-delivered.json");
    let first = stalled_callback(&ingest.base, &path).await;
    let second = stalled_callback(&ingest.base, &path).await;
    // Both slots are held (each stalled handler is reading its body): the next is
    // refused, at once.
    let started = std::time::Instant::now();
    let response = ingest.client.post(&url).body(good.clone()).send().await.expect("answer");
    let took = started.elapsed();
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").cloned();
    let answer = response.text().await.unwrap_or_default();
    assert_eq!(status, 503, "a third callback must be refused while two are in flight: {answer}");
    assert!(answer.contains("in flight"), "refused as overloaded: {answer}");
    assert!(took < Duration::from_secs(1), "refused at once, not queued: {took:?}");
    assert!(retry_after.is_some(), "with Retry-After");
    // The stalled callbacks go away: their slots come back.
    drop((first, second));
    assert!(
        wait_until_async(Duration::from_secs(10), || async {
            ingest.client.post(&url).body(good.clone()).send().await.is_ok_and(|r| r.status().as_u16() == 200)
        })
        .await,
        "slots released"
    );
    let metrics = ingest.metrics().await;
    assert!(metrics.contains(r#"provider="ib-sms",kind="delivery",outcome="overloaded"}"#), "{metrics}");
    ingest.stop().await;
}

/// Polls an async condition every 50 ms until it holds or `timeout` passes.
async fn wait_until_async<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

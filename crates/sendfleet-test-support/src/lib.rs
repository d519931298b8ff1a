//! Test helpers. Tests talk to the real RabbitMQ (and Redis) on this machine: each test
//! gets its own name prefix so tests run in parallel, and everything it declared is
//! deleted when it ends (also when it panics, via `Drop`).
//!
//! - [`Namespace`]: a unique prefix and its clean-up.
//! - [`Fleet`]: mock provider, dispatcher, sender-worker(s) and callback-ingest running
//!   in-process on port 0 against one namespace.
//! - [`EventCollector`]: everything published to the namespace's events queue.
//! - [`ProcessFleet`]: the same fleet as real processes, for crash and failpoint tests.
//! - [`RedisServer`]: a Redis of the test's own, for outages.
//! - [`wait_until`]: a bounded wait; every wait in tests is bounded.
//! - [`sms_to_many`]: a request to many fictional numbers, for load in tests.

mod collector;
mod fleet;
mod namespace;
mod processes;
mod redis_server;

use std::time::Duration;

pub use collector::EventCollector;
pub use fleet::{Fleet, FleetOptions, TEST_API_KEY, TEST_CALLBACK_TOKEN, TEST_JIOCX_API_KEY};
pub use namespace::{Namespace, delete_redis_keys};
pub use processes::{ProcessFleet, ProcessFleetOptions, Role};
pub use redis_server::RedisServer;

/// An SMS request to the fictional numbers `+1555<i>` for each `i` in `range`, message
/// ids `<prefix>-<i>` (so a test can tell its batches apart at the mock), a one-time
/// code as text; default provider, sender and lane (set them with struct update).
pub fn sms_to_many(prefix: &str, range: std::ops::Range<usize>) -> sendfleet_protocol::SendRequest {
    use sendfleet_protocol::{Channel, Content, Recipient, SendRequest};
    SendRequest {
        priority: Default::default(),
        schema_version: 1,
        message_id: None,
        channel: Channel::Sms,
        provider: None,
        to: None,
        recipients: range
            .map(|i| Recipient {
                to: format!("+1555{i:07}"),
                message_id: Some(format!("{prefix}-{i:05}")),
                variables: Default::default(),
                metadata: Default::default(),
            })
            .collect(),
        sender: None,
        content: Some(Content::Text { text: "Your code is 4242".into(), suggestions: vec![] }),
        template: None,
        options: Default::default(),
        fallback: None,
        metadata: Default::default(),
        trace_id: None,
    }
}

/// The broker tests use: `SENDFLEET_TEST_AMQP_URL` or the local default.
pub fn amqp_url() -> String {
    std::env::var("SENDFLEET_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The Redis tests use: `SENDFLEET_TEST_REDIS_URL` or the local default.
pub fn redis_url() -> String {
    std::env::var("SENDFLEET_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Installs a test tracing subscriber once (`RUST_LOG` controls it).
pub fn init_tracing() {
    sendfleet_telemetry::init_tracing(&sendfleet_config::TelemetryConfig {
        log_filter: "warn".into(),
        ..Default::default()
    });
}

/// Closes, with `rabbitmqctl`, every broker connection whose client-provided name
/// contains `needle` (a test's prefix), leaving other tests' connections alone.
/// Returns how many were closed.
pub fn close_broker_connections(needle: &str) -> usize {
    let Ok(output) =
        std::process::Command::new("rabbitmqctl").args(["-q", "list_connections", "pid", "client_properties"]).output()
    else {
        return 0;
    };
    let listing = String::from_utf8_lossy(&output.stdout);
    let mut closed = 0;
    for line in listing.lines() {
        let Some((pid, properties)) = line.split_once('\t') else { continue };
        let named = properties
            .split("{\"connection_name\",\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .is_some_and(|name| name.contains(needle));
        if named
            && std::process::Command::new("rabbitmqctl")
                .args(["-q", "close_connection", pid.trim(), "closed by test"])
                .status()
                .is_ok_and(|s| s.success())
        {
            closed += 1;
        }
    }
    closed
}

//! Connecting, with retries.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use lapin::{Connection, ConnectionProperties};
use sendfleet_config::{BrokerConfig, RedactedUrl};
use sendfleet_telemetry::metrics::BROKER_CONNECTIONS_TOTAL;
use tokio_util::sync::CancellationToken;

use crate::BrokerError;

/// How long one node may take to accept a connection before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which of `broker.url`'s nodes the next attempt starts with: each attempt starts one
/// further, so after a lost connection the next node is tried first.
static NEXT_NODE: AtomicUsize = AtomicUsize::new(0);

/// One connection attempt over `broker.url`'s nodes, each given [`CONNECT_TIMEOUT`],
/// named `sendfleet-<service>-<prefix>-<pid>` in the broker's UI so operators (and
/// tests) can tell fleets apart. The error is the last node's.
pub async fn connect_once(config: &BrokerConfig, service: &str) -> Result<Connection, BrokerError> {
    let urls = config.url.all();
    let start = NEXT_NODE.fetch_add(1, Ordering::Relaxed);
    let mut last = BrokerError::ConnectionLost;
    for offset in 0..urls.len() {
        let url = &urls[(start + offset) % urls.len()];
        match connect_to(url, config, service).await {
            Ok(connection) => return Ok(connection),
            Err(err) => {
                if urls.len() > 1 {
                    tracing::warn!(url = %url, error = %err, "broker node not reachable; trying the next");
                }
                last = err;
            }
        }
    }
    Err(last)
}

async fn connect_to(url: &RedactedUrl, config: &BrokerConfig, service: &str) -> Result<Connection, BrokerError> {
    let name = format!("sendfleet-{service}-{}-{}", config.prefix, std::process::id());
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    // Checked with lapin's parser before lapin sees it: for some unparseable URLs its
    // error quotes the whole URL, which would then be logged on every retry.
    url.check().map_err(|problem| BrokerError::InvalidUrl { url: url.to_string(), problem })?;
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url.expose(), properties))
        .await
        .map_err(|_| BrokerError::ConnectTimeout(CONNECT_TIMEOUT))??;
    metrics::counter!(BROKER_CONNECTIONS_TOTAL, "service" => service.to_owned()).increment(1);
    Ok(connection)
}

/// Connects, retrying with the shared [`crate::Reconnect`] policy (0.2 s doubling to
/// 5 s, jittered) until it works or `shutdown` is cancelled. Each failure is logged with
/// the redacted URL.
pub async fn connect(
    config: &BrokerConfig,
    service: &str,
    shutdown: &CancellationToken,
) -> Result<Connection, BrokerError> {
    let mut policy = crate::Reconnect::new();
    loop {
        match connect_once(config, service).await {
            Ok(connection) => return Ok(connection),
            Err(err) => tracing::warn!(url = %config.url, error = %err, "cannot reach the broker; retrying"),
        }
        if !policy.wait(shutdown).await {
            return Err(BrokerError::ShuttingDown);
        }
    }
}

#[cfg(test)]
mod tests {
    use sendfleet_config::BrokerUrls;

    use super::*;

    #[tokio::test]
    async fn an_unparseable_url_is_refused_without_quoting_it() {
        // Without a `//` lapin's parser answers "Invalid URL: '<the whole URL>'".
        for url in ["amqp:guest:Zq8kWx3v@127.0.0.1", "amqp://guest:Zq8k/Wx3v@127.0.0.1/%2f"] {
            let config = BrokerConfig { url: RedactedUrl::new(url).into(), ..BrokerConfig::default() };
            let err = connect_once(&config, "test").await.expect_err("refused");
            for text in [err.to_string(), format!("{err:?}")] {
                assert!(!text.contains("Zq8k") && !text.contains("Wx3v"), "{text}");
            }
            assert!(matches!(err, BrokerError::InvalidUrl { .. }), "{err}");
        }
    }

    #[tokio::test]
    async fn a_dead_node_in_the_list_is_skipped_and_attempts_rotate_over_the_nodes() {
        let live = std::env::var("SENDFLEET_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
        // Port 1 refuses at once: a node that is down.
        let urls: BrokerUrls = toml::Value::Array(vec![
            toml::Value::String("amqp://guest:guest@127.0.0.1:1/%2f".into()),
            toml::Value::String(live),
        ])
        .try_into()
        .expect("a list of URLs");
        let config = BrokerConfig { url: urls, ..BrokerConfig::default() };
        for _ in 0..3 {
            let connection = connect_once(&config, "test").await.expect("the live node");
            connection.close(200, "done".into()).await.expect("close");
        }
        let dead =
            BrokerConfig { url: BrokerUrls::new("amqp://guest:guest@127.0.0.1:1/%2f"), ..BrokerConfig::default() };
        assert!(connect_once(&dead, "test").await.is_err());
    }
}

//! Connecting, with retries.

use lapin::{Connection, ConnectionProperties};
use sendfleet_config::BrokerConfig;
use sendfleet_telemetry::metrics::BROKER_CONNECTIONS_TOTAL;
use tokio_util::sync::CancellationToken;

use crate::BrokerError;

/// One connection attempt, named `sendfleet-<service>-<prefix>-<pid>` in the broker's
/// UI so operators (and tests) can tell fleets apart.
pub async fn connect_once(config: &BrokerConfig, service: &str) -> Result<Connection, BrokerError> {
    let name = format!("sendfleet-{service}-{}-{}", config.prefix, std::process::id());
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    // Checked with lapin's parser before lapin sees it: for some unparseable URLs its
    // error quotes the whole URL, which would then be logged on every retry.
    config.url.check().map_err(|problem| BrokerError::InvalidUrl { url: config.url.to_string(), problem })?;
    let connection = Connection::connect(config.url.expose(), properties).await?;
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
    use sendfleet_config::RedactedUrl;

    use super::*;

    #[tokio::test]
    async fn an_unparseable_url_is_refused_without_quoting_it() {
        // Without a `//` lapin's parser answers "Invalid URL: '<the whole URL>'".
        for url in ["amqp:guest:Zq8kWx3v@127.0.0.1", "amqp://guest:Zq8k/Wx3v@127.0.0.1/%2f"] {
            let config = BrokerConfig { url: RedactedUrl::new(url), ..BrokerConfig::default() };
            let err = connect_once(&config, "test").await.expect_err("refused");
            for text in [err.to_string(), format!("{err:?}")] {
                assert!(!text.contains("Zq8k") && !text.contains("Wx3v"), "{text}");
            }
            assert!(matches!(err, BrokerError::InvalidUrl { .. }), "{err}");
        }
    }
}

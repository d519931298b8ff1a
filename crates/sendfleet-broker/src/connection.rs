//! Connecting, with retries.

use std::time::Duration;

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
    let connection = Connection::connect(config.url.expose(), properties).await?;
    metrics::counter!(BROKER_CONNECTIONS_TOTAL, "service" => service.to_owned()).increment(1);
    Ok(connection)
}

/// Connects, retrying with exponential backoff (0.2 s doubling to 5 s) until it works
/// or `shutdown` is cancelled. Each failure is logged with the redacted URL.
pub async fn connect(
    config: &BrokerConfig,
    service: &str,
    shutdown: &CancellationToken,
) -> Result<Connection, BrokerError> {
    let mut delay = Duration::from_millis(200);
    loop {
        match connect_once(config, service).await {
            Ok(connection) => return Ok(connection),
            Err(err) => {
                tracing::warn!(url = %config.url, error = %err, retry_in_ms = delay.as_millis() as u64, "cannot reach the broker");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Err(BrokerError::ShuttingDown),
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

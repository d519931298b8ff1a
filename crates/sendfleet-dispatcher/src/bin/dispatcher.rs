//! dispatcher: validates send requests and routes them to provider queues.

use std::sync::Arc;

use clap::Parser;
use sendfleet_config::cli::ConfigArgs;
use tokio_util::sync::CancellationToken;

/// Consumes the requests queue, validates each request and publishes one job per
/// recipient to the provider's queue; invalid requests go to the rejected queue.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Args::parse().config.load_or_exit();
    sendfleet_telemetry::init_tracing(&config.telemetry);
    let shutdown = CancellationToken::new();
    tokio::spawn(sendfleet_telemetry::shutdown_signal(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(&config.dispatcher.listen).await?;
    tracing::info!(listen = %config.dispatcher.listen, broker = %config.broker.url, "dispatcher starting");
    sendfleet_dispatcher::run(Arc::new(config), listener, shutdown).await?;
    tracing::info!("dispatcher stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Args::command().debug_assert();
    }
}

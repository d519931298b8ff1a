//! sender-worker: consumes send jobs and calls the providers.

use std::sync::Arc;

use clap::Parser;
use sendfleet_config::cli::{self, ConfigArgs};
use tokio_util::sync::CancellationToken;

/// Consumes `jobs.<provider>` queues, sends through the providers' APIs within their
/// rate and concurrency, and publishes outcome events.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

// The fleet's allocator (sendfleet-alloc says why).
#[global_allocator]
static ALLOCATOR: sendfleet_alloc::Allocator = sendfleet_alloc::ALLOCATOR;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sendfleet_alloc::tune();
    // Fault tests only: without the failpoints feature this reads nothing.
    sendfleet_failpoints::setup();
    let args: Args = cli::parse_args();
    let loaded = args.config.load_or_exit(&sendfleet_providers::VENDORS);
    sendfleet_telemetry::init_tracing(&loaded.config.telemetry);
    loaded.log_warnings();
    let config = loaded.config;
    let shutdown = CancellationToken::new();
    tokio::spawn(sendfleet_telemetry::shutdown_signal(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(&config.worker.listen).await?;
    tracing::info!(listen = %config.worker.listen, broker = %config.broker.url, "sender-worker starting");
    sendfleet_sender_worker::run(Arc::new(config), listener, shutdown).await?;
    tracing::info!("sender-worker stopped");
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

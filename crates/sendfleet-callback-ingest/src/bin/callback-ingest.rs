//! callback-ingest: receives provider callbacks and publishes events.

use std::sync::Arc;

use clap::{Parser, Subcommand};
use sendfleet_config::cli::{self, ConfigArgs};
use tokio_util::sync::CancellationToken;

/// Receives delivery reports, inbound messages and events from providers on
/// per-provider URLs and publishes them as normalised events.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print each provider's callback URLs (delivery reports, inbound messages, and for
    /// RCS seen reports and events) for pasting into the vendor's portal, one per line:
    /// provider, purpose, URL. The URLs embed secrets: handle them as such. The same as
    /// `sendfleet callback-urls`.
    CallbackUrls,
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
    let config = &loaded.config;
    if let Some(Command::CallbackUrls) = args.command {
        for warning in &loaded.warnings {
            eprintln!("warning: {warning}");
        }
        for provider in sendfleet_callback_ingest::callback_urls(config) {
            for line in provider.lines() {
                println!("{line}");
            }
        }
        return Ok(());
    }
    sendfleet_telemetry::init_tracing(&config.telemetry);
    loaded.log_warnings();
    let config = loaded.config;
    let shutdown = CancellationToken::new();
    tokio::spawn(sendfleet_telemetry::shutdown_signal(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(&config.callback_ingest.listen).await?;
    tracing::info!(listen = %config.callback_ingest.listen, broker = %config.broker.url, "callback-ingest starting");
    sendfleet_callback_ingest::run(Arc::new(config), listener, shutdown).await?;
    tracing::info!("callback-ingest stopped");
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

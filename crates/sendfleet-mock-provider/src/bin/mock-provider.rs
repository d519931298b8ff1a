//! mock-provider: the providers' HTTP APIs on loopback, for the demo, compose and bench.

use clap::Parser;
use sendfleet_mock_provider::{Behaviour, MockConfig};
use tokio_util::sync::CancellationToken;

// The mock stands for a provider on another machine; in the bench it shares two cores
// with the fleet, so it uses the fleet's lean allocator set-up too.
#[global_allocator]
static ALLOCATOR: sendfleet_alloc::Allocator = sendfleet_alloc::ALLOCATOR;

/// Serves Infobip-compatible SMS/RCS endpoints, records what arrives and posts
/// delivery reports back. Control it with GET /mock/stats, PUT /mock/behaviour.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Listen address.
    #[arg(long, env = "MOCK_LISTEN", default_value = "127.0.0.1:9200")]
    listen: String,
    /// Accepted API keys (`Authorization: App <key>`), comma separated.
    #[arg(long, env = "MOCK_API_KEYS", value_delimiter = ',', required = true)]
    api_keys: Vec<String>,
    /// Latency before each answer, ms.
    #[arg(long, env = "MOCK_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Extra random latency, 0..=N ms.
    #[arg(long, env = "MOCK_LATENCY_JITTER_MS", default_value_t = 0)]
    latency_jitter_ms: u64,
    /// Delivery-report URL for messages that name none.
    #[arg(long, env = "MOCK_DLR_URL")]
    dlr_url: Option<String>,
    /// Do not post delivery reports.
    #[arg(long)]
    no_delivery_reports: bool,
    /// Keep only counters and timestamps, not bodies (long bench runs).
    #[arg(long)]
    no_record_bodies: bool,
    /// Share of numbers (0.0-1.0, chosen by a hash of the number) that are not RCS
    /// capable: the capability check says so and RCS sends to them fail by report.
    #[arg(long, default_value_t = 0.0)]
    not_rcs_capable_ratio: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sendfleet_alloc::tune();
    let args = Args::parse();
    sendfleet_telemetry::init_tracing(&sendfleet_config::TelemetryConfig::default());
    let shutdown = CancellationToken::new();
    tokio::spawn(sendfleet_telemetry::shutdown_signal(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let behaviour = Behaviour {
        latency_ms: args.latency_ms,
        latency_jitter_ms: args.latency_jitter_ms,
        delivery_reports: !args.no_delivery_reports,
        record_bodies: !args.no_record_bodies,
        not_rcs_capable_ratio: args.not_rcs_capable_ratio,
        ..Behaviour::default()
    };
    let config =
        MockConfig { twilio_auth_token: None, api_keys: args.api_keys, default_dlr_url: args.dlr_url, behaviour };
    let handle = sendfleet_mock_provider::start(listener, config, shutdown.clone()).await?;
    tracing::info!(addr = %handle.addr(), "mock provider listening");
    shutdown.cancelled().await;
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

//! Telemetry shared by every sendfleet binary: tracing set-up, the metrics catalogue
//! (names, units, help text), the `/metrics` + `/health` router, and the shutdown signal.

pub mod metrics;
mod ops;
mod shutdown;

pub use ops::{Readiness, ops_router, serve};
pub use shutdown::shutdown_signal;

use sendfleet_config::{LogFormat, TelemetryConfig};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global tracing subscriber (text or JSON lines on stderr). `RUST_LOG`
/// wins over the configured filter. Calling it twice is harmless (tests do).
pub fn init_tracing(config: &TelemetryConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.log_format {
        LogFormat::Text => registry.with(fmt::layer().with_writer(std::io::stderr)).try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true).with_current_span(true).with_writer(std::io::stderr))
            .try_init(),
    };
    // Already installed (several services in one test process): keep the first.
    drop(result);
}

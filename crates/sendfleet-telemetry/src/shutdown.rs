//! The shutdown trigger of the binaries.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on SIGTERM or Ctrl-C, logging which one arrived. Spawn it from `main`;
/// libraries only ever see the token, so tests can cancel it themselves.
pub async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "shutting down"),
        () = terminate => tracing::info!(signal = "SIGTERM", "shutting down"),
        () = token.cancelled() => {}
    }
    token.cancel();
}

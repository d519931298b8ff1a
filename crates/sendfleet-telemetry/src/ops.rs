//! The operations endpoints every binary serves: `/metrics`, `/health`, `/livez`.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, http::StatusCode, routing::get};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

/// Whether the process is ready for work (connected to the broker, topology declared).
/// Cheap to clone; set by the service, read by `/health`.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks ready or not ready.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    /// Current state.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// `/metrics` (Prometheus text), `/health` (200 when ready, else 503) and `/livez`
/// (200 while the process runs). Services merge their own routes into it.
pub fn ops_router(metrics: PrometheusHandle, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(move || std::future::ready(metrics.render())))
        .route(
            "/health",
            get(move || {
                let status = if readiness.is_ready() {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                };
                std::future::ready(status)
            }),
        )
        .route("/livez", get(|| std::future::ready("ok")))
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets in-flight
/// requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    #[tokio::test]
    async fn health_follows_readiness() {
        let handle = crate::metrics::install();
        let readiness = Readiness::default();
        let router = ops_router(handle, readiness.clone());
        let get = |path: &str| axum::http::Request::get(path).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(get("/health")).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        readiness.set(true);
        let response = router.clone().oneshot(get("/health")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let response = router.oneshot(get("/metrics")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

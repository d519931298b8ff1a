//! The dispatcher: consumes send requests, validates them, resolves the provider and
//! publishes one send job per recipient to `jobs.<provider>`. Invalid requests are
//! never dropped: they go to the rejected queue with the reason in a header and in
//! the body. A request is acked only after its jobs (or its rejection) are confirmed.

mod api;
mod number;
pub mod openapi;
mod pipeline;
mod send_test;
mod template;
mod validate;

use std::{sync::Arc, time::Duration};

use sendfleet_broker::{ConsumerSpec, Publisher, ServiceOptions, Session, Topology};
use sendfleet_config::Config;
use sendfleet_telemetry::Readiness;
use tokio_util::sync::CancellationToken;

pub use api::{Accepted, BulkFailure, BulkReport, ErrorBody, EventAnswer, LineError};
pub use number::{NumberingPlan, check_destination, from_national, load_numbering_plans};
pub use send_test::{ProviderAnswer, SendTestRequest, SendTestResult, send_test};
pub use sendfleet_protocol::RejectedRequest;
pub use template::{RenderError, Variables, render_content, render_text};
pub use validate::{Planner, Rejection, RequestIdentity, plan, plan_derived};

/// Why the dispatcher stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    /// The HTTP listener failed.
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    /// The broker cannot be used as configured (a queue exists with other arguments).
    #[error(transparent)]
    Broker(#[from] sendfleet_broker::BrokerError),
}

/// Runs the dispatcher until `shutdown`: serves the HTTP API (`/v1/*`), `/metrics` and
/// `/health` on `listener` and consumes the requests queue.
pub async fn run(
    config: Arc<Config>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), DispatcherError> {
    if config.dispatcher.check_numbering_plan {
        // The first check loads the plans (about 0.3 s): now, not during a request.
        drop(tokio::task::spawn_blocking(load_numbering_plans).await);
    }
    let metrics = sendfleet_telemetry::metrics::install();
    sendfleet_telemetry::metrics::record_process("dispatcher", &config.broker);
    register_metrics(&config);
    let readiness = Readiness::default();
    let api = Arc::new(api::ApiState::new(config.clone()));
    let router = app(sendfleet_telemetry::ops_router(metrics, readiness.clone()), api.clone());
    // The API stops with the service, also when the sessions end on a fatal broker error.
    let stop_server = shutdown.child_token();
    let server = tokio::spawn(sendfleet_telemetry::serve(listener, router, stop_server.clone()));
    let options = ServiceOptions {
        broker: &config.broker,
        service: "dispatcher",
        readiness,
        shutdown,
        grace: Duration::from_secs(config.dispatcher.shutdown_grace_seconds),
    };
    let sessions = sendfleet_broker::run_sessions(options, |connection| {
        let config = config.clone();
        let api = api.clone();
        async move {
            let topology = Topology::new(&config.broker);
            let channel = connection.create_channel().await?;
            topology.declare(&channel, &config.provider_ids()).await?;
            let publisher = Publisher::open(&connection).await?;
            api.set_publisher(publisher.clone());
            let ctx = Arc::new(pipeline::Context {
                config: config.clone(),
                publisher: publisher.clone(),
                topology: topology.clone(),
            });
            let spec = ConsumerSpec {
                queue: topology.requests_queue(),
                prefetch: config.dispatcher.concurrency,
                handler: Arc::new(move |inbound| Box::pin(pipeline::handle(ctx.clone(), inbound))),
            };
            Ok(Session { connection, consumers: vec![spec], publishers: vec![publisher] })
        }
    })
    .await;
    stop_server.cancel();
    server.await.ok().transpose()?;
    sessions?;
    Ok(())
}

/// Every route the dispatcher serves: the ops routes (`/metrics`, `/health`, `/livez`),
/// `/openapi.json` and the API. The OpenAPI document must list each one (a test checks).
fn app(ops: axum::Router, api: Arc<api::ApiState>) -> axum::Router {
    let document = openapi::document_text();
    let openapi = axum::Router::new().route(
        "/openapi.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], document) }
        }),
    );
    ops.merge(openapi).merge(api::router(api))
}

/// Registers the request and per-provider job series at zero, so dashboards see every
/// provider from the first scrape.
fn register_metrics(config: &Config) {
    use sendfleet_telemetry::metrics as names;
    for outcome in ["accepted", "rejected"] {
        metrics::counter!(names::REQUESTS_TOTAL, "outcome" => outcome).absolute(0);
    }
    for provider in &config.providers {
        metrics::counter!(names::JOBS_PUBLISHED_TOTAL, "provider" => provider.id.clone()).absolute(0);
    }
}

//! The worker's broker session: declare the topology, open the confirmed publisher and
//! consume every served provider's queues (one per priority lane).

use std::{sync::Arc, time::Duration};

use sendfleet_broker::{ConsumerSpec, Publisher, ServiceOptions, Session, Topology, lapin::Connection};
use sendfleet_config::Config;
use sendfleet_protocol::Priority;
use sendfleet_telemetry::Readiness;
use tokio_util::sync::CancellationToken;

use crate::{ProviderRuntime, pipeline};

/// Runs the worker's sessions until shutdown (or a fatal broker error).
pub(crate) async fn run_sessions(
    config: Arc<Config>,
    providers: Vec<Arc<ProviderRuntime>>,
    sent: crate::sent::SentLog,
    fallbacks: sendfleet_fallback::Fallbacks,
    status: sendfleet_status::StatusWriter,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), sendfleet_broker::BrokerError> {
    let options = ServiceOptions {
        broker: &config.broker,
        service: "sender-worker",
        readiness,
        shutdown,
        grace: Duration::from_secs(config.worker.shutdown_grace_seconds),
    };
    sendfleet_broker::run_sessions(options, |connection| {
        setup(config.clone(), providers.clone(), sent.clone(), fallbacks.clone(), status.clone(), connection)
    })
    .await
}

async fn setup(
    config: Arc<Config>,
    providers: Vec<Arc<ProviderRuntime>>,
    sent: crate::sent::SentLog,
    fallbacks: sendfleet_fallback::Fallbacks,
    status: sendfleet_status::StatusWriter,
    connection: Connection,
) -> Result<Session, sendfleet_broker::BrokerError> {
    let topology = Topology::new(&config.broker);
    let channel = connection.create_channel().await?;
    topology.declare(&channel, &config.provider_ids()).await?;
    let publisher = Publisher::open(&connection).await?;
    let ctx = Arc::new(pipeline::SessionContext {
        event_metrics: crate::metrics::EventMetrics::new(),
        sent,
        fallbacks,
        status,
        config: config.clone(),
        topology: topology.clone(),
        publisher: publisher.clone(),
    });
    // One consumer per lane: each lane's queue is read on its own, so a deep bulk queue
    // never stands between a high job and the worker.
    let consumers = providers
        .into_iter()
        .flat_map(|provider| Priority::ALL.map(|lane| (provider.clone(), lane)))
        .map(|(provider, lane)| {
            let ctx = ctx.clone();
            ConsumerSpec {
                queue: topology.lane_queue(&provider.adapter.config().id, lane),
                prefetch: provider.prefetch,
                handler: Arc::new(move |inbound| Box::pin(pipeline::handle(ctx.clone(), provider.clone(), inbound))),
            }
        })
        .collect();
    Ok(Session { connection, consumers, publishers: vec![publisher] })
}

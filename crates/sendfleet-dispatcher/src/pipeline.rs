//! One request, from delivery to ack.

use std::sync::Arc;

use futures_util::future::try_join_all;
use metrics::counter;
use sendfleet_broker::{BrokerError, Inbound, Publisher, Topology};
use sendfleet_config::Config;
use sendfleet_failpoints::Point;
use sendfleet_protocol::{RejectedRequest, SCHEMA_VERSION, SendJob, SendRequest, decode};
use sendfleet_telemetry::metrics as names;

use crate::{Rejection, RequestIdentity, plan_derived};

pub(crate) struct Context {
    pub config: Arc<Config>,
    pub publisher: Publisher,
    pub topology: Topology,
}

pub(crate) async fn handle(ctx: Arc<Context>, inbound: Inbound) {
    let planned = decode::<SendRequest>(inbound.data())
        .map_err(|err| Rejection { code: err.label(), reason: err.to_string() })
        .and_then(|mut request| {
            // A producer may carry the trace id as a header only.
            if request.trace_id.is_none() {
                request.trace_id = inbound.trace_id();
            }
            // Redelivered after a crash or a lost connection, the same request must
            // plan the same jobs: its generated ids derive from its bytes.
            let identity = RequestIdentity::new(inbound.data(), inbound.amqp_message_id(), inbound.amqp_timestamp());
            plan_derived(request, &ctx.config, identity)
        });
    let result = match planned {
        Ok(jobs) => publish_jobs(&ctx, inbound, &jobs).await,
        Err(rejection) => reject(&ctx, inbound, rejection).await,
    };
    if let Err(err) = result {
        tracing::warn!(error = %err, "request not settled; the broker will redeliver it");
    }
}

async fn publish_jobs(ctx: &Context, inbound: Inbound, jobs: &[SendJob]) -> Result<(), BrokerError> {
    let publishes = jobs.iter().map(|job| ctx.publisher.publish_job(&ctx.topology, job));
    let confirmed = match try_join_all(publishes).await {
        Ok(_) => sendfleet_failpoints::hit(Point::DispatcherJobsConfirmed).await.map_err(BrokerError::from),
        Err(err) => Err(err),
    };
    match confirmed {
        Ok(()) => {
            for job in jobs {
                counter!(names::JOBS_PUBLISHED_TOTAL, "provider" => job.provider.clone()).increment(1);
            }
            counter!(names::REQUESTS_TOTAL, "outcome" => "accepted").increment(1);
            tracing::debug!(jobs = jobs.len(), "request dispatched");
            ack(inbound).await
        }
        Err(err) => {
            drop(inbound.requeue().await);
            Err(err)
        }
    }
}

async fn reject(ctx: &Context, inbound: Inbound, rejection: Rejection) -> Result<(), BrokerError> {
    tracing::info!(code = rejection.code, reason = %rejection.reason, "request rejected");
    counter!(names::REQUESTS_TOTAL, "outcome" => "rejected").increment(1);
    counter!(names::REQUESTS_REJECTED_TOTAL, "reason" => rejection.code).increment(1);
    let rejected = RejectedRequest {
        schema_version: SCHEMA_VERSION,
        reason_code: rejection.code.to_owned(),
        reason: rejection.reason.clone(),
        original: inbound.data().to_vec(),
    };
    match ctx.publisher.publish_rejected(&ctx.topology, &rejected, inbound.trace_id()).await {
        Ok(()) => ack(inbound).await,
        Err(err) => {
            drop(inbound.requeue().await);
            Err(err)
        }
    }
}

/// Acks a settled request (an injected fault leaves it unacked: the broker redelivers).
async fn ack(inbound: Inbound) -> Result<(), BrokerError> {
    sendfleet_failpoints::hit(Point::DispatcherBeforeAck).await?;
    inbound.ack().await
}

//! One request, from delivery to ack.

use std::sync::Arc;

use futures_util::future::try_join_all;
use metrics::counter;
use schemars::JsonSchema;
use sendfleet_broker::{
    BrokerError, Inbound, Outgoing, Publisher, REASON_CODE_HEADER, REASON_HEADER, TRACE_HEADER, Topology,
};
use sendfleet_config::Config;
use sendfleet_failpoints::Point;
use sendfleet_protocol::{SCHEMA_VERSION, SendJob, SendRequest, Versioned, decode, encode};
use sendfleet_telemetry::metrics as names;
use serde::{Deserialize, Serialize};

use crate::{Rejection, RequestIdentity, plan_derived};

pub(crate) struct Context {
    pub config: Arc<Config>,
    pub publisher: Publisher,
    pub topology: Topology,
}

/// The body of a message in the rejected queue: why, and the original bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RejectedRequest {
    /// Schema version of this document (currently 1).
    #[schemars(extend("const" = 1))]
    pub schema_version: u16,
    /// Bounded reason code (`invalid_destination`, `malformed`, …); equal to the
    /// `x-sendfleet-reason-code` header.
    pub reason_code: String,
    /// What is wrong, for a human; equal to the `x-sendfleet-reason` header.
    pub reason: String,
    /// The request exactly as received: a MessagePack bin (byte string), shown in the
    /// JSON view as an array of integers 0-255.
    #[serde(with = "serde_bytes")]
    #[schemars(with = "Vec<u8>")]
    pub original: Vec<u8>,
}

impl Versioned for RejectedRequest {
    fn schema_version(&self) -> u16 {
        self.schema_version
    }
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

/// Publishes one job to its provider's queue and waits for the confirm.
pub(crate) async fn publish_job(
    publisher: &Publisher,
    exchange: &str,
    job: &SendJob,
    bytes: Vec<u8>,
) -> Result<(), BrokerError> {
    let key = Topology::job_routing_key(&job.provider);
    let outgoing =
        Outgoing::new(exchange, &key, &bytes).message_id(&job.message_id).header(TRACE_HEADER, job.trace_id.clone());
    publisher.publish(outgoing).await
}

async fn publish_jobs(ctx: &Context, inbound: Inbound, jobs: &[SendJob]) -> Result<(), BrokerError> {
    let exchange = ctx.topology.jobs_exchange();
    let publishes = jobs.iter().map(|job| publish_job(&ctx.publisher, &exchange, job, encode(job)));
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
    let body = encode(&RejectedRequest {
        schema_version: SCHEMA_VERSION,
        reason_code: rejection.code.to_owned(),
        reason: rejection.reason.clone(),
        original: inbound.data().to_vec(),
    });
    let exchange = ctx.topology.dead_exchange();
    let mut outgoing = Outgoing::new(&exchange, Topology::rejected_key(), &body)
        .header(REASON_CODE_HEADER, rejection.code)
        .header(REASON_HEADER, rejection.reason.clone());
    if let Some(trace) = inbound.trace_id() {
        outgoing = outgoing.header(TRACE_HEADER, trace);
    }
    match ctx.publisher.publish(outgoing).await {
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

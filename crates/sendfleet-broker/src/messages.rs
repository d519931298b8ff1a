//! One publish path per protocol type: where a send job, an event, a retry copy, a dead
//! letter and a rejected request go, with which properties and headers, in one place.
//! Every caller (dispatcher, sender-worker, SMS fallback, callback-ingest) publishes
//! through these, so a job looks the same whoever published it.

use sendfleet_protocol::{Event, RejectedRequest, SendJob, encode};

use crate::{BrokerError, Outgoing, Publisher, REASON_CODE_HEADER, REASON_HEADER, RetryTier, TRACE_HEADER, Topology};

impl Publisher {
    /// A send job to its provider's queue of its lane: mandatory (unroutable is an error), AMQP
    /// message id = the job's, trace id header. Waits for the confirm.
    pub async fn publish_job(&self, topology: &Topology, job: &SendJob) -> Result<(), BrokerError> {
        let bytes = encode(job);
        let exchange = topology.jobs_exchange();
        let key = Topology::job_routing_key(&job.provider, job.priority);
        let outgoing = Outgoing::new(&exchange, &key, &bytes)
            .message_id(&job.message_id)
            .header(TRACE_HEADER, job.trace_id.clone());
        self.publish(outgoing).await
    }

    /// An event to the events exchange, routing key `<kind>.<channel>.<provider>`: not
    /// mandatory (an event nobody is bound for is not lost work), trace id header when
    /// the event has one. Waits for the confirm.
    pub async fn publish_event(&self, topology: &Topology, event: &Event) -> Result<(), BrokerError> {
        let bytes = encode(event);
        let exchange = topology.events_exchange();
        let key = event.routing_key();
        let mut outgoing = Outgoing::new(&exchange, &key, &bytes).optional();
        if let Some(trace) = &event.trace_id {
            outgoing = outgoing.header(TRACE_HEADER, trace.clone());
        }
        self.publish(outgoing).await
    }

    /// A job's copy parked in a retry tier (it returns to its provider's queue when the
    /// tier's TTL ends): mandatory, message id and trace id. Waits for the confirm.
    pub async fn publish_retry(&self, topology: &Topology, job: &SendJob, tier: RetryTier) -> Result<(), BrokerError> {
        let bytes = encode(job);
        let exchange = topology.retry_exchange();
        let key = Topology::retry_routing_key(tier, &job.provider, job.priority);
        let outgoing = Outgoing::new(&exchange, &key, &bytes)
            .message_id(&job.message_id)
            .header(TRACE_HEADER, job.trace_id.clone());
        self.publish(outgoing).await
    }

    /// A job given up on, to the dead-letter queue with its reason code and reason in
    /// headers: mandatory, message id and trace id. Waits for the confirm.
    pub async fn publish_dead_letter(
        &self,
        topology: &Topology,
        job: &SendJob,
        reason_code: &str,
        reason: &str,
    ) -> Result<(), BrokerError> {
        let bytes = encode(job);
        let exchange = topology.dead_exchange();
        let outgoing = Outgoing::new(&exchange, Topology::dead_letter_key(), &bytes)
            .message_id(&job.message_id)
            .header(REASON_CODE_HEADER, reason_code)
            .header(REASON_HEADER, reason)
            .header(TRACE_HEADER, job.trace_id.clone());
        self.publish(outgoing).await
    }

    /// A request the dispatcher refused, to the rejected queue with its reason code and
    /// reason in headers (and the request's trace id, when it had one). Waits for the
    /// confirm.
    pub async fn publish_rejected(
        &self,
        topology: &Topology,
        rejected: &RejectedRequest,
        trace_id: Option<String>,
    ) -> Result<(), BrokerError> {
        let bytes = encode(rejected);
        let exchange = topology.dead_exchange();
        let mut outgoing = Outgoing::new(&exchange, Topology::rejected_key(), &bytes)
            .header(REASON_CODE_HEADER, rejected.reason_code.clone())
            .header(REASON_HEADER, rejected.reason.clone());
        if let Some(trace) = trace_id {
            outgoing = outgoing.header(TRACE_HEADER, trace);
        }
        self.publish(outgoing).await
    }
}

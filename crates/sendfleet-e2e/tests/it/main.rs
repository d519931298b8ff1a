//! End-to-end tests: the fleet in-process against the real RabbitMQ and the mock
//! provider. Each test runs in its own broker namespace.

mod concurrency;
mod dispatch;
mod docs;
mod fallback;
mod faults;
mod features;
mod generic;
mod http_api;
mod lanes;
mod local_cluster;
mod metrics;
mod python;
mod quorum;
mod rabbit_cluster;
mod redis_failover;
mod send;
mod senders;
mod startup;
mod status;
mod twilio;

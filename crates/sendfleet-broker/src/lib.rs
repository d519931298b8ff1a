//! RabbitMQ plumbing shared by every sendfleet process.
//!
//! - [`Topology`]: every exchange and queue name (all under the configured prefix) and
//!   their declaration.
//! - [`Publisher`]: publishing with publisher confirms; a nack or an unroutable
//!   mandatory message is an error, never a silent loss.
//! - [`Inbound`]: a consumed message whose only exits are ack, or a confirmed
//!   republish (dead letter, retry, rejection) followed by ack.
//! - [`connect`]: a connection with a name, retried with backoff until it succeeds or
//!   shutdown is requested.
//! - [`run_sessions`]: the life of a consuming service (reconnect on loss, drain on
//!   shutdown).

mod acks;
mod connection;
mod delivery;
mod error;
mod messages;
mod publisher;
mod reconnect;
mod service;
mod topology;

pub use acks::AckBatcher;
pub use connection::{connect, connect_once};
pub use delivery::{Inbound, consume};
pub use error::BrokerError;
pub use lapin;
pub use publisher::{Outgoing, Publisher};
pub use reconnect::Reconnect;
pub use service::{ConsumerSpec, Handler, ServiceOptions, Session, run_sessions};
pub use topology::{RETRY_TIERS, RetryTier, Topology};

/// Header carrying the reason a message was rejected or dead-lettered.
pub const REASON_HEADER: &str = "x-sendfleet-reason";
/// Header carrying the short, bounded reason code (for tooling and metrics).
pub const REASON_CODE_HEADER: &str = "x-sendfleet-reason-code";
/// Header carrying the trace id of the message.
pub const TRACE_HEADER: &str = "x-sendfleet-trace-id";
/// MessagePack content type of every document we publish.
pub const CONTENT_TYPE: &str = "application/msgpack";

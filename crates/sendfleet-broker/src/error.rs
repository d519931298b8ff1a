//! Broker errors.

/// What went wrong talking to RabbitMQ. Every variant means "the outcome is not safely
/// in the broker": callers must not ack the message that caused the publish.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker URL cannot be parsed (a config built without validation). Holds the
    /// redacted URL: lapin's own parse error would quote the URL, password included.
    #[error("broker URL {url} {problem}")]
    InvalidUrl {
        /// The URL as it may be logged.
        url: String,
        /// Why it does not parse (never quotes the URL).
        problem: sendfleet_config::UrlError,
    },
    /// Connection, channel or protocol failure.
    #[error("broker: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker refused to take responsibility for a published message.
    #[error("broker nacked the publish to {exchange}/{routing_key}")]
    Nacked {
        /// Exchange published to.
        exchange: String,
        /// Routing key used.
        routing_key: String,
    },
    /// A mandatory message matched no queue; it would have been lost.
    #[error("no queue bound for {exchange}/{routing_key} (message returned)")]
    Unroutable {
        /// Exchange published to.
        exchange: String,
        /// Routing key used.
        routing_key: String,
    },
    /// A queue already exists with other arguments than this process declares (RabbitMQ
    /// answered PRECONDITION_FAILED). Not transient: retrying cannot help, so services
    /// stop. `config_key` names the setting behind the differing argument.
    #[error(
        "queue {queue} already exists with other arguments than this process declares ({broker_message}); {}",
        mismatch_advice(*config_key)
    )]
    QueueMismatch {
        /// The queue.
        queue: String,
        /// The config key that sets the differing argument, when one does.
        config_key: Option<&'static str>,
        /// RabbitMQ's reason, naming the argument and both values.
        broker_message: String,
    },
    /// A consumer stopped: the channel or connection is gone.
    #[error("broker connection lost")]
    ConnectionLost,
    /// A broker node did not accept a connection in time.
    #[error("broker node did not accept a connection within {0:?}")]
    ConnectTimeout(std::time::Duration),
    /// Shutdown was requested while waiting for the broker.
    #[error("shutting down")]
    ShuttingDown,
    /// A fault test failed this step on purpose (failpoints are compiled in test builds only).
    #[error(transparent)]
    Injected(#[from] sendfleet_failpoints::Injected),
}

fn mismatch_advice(config_key: Option<&'static str>) -> String {
    match config_key {
        Some(key) => format!(
            "set {key} to the existing queue's value, or delete the queue (its messages are lost) so it is declared anew"
        ),
        None => "the queue was declared by hand or by another sendfleet version: delete it (its messages are lost) \
                 so it is declared anew"
            .to_owned(),
    }
}

impl BrokerError {
    /// Whether retrying (reconnecting) cannot help: the service must stop and say why.
    pub fn is_fatal(&self) -> bool {
        matches!(self, BrokerError::QueueMismatch { .. })
    }
}

//! `queues`: how much work waits where.

use std::time::Duration;

use sendfleet_broker::{
    RETRY_TIERS, Topology,
    lapin::{Channel, Connection, options::QueueDeclareOptions, types::FieldTable},
};
use sendfleet_config::Config;
use sendfleet_protocol::Priority;
use serde::{Deserialize, Serialize};

use crate::{CliError, Exit, output};

/// One queue's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueDepth {
    /// Queue name.
    pub queue: String,
    /// `jobs`, `retry`, `dead_letters`, `rejected`, `requests` or `events`.
    pub kind: &'static str,
    /// The provider of a jobs queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The priority lane of a jobs queue (`high`, `normal`, `bulk`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<&'static str>,
    /// Messages ready for delivery; `None` when the queue does not exist.
    pub ready: Option<u32>,
    /// Delivered and not yet acked (only with the management API).
    pub unacked: Option<u64>,
    /// Consumers.
    pub consumers: Option<u32>,
}

/// What the management API says of a queue (`GET /api/queues/<vhost>/<name>`).
#[derive(Debug, Deserialize, PartialEq)]
pub(crate) struct ManagedQueue {
    #[serde(default)]
    messages_ready: Option<u64>,
    #[serde(default)]
    messages_unacknowledged: Option<u64>,
    #[serde(default)]
    consumers: Option<u64>,
}

/// Every queue of the fleet: each provider's jobs queue per lane, the retry tiers (shared by
/// all providers), dead letters, rejected requests, requests and events.
fn queues(config: &Config) -> Vec<QueueDepth> {
    let topology = Topology::new(&config.broker);
    let depth = |queue: String, kind, provider: Option<String>| QueueDepth {
        queue,
        kind,
        provider,
        lane: None,
        ready: None,
        unacked: None,
        consumers: None,
    };
    let mut all = Vec::new();
    for provider in &config.providers {
        for lane in Priority::ALL {
            let queue = topology.lane_queue(&provider.id, lane);
            all.push(QueueDepth { lane: Some(lane.as_str()), ..depth(queue, "jobs", Some(provider.id.clone())) });
        }
    }
    all.extend(RETRY_TIERS.iter().map(|tier| depth(topology.retry_queue(*tier), "retry", None)));
    all.push(depth(topology.dead_letter_queue(), "dead_letters", None));
    all.push(depth(topology.rejected_queue(), "rejected", None));
    all.push(depth(topology.requests_queue(), "requests", None));
    all.push(depth(topology.events_queue(), "events", None));
    all
}

/// Reads every queue's depth (passive declares, and the management API when given).
pub(crate) async fn run(config: &Config, management_url: Option<&str>, json: bool) -> Result<Exit, CliError> {
    let connection = connect(config).await?;
    let mut depths = queues(config);
    let declared = declare_all(&connection, &mut depths).await;
    drop(tokio::time::timeout(BROKER_ANSWER, connection.close(200, "done".into())).await);
    declared?;
    if let Some(url) = management_url {
        let vhost = vhost(config.broker.url.expose());
        for depth in &mut depths {
            let managed = managed(url, &vhost, &depth.queue).await?;
            if let Some(managed) = managed {
                depth.unacked = managed.messages_unacknowledged;
                depth.ready = managed.messages_ready.and_then(|n| u32::try_from(n).ok()).or(depth.ready);
                depth.consumers = managed.consumers.and_then(|n| u32::try_from(n).ok()).or(depth.consumers);
            }
        }
    }
    if json {
        output::json(&depths);
    } else {
        output::depths(&depths);
    }
    Ok(Exit::Done)
}

/// How long one broker call may take: a passive declare on a channel the broker is
/// closing can wait forever (seen once in CI), so no call is awaited without a bound.
const BROKER_ANSWER: Duration = Duration::from_secs(10);

/// Connects within [`BROKER_ANSWER`], trying twice.
async fn connect(config: &Config) -> Result<Connection, CliError> {
    for _ in 0..2 {
        if let Ok(connected) =
            tokio::time::timeout(BROKER_ANSWER, sendfleet_broker::connect_once(&config.broker, "cli")).await
        {
            return Ok(connected?);
        }
    }
    Err(CliError::NoAnswer(BROKER_ANSWER.as_secs(), "connecting"))
}

/// A fresh channel, within [`BROKER_ANSWER`].
async fn open_channel(connection: &Connection) -> Result<Channel, CliError> {
    tokio::time::timeout(BROKER_ANSWER, connection.create_channel())
        .await
        .map_err(|_| CliError::NoAnswer(BROKER_ANSWER.as_secs(), "opening a channel"))?
        .map_err(CliError::from)
}

/// A passive declare per queue; a missing queue closes its channel, so each missing
/// one costs a new channel. A declare that gets no answer is tried once more on a new
/// channel.
async fn declare_all(connection: &Connection, depths: &mut [QueueDepth]) -> Result<(), CliError> {
    let mut channel = open_channel(connection).await?;
    for depth in depths {
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        let mut tries = 0;
        loop {
            tries += 1;
            let declare = channel.queue_declare(depth.queue.as_str().into(), passive, FieldTable::default());
            match tokio::time::timeout(BROKER_ANSWER, declare).await {
                Ok(Ok(queue)) => {
                    depth.ready = Some(queue.message_count());
                    depth.consumers = Some(queue.consumer_count());
                }
                Ok(Err(_)) => channel = open_channel(connection).await?,
                Err(_) if tries < 2 => {
                    channel = open_channel(connection).await?;
                    continue;
                }
                Err(_) => return Err(CliError::NoAnswer(BROKER_ANSWER.as_secs(), "a passive queue declare")),
            }
            break;
        }
    }
    Ok(())
}

/// The vhost of an AMQP URL (`/` when the path is empty), as the management API wants it.
fn vhost(amqp_url: &str) -> String {
    let path = url::Url::parse(amqp_url).map(|u| u.path().trim_start_matches('/').to_owned()).unwrap_or_default();
    if path.is_empty() { "%2f".into() } else { path }
}

/// `GET <url>/api/queues/<vhost>/<queue>`, credentials from the URL as Basic auth;
/// `None` for a queue the broker does not have.
async fn managed(base: &str, vhost: &str, queue: &str) -> Result<Option<ManagedQueue>, CliError> {
    let mut url = url::Url::parse(base).map_err(|e| CliError::Usage(format!("--management-url: {e}")))?;
    let (user, password) = (url.username().to_owned(), url.password().map(str::to_owned));
    // Set aside: credentials go in a header, never into an error message.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let endpoint = format!("{}/api/queues/{vhost}/{queue}", url.as_str().trim_end_matches('/'));
    let mut request = reqwest::Client::new().get(&endpoint);
    if !user.is_empty() {
        request = request.basic_auth(user, password);
    }
    let response = request.send().await.map_err(|e| CliError::Management(e.without_url().to_string()))?;
    match response.status() {
        reqwest::StatusCode::NOT_FOUND => Ok(None),
        status if status.is_success() => {
            response.json().await.map(Some).map_err(|e| CliError::Management(e.without_url().to_string()))
        }
        status => Err(CliError::Management(format!("{endpoint} answered {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vhost_and_a_management_answer_are_read() {
        assert_eq!(vhost("amqp://guest:guest@127.0.0.1:5672/%2f"), "%2f");
        assert_eq!(vhost("amqp://guest:guest@127.0.0.1:5672"), "%2f");
        assert_eq!(vhost("amqps://u:p@rabbit/prod"), "prod");
        // The fields RabbitMQ's /api/queues/<vhost>/<name> answers with (others ignored).
        let answer = r#"{"name":"sendfleet.jobs.ib-sms","vhost":"/","messages":12,"messages_ready":10,
                         "messages_unacknowledged":2,"consumers":3,"state":"running"}"#;
        let managed: ManagedQueue = serde_json::from_str(answer).expect("parses");
        assert_eq!(
            managed,
            ManagedQueue { messages_ready: Some(10), messages_unacknowledged: Some(2), consumers: Some(3) }
        );
    }
}

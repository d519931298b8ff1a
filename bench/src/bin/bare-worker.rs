//! bare-worker: the bench's baseline. The same consume → POST → publish-confirmed →
//! ack loop as the sender-worker, with none of its features (no rate limit, no retries,
//! no classification, no metrics), so the report can state the worker's overhead as a
//! ratio measured in the same run.

use std::sync::Arc;

use clap::Parser;
use futures_util::StreamExt;
use sendfleet_broker::lapin::{
    BasicProperties, Connection, ConnectionProperties,
    options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions},
};
use sendfleet_protocol::{SendJob, decode};
use sendfleet_providers::{AdapterSettings, infobip::InfobipAdapter};

/// Consumes a job queue and sends each job to the mock as Infobip SMS, as fast as it can.
#[derive(Parser, Debug)]
struct Args {
    /// RabbitMQ URL.
    #[arg(long)]
    amqp_url: String,
    /// Job queue to consume.
    #[arg(long)]
    queue: String,
    /// Exchange to publish the outcome to.
    #[arg(long)]
    events_exchange: String,
    /// Provider base URL.
    #[arg(long)]
    base_url: String,
    /// API key.
    #[arg(long)]
    api_key: String,
    /// Unacked jobs in flight.
    #[arg(long, default_value_t = 512)]
    prefetch: u16,
    /// Public base URL of callback-ingest (as the sender-worker's config).
    #[arg(long)]
    callback_base_url: String,
}

/// The Infobip SMS body builder, configured like the bench's sender-worker provider.
fn adapter(args: &Args) -> anyhow::Result<InfobipAdapter> {
    let toml = format!(
        "id = \"demo-sms\"\nkind = \"infobip_sms\"\nbase_url = \"{}\"\nsender_ids = [\"SENDFLEET\"]\n",
        args.base_url
    );
    let mut config: sendfleet_config::ProviderConfig = toml::from_str(&toml)?;
    config.api_key = sendfleet_config::Secret::new(args.api_key.clone());
    config.callback_token = sendfleet_config::Secret::new("bench-callback-token-0123456789");
    Ok(InfobipAdapter::new(config, &AdapterSettings { callback_base_url: args.callback_base_url.clone() })?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let connection = Connection::connect(&args.amqp_url, ConnectionProperties::default()).await?;
    let consume = connection.create_channel().await?;
    consume.basic_qos(args.prefetch, BasicQosOptions::default()).await?;
    let publish = connection.create_channel().await?;
    publish.confirm_select(ConfirmSelectOptions::default()).await?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.prefetch as usize).build()?;
    let url = Arc::new(format!("{}/sms/3/messages", args.base_url));
    let auth = Arc::new(format!("App {}", args.api_key));
    let adapter = Arc::new(adapter(&args)?);
    let exchange = Arc::new(args.events_exchange);
    let mut consumer = consume
        .basic_consume(args.queue.as_str().into(), "bare".into(), BasicConsumeOptions::default(), Default::default())
        .await?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let delivery = tokio::select! {
            _ = sigterm.recv() => break,
            next = consumer.next() => match next { Some(Ok(d)) => d, _ => break },
        };
        let (client, url, auth, exchange, publish, adapter) =
            (client.clone(), url.clone(), auth.clone(), exchange.clone(), publish.clone(), adapter.clone());
        tokio::spawn(async move {
            let Ok(job) = decode::<SendJob>(&delivery.data) else { return };
            // The same JSON the sender-worker sends, so the provider side costs the same.
            let Ok(body) = adapter.body(&job) else { return };
            let request = client
                .post(url.as_str())
                .header("Authorization", auth.as_str())
                .header("Content-Type", "application/json")
                .body(body);
            let Ok(response) = request.send().await else { return };
            let accepted = response.status().is_success();
            let _ = response.bytes().await;
            let event =
                rmp_serde::to_vec_named(&serde_json::json!({"message_id": job.message_id, "accepted": accepted}))
                    .unwrap_or_default();
            let confirm = publish
                .basic_publish(
                    exchange.as_str().into(),
                    "bare".into(),
                    BasicPublishOptions::default(),
                    &event,
                    // Persistent, like every event sendfleet publishes.
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await;
            if let Ok(confirm) = confirm
                && confirm.await.is_ok()
            {
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            }
        });
    }
    Ok(())
}

//! Deletes the queues and exchanges of one broker prefix and the Redis keys of one key
//! prefix: the clean-up of `scripts/api_contract.sh`, which runs a live dispatcher on a
//! prefix of its own.
//!
//! `cargo run -p sendfleet-contract --example delete_namespace -- <config.toml>`

use sendfleet_broker::{
    Topology,
    lapin::{
        Connection, ConnectionProperties,
        options::{ExchangeDeleteOptions, QueueDeleteOptions},
    },
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: delete_namespace <config.toml>"))?;
    let text = std::fs::read_to_string(&path)?;
    let config =
        sendfleet_config::Config::from_toml(&text, &|_: &str| Some("x".repeat(32)), &sendfleet_providers::VENDORS)?;
    // Refuse the shared default names: this tool is for throw-away prefixes only.
    anyhow::ensure!(
        config.broker.prefix.starts_with("sfc-"),
        "prefix {} is not a contract-test prefix",
        config.broker.prefix
    );
    anyhow::ensure!(
        config.redis.key_prefix.starts_with("sfc-"),
        "key prefix {} is not a contract-test prefix",
        config.redis.key_prefix
    );

    let topology = Topology::new(&config.broker);
    let connection = Connection::connect(config.broker.url.expose(), ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let mut deleted = 0;
    for queue in topology.all_queues(config.providers.iter().map(|p| p.id.as_str())) {
        if channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await.is_ok() {
            deleted += 1;
        }
    }
    for exchange in topology.all_exchanges() {
        channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await?;
    }
    connection.close(200, "".into()).await?;

    let client = redis::Client::open(config.redis.url.expose())?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{}:*", config.redis.key_prefix);
    let mut cursor: u64 = 0;
    let mut keys_deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut redis)
            .await?;
        if !keys.is_empty() {
            keys_deleted += keys.len();
            let () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await?;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    println!("deleted {deleted} queues, the exchanges of {}, {keys_deleted} Redis keys", config.broker.prefix);
    Ok(())
}

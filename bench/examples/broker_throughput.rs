//! What RabbitMQ queues sustain with sendfleet's delivery guarantees: persistent messages
//! published with publisher confirms (a window of unconfirmed publishes per publisher)
//! and consumed with manual acks (a prefetch per consumer), on one or more queues at once.
//!
//! Each queue is deleted, declared (quorum with `x-quorum-initial-group-size`, or classic)
//! through the node `queue index mod number of URLs`, so with the default leader locator
//! (client-local) the leaders of several quorum queues are spread over the nodes, and
//! deleted again at the end (unless `--keep`). Publisher and consumer connections go to
//! the URLs in turn. After `--warmup` seconds, the confirms and acks of `--duration`
//! seconds are counted; the last line printed is JSON.
//!
//! ```text
//! cargo run --release --example broker_throughput -p sendfleet-bench -- \
//!     --url amqp://guest:guest@127.0.0.1:5681/%2f,amqp://guest:guest@127.0.0.1:5682/%2f,amqp://guest:guest@127.0.0.1:5683/%2f \
//!     --queues 1 --queue-type quorum --duration 15
//! ```
//! See docs/SCALING.md.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use futures_util::{FutureExt, StreamExt, stream::FuturesUnordered};
use sendfleet_broker::lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

const LOCAL_CLUSTER: &str =
    "amqp://guest:guest@127.0.0.1:5681/%2f,amqp://guest:guest@127.0.0.1:5682/%2f,amqp://guest:guest@127.0.0.1:5683/%2f";

#[derive(Parser, Debug)]
#[command(about = "Publish (with confirms) and consume (with acks) through RabbitMQ queues for a fixed time")]
struct Args {
    /// Broker URLs, comma separated (default: the three nodes of scripts/cluster.sh).
    #[arg(long, value_delimiter = ',', default_value = LOCAL_CLUSTER)]
    url: Vec<String>,
    /// Number of queues, each with its own publishers and consumers.
    #[arg(long, default_value_t = 1)]
    queues: usize,
    #[arg(long, value_enum, default_value_t = QueueType::Quorum)]
    queue_type: QueueType,
    /// `x-quorum-initial-group-size` of quorum queues.
    #[arg(long, default_value_t = 3)]
    group_size: i64,
    /// Publishers per queue (one connection and channel each).
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    /// Consumers per queue (one connection and channel each).
    #[arg(long, default_value_t = 2)]
    consumers: usize,
    /// Unconfirmed publishes a publisher may have in flight.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Prefetch (basic.qos) of each consumer.
    #[arg(long, default_value_t = 256)]
    prefetch: u16,
    /// Ack every N-th delivery with `multiple` (1: one ack per message).
    #[arg(long, default_value_t = 1)]
    ack_every: u64,
    /// Message size in bytes (sendfleet jobs are 300-600 bytes of MessagePack).
    #[arg(long, default_value_t = 450)]
    size: usize,
    /// Total publish rate in messages/s over all publishers; 0: as fast as confirms allow.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seconds before counting starts.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Seconds counted.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Queue names are `<prefix>.<n>`.
    #[arg(long, default_value = "bench.throughput")]
    prefix: String,
    /// Keep the queues at the end (to inspect their leaders and members).
    #[arg(long)]
    keep: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum QueueType {
    Quorum,
    Classic,
}

/// Microseconds since the run started, and the counting window.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    from_us: u64,
    until_us: u64,
}

impl Clock {
    fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
    fn counting(&self, us: u64) -> bool {
        (self.from_us..self.until_us).contains(&us)
    }
    fn done(&self) -> bool {
        self.now_us() >= self.until_us
    }
    fn end(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.start) + Duration::from_micros(self.until_us)
    }
}

#[derive(Default)]
struct Counts {
    messages: u64,
    nacks: u64,
    /// Latencies in microseconds of counted messages.
    latencies: Vec<u64>,
}

async fn connect(url: &str, name: String) -> Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(LongString::from(name));
    tokio::time::timeout(Duration::from_secs(10), Connection::connect(url, properties))
        .await
        .with_context(|| format!("connecting to {url}: timed out"))?
        .with_context(|| format!("connecting to {url}"))
}

fn queue_arguments(args: &Args) -> FieldTable {
    let mut table = FieldTable::default();
    let kind = match args.queue_type {
        QueueType::Quorum => "quorum",
        QueueType::Classic => "classic",
    };
    table.insert(ShortString::from("x-queue-type"), AMQPValue::LongString(LongString::from(kind)));
    if args.queue_type == QueueType::Quorum {
        table.insert(ShortString::from("x-quorum-initial-group-size"), AMQPValue::LongLongInt(args.group_size));
    }
    table
}

async fn declare(channel: &Channel, name: &str, args: &Args) -> Result<()> {
    channel.queue_delete(ShortString::from(name), QueueDeleteOptions::default()).await?;
    channel
        .queue_declare(
            ShortString::from(name),
            QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() },
            queue_arguments(args),
        )
        .await
        .with_context(|| format!("declaring {name}"))?;
    Ok(())
}

async fn publisher(connection: Connection, queue: String, args: Arc<Args>, clock: Clock, rate: f64) -> Result<Counts> {
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut payload: Vec<u8> = (0..args.size.max(8)).map(|i| (i * 131 % 251) as u8).collect();
    let properties = BasicProperties::default().with_delivery_mode(2);
    let mut in_flight = FuturesUnordered::new();
    let mut counts = Counts::default();
    let settle = |counts: &mut Counts, sent_us: u64, result: Result<Confirmation, _>| -> Result<()> {
        let now = clock.now_us();
        match result? {
            Confirmation::Ack(_) | Confirmation::NotRequested if clock.counting(now) => {
                counts.messages += 1;
                counts.latencies.push(now - sent_us);
            }
            Confirmation::Nack(_) => counts.nacks += 1,
            _ => {}
        }
        Ok(())
    };
    let mut sent = 0u64;
    while !clock.done() {
        if rate > 0.0 && sent as f64 >= clock.start.elapsed().as_secs_f64() * rate {
            tokio::select! {
                Some((sent_us, result)) = in_flight.next(), if !in_flight.is_empty() => settle(&mut counts, sent_us, result)?,
                () = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
            continue;
        }
        if in_flight.len() >= args.window {
            if let Some((sent_us, result)) = in_flight.next().await {
                settle(&mut counts, sent_us, result)?;
            }
            continue;
        }
        let sent_us = clock.now_us();
        payload[..8].copy_from_slice(&sent_us.to_le_bytes());
        let confirm = channel
            .basic_publish(
                ShortString::from(""),
                ShortString::from(queue.as_str()),
                BasicPublishOptions::default(),
                &payload,
                properties.clone(),
            )
            .await?;
        sent += 1;
        in_flight.push(confirm.map(move |result| (sent_us, result)));
        while let Some(Some((sent_us, result))) = in_flight.next().now_or_never() {
            settle(&mut counts, sent_us, result)?;
        }
    }
    // Confirms that arrive after the window are not counted; wait for them briefly so
    // the channel closes cleanly.
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while in_flight.next().await.is_some() {} }).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(counts)
}

async fn consumer(connection: Connection, queue: String, tag: String, args: Arc<Args>, clock: Clock) -> Result<Counts> {
    let channel = connection.create_channel().await?;
    channel.basic_qos(args.prefetch, BasicQosOptions::default()).await?;
    let mut deliveries = channel
        .basic_consume(
            ShortString::from(queue.as_str()),
            ShortString::from(tag),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut counts = Counts::default();
    let mut unacked = 0u64;
    let end = clock.end();
    while let Ok(Some(delivery)) = tokio::time::timeout_at(end, deliveries.next()).await {
        let delivery = delivery?;
        let now = clock.now_us();
        let sent_us = delivery.data.get(..8).map_or(now, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
        unacked += 1;
        if unacked >= args.ack_every {
            channel.basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: args.ack_every > 1 }).await?;
            if clock.counting(now) {
                counts.messages += unacked;
            }
            unacked = 0;
        }
        if clock.counting(now) {
            counts.latencies.push(now.saturating_sub(sent_us));
        }
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(counts)
}

fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

fn merge(all: Vec<Counts>) -> Counts {
    let mut total = Counts::default();
    for counts in all {
        total.messages += counts.messages;
        total.nacks += counts.nacks;
        total.latencies.extend(counts.latencies);
    }
    total.latencies.sort_unstable();
    total
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    if args.url.is_empty() || args.queues == 0 || args.publishers == 0 || args.consumers == 0 || args.duration == 0 {
        bail!("--url, --queues, --publishers, --consumers and --duration must not be empty or 0");
    }
    let queues: Vec<String> = (0..args.queues).map(|q| format!("{}.{q}", args.prefix)).collect();
    let mut admins = Vec::new();
    for (i, url) in args.url.iter().enumerate() {
        let connection = connect(url, format!("broker_throughput-admin-{i}")).await?;
        let channel = connection.create_channel().await?;
        admins.push((connection, channel));
    }
    for (q, name) in queues.iter().enumerate() {
        declare(&admins[q % admins.len()].1, name, &args).await?;
    }

    let mut next_url = 0usize;
    let mut url = || {
        next_url += 1;
        args.url[(next_url - 1) % args.url.len()].clone()
    };
    let mut publisher_connections = Vec::new();
    let mut consumer_connections = Vec::new();
    for name in &queues {
        for c in 0..args.consumers {
            consumer_connections.push((
                name.clone(),
                c,
                connect(&url(), format!("broker_throughput-consumer-{c}")).await?,
            ));
        }
        for p in 0..args.publishers {
            publisher_connections
                .push((name.clone(), connect(&url(), format!("broker_throughput-publisher-{p}")).await?));
        }
    }

    let clock = Clock {
        start: Instant::now(),
        from_us: args.warmup * 1_000_000,
        until_us: (args.warmup + args.duration) * 1_000_000,
    };
    let rate_per_publisher = args.rate as f64 / publisher_connections.len() as f64;
    let consumers: Vec<_> = consumer_connections
        .into_iter()
        .map(|(queue, c, connection)| {
            tokio::spawn(consumer(connection, queue.clone(), format!("bench-{queue}-{c}"), args.clone(), clock))
        })
        .collect();
    let publishers: Vec<_> = publisher_connections
        .into_iter()
        .map(|(queue, connection)| tokio::spawn(publisher(connection, queue, args.clone(), clock, rate_per_publisher)))
        .collect();

    let mut published = Vec::new();
    for task in publishers {
        published.push(task.await.context("publisher task")??);
    }
    let mut consumed = Vec::new();
    for task in consumers {
        consumed.push(task.await.context("consumer task")??);
    }
    let (published, consumed) = (merge(published), merge(consumed));

    let mut backlog = 0u64;
    for (q, name) in queues.iter().enumerate() {
        let channel = &admins[q % admins.len()].1;
        let queue = channel
            .queue_declare(
                ShortString::from(name.as_str()),
                QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await?;
        backlog += u64::from(queue.message_count());
        if !args.keep {
            channel.queue_delete(ShortString::from(name.as_str()), QueueDeleteOptions::default()).await?;
        }
    }
    for (connection, _) in admins {
        let _ = connection.close(200, "done".into()).await;
    }

    let seconds = args.duration as f64;
    let publish_rate = published.messages as f64 / seconds;
    let consume_rate = consumed.messages as f64 / seconds;
    println!(
        "{} x {:?} queue(s), {} publishers x window {}, {} consumers x prefetch {}, {} B, {} s: \
         published+confirmed {:.0}/s (confirm p50 {:.1} ms, p99 {:.1} ms, {} nacks), \
         consumed+acked {:.0}/s (publish-to-delivery p50 {:.1} ms, p99 {:.1} ms), backlog at the end {}",
        args.queues,
        args.queue_type,
        args.publishers * args.queues,
        args.window,
        args.consumers * args.queues,
        args.prefetch,
        args.size,
        args.duration,
        publish_rate,
        percentile_ms(&published.latencies, 0.5),
        percentile_ms(&published.latencies, 0.99),
        published.nacks,
        consume_rate,
        percentile_ms(&consumed.latencies, 0.5),
        percentile_ms(&consumed.latencies, 0.99),
        backlog,
    );
    println!(
        "{}",
        serde_json::json!({
            "queues": args.queues,
            "queue_type": format!("{:?}", args.queue_type).to_lowercase(),
            "group_size": args.group_size,
            "nodes": args.url.len(),
            "publishers": args.publishers * args.queues,
            "consumers": args.consumers * args.queues,
            "window": args.window,
            "prefetch": args.prefetch,
            "ack_every": args.ack_every,
            "size": args.size,
            "rate": args.rate,
            "duration_s": args.duration,
            "published_per_s": publish_rate.round(),
            "consumed_per_s": consume_rate.round(),
            "confirm_p50_ms": percentile_ms(&published.latencies, 0.5),
            "confirm_p99_ms": percentile_ms(&published.latencies, 0.99),
            "delivery_p50_ms": percentile_ms(&consumed.latencies, 0.5),
            "delivery_p99_ms": percentile_ms(&consumed.latencies, 0.99),
            "nacks": published.nacks,
            "backlog": backlog,
        })
    );
    Ok(())
}

//! Deliveries against the real RabbitMQ: no exit is forgotten.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use sendfleet_broker::{
    AckBatcher, Inbound, Outgoing, Publisher, consume,
    lapin::{
        options::{QueueDeclareOptions, QueueDeleteOptions},
        types::FieldTable,
    },
};

/// A delivery dropped without being settled (a dead-letter publish that failed on a live
/// channel, an abandoned task) goes back to the queue at once, and the deliveries after it
/// are still acked: nothing stays unacked while the channel lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_delivery_is_requeued_and_later_acks_still_go_out() {
    let connection = common::connect().await;
    let channel = connection.create_channel().await.unwrap();
    let queue = format!("sft-dropped-{}", uuid::Uuid::new_v4().simple());
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions { exclusive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let publisher = Publisher::open(&connection).await.unwrap();
    for i in 0..3 {
        publisher.publish(Outgoing::new("", &queue, format!("{i}").as_bytes())).await.unwrap();
    }

    let consumer_channel = connection.create_channel().await.unwrap();
    let mut consumer = consume(&consumer_channel, &queue, 10, "dropped-test").await.unwrap();
    let acks = AckBatcher::start(consumer_channel.clone());
    let first = next(&mut consumer, &acks).await.expect("first");
    assert_eq!(first.data(), b"0");
    drop(first);
    for _ in 0..2 {
        next(&mut consumer, &acks).await.expect("later delivery").ack().await.unwrap();
    }
    let again = next(&mut consumer, &acks).await.expect("the dropped delivery comes back while the channel lives");
    assert_eq!(again.data(), b"0");
    assert!(again.redelivered());
    again.ack().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Closing the consumer's channel returns whatever is still unacked: nothing is.
    drop(consumer_channel.close(200, "".into()).await);
    let left = channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count();
    channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await.unwrap();
    drop(connection.close(200, "".into()).await);
    assert_eq!(left, 0, "every delivery was acked");
}

async fn next(consumer: &mut sendfleet_broker::lapin::Consumer, acks: &std::sync::Arc<AckBatcher>) -> Option<Inbound> {
    let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await.ok()??.ok()?;
    Some(Inbound::batched(delivery, acks.clone()))
}

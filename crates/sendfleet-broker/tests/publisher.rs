//! The confirmed publisher against the real RabbitMQ: every caller gets its own outcome.

mod common;

use std::time::{Duration, Instant};

use common::Scratch;
use futures_util::{StreamExt, stream};
use sendfleet_broker::{
    BrokerError, Outgoing, Publisher,
    lapin::{
        ExchangeKind,
        options::QueueDeclareOptions,
        types::{AMQPValue, FieldTable, LongString},
    },
};

/// 10,000 concurrent mandatory publishes on one publisher, one in twenty to a routing key
/// no queue is bound to: the unroutable ones, and only they, come back `Unroutable` to
/// their own caller. lapin attaches a `basic.return` to whichever confirm it resolves
/// next (a `multiple` ack resolves many), so without the publisher's own bookkeeping the
/// outcomes land on the wrong callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_concurrent_caller_gets_its_own_outcome() {
    let mut args = FieldTable::default();
    // A quorum queue confirms routable messages later than the broker confirms unroutable
    // ones, so acks arrive out of publish order and in `multiple` batches.
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    let scratch = Scratch::new("attribution", ExchangeKind::Direct, durable, args, "routed").await;
    let name = scratch.name.clone();
    let publisher = Publisher::open(&scratch.connection).await.unwrap();
    const N: usize = 10_000;
    // The race shows on a few callers in some runs only: several rounds make it show.
    const ROUNDS: usize = 5;
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let outcomes: Vec<(usize, Result<(), BrokerError>)> = stream::iter(0..N)
            .map(|i| {
                let (publisher, exchange) = (publisher.clone(), name.clone());
                async move {
                    let key = if i % 20 == 7 { "nowhere" } else { "routed" };
                    let body = format!("message {i}");
                    (i, publisher.publish(Outgoing::new(&exchange, key, body.as_bytes())).await)
                }
            })
            .buffer_unordered(1_000)
            .collect()
            .await;

        let mut wrong = Vec::new();
        for (i, outcome) in &outcomes {
            let unroutable = i % 20 == 7;
            let ok = match outcome {
                Ok(()) => !unroutable,
                Err(BrokerError::Unroutable { routing_key, .. }) => unroutable && routing_key == "nowhere",
                Err(_) => false,
            };
            if !ok {
                wrong.push(format!("{i}: {outcome:?}"));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "round {round}: {} of {N} callers got another's outcome, e.g. {:?}",
                wrong.len(),
                &wrong[..wrong.len().min(5)]
            ));
        }
    }
    let routed = scratch.depth().await;
    scratch.cleanup().await;
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(routed as usize, ROUNDS * (N - N / 20), "every routable message is in the queue");
}

/// A fanout exchange and a classic queue of at most `max_length` messages that nacks
/// publishes once full (`reject-publish`).
async fn full_queue_refuses(what: &str, max_length: i64) -> Scratch {
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(max_length));
    args.insert("x-overflow".into(), AMQPValue::LongString(LongString::from("reject-publish")));
    Scratch::new(what, ExchangeKind::Fanout, QueueDeclareOptions::default(), args, "").await
}

/// Optional messages share one pipelined channel: the broker's nacks (here from a full
/// queue that rejects publishes) reach exactly the callers whose messages it refused —
/// the set of bodies confirmed is the set of bodies in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacks_reach_the_callers_whose_messages_were_refused() {
    let scratch = full_queue_refuses("nacks", 3_000).await;
    let name = scratch.name.clone();
    let publisher = Publisher::open(&scratch.connection).await.unwrap().retrying_nacks_for(Duration::ZERO);
    const N: usize = 10_000;
    let outcomes: Vec<(usize, Result<(), BrokerError>)> = stream::iter(0..N)
        .map(|i| {
            let (publisher, exchange) = (publisher.clone(), name.clone());
            async move {
                let body = format!("{i}");
                (i, publisher.publish(Outgoing::new(&exchange, "", body.as_bytes()).optional()).await)
            }
        })
        .buffer_unordered(1_000)
        .collect()
        .await;
    let confirmed: std::collections::BTreeSet<usize> =
        outcomes.iter().filter(|(_, outcome)| outcome.is_ok()).map(|(i, _)| *i).collect();
    let refused = outcomes.iter().filter(|(_, outcome)| matches!(outcome, Err(BrokerError::Nacked { .. }))).count();

    let mut queued = std::collections::BTreeSet::new();
    while let Ok(Some(message)) = scratch
        .channel
        .basic_get(name.as_str().into(), sendfleet_broker::lapin::options::BasicGetOptions { no_ack: true })
        .await
    {
        queued.insert(String::from_utf8_lossy(&message.delivery.data).parse::<usize>().unwrap());
    }
    scratch.cleanup().await;
    assert_eq!(queued.len(), 3_000, "the queue filled up");
    assert_eq!(confirmed.len() + refused, N, "every caller got an ack or a nack");
    let wrong: Vec<_> = confirmed.symmetric_difference(&queued).take(5).collect();
    assert!(confirmed == queued, "confirmed bodies differ from queued ones, e.g. {wrong:?}");
}

/// A nacked publish is tried again (a quorum queue electing a new leader nacks for a
/// while): here a full queue that rejects publishes nacks the second message until the
/// first is taken out a second later, and the second publish then succeeds without its
/// caller seeing the nack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacked_publish_is_tried_again_until_the_broker_takes_it() {
    let scratch = full_queue_refuses("nack-retry", 1).await;
    let publisher = Publisher::open(&scratch.connection).await.unwrap();
    publisher.publish(Outgoing::new(&scratch.name, "", b"first")).await.expect("room for one");

    let started = Instant::now();
    let second = {
        let (publisher, exchange) = (publisher.clone(), scratch.name.clone());
        tokio::spawn(async move { publisher.publish(Outgoing::new(&exchange, "", b"second")).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!second.is_finished(), "the nack was returned instead of tried again");
    let get = sendfleet_broker::lapin::options::BasicGetOptions { no_ack: true };
    let first = scratch.channel.basic_get(scratch.name.as_str().into(), get).await.unwrap().expect("the first message");
    assert_eq!(first.delivery.data, b"first");
    second.await.unwrap().expect("taken once there was room");
    let took = started.elapsed();
    let queued = scratch.channel.basic_get(scratch.name.as_str().into(), get).await.unwrap().expect("the second");
    assert_eq!(queued.delivery.data, b"second");

    // Without the window the caller gets the nack.
    let impatient = publisher.clone().retrying_nacks_for(Duration::ZERO);
    impatient.publish(Outgoing::new(&scratch.name, "", b"third")).await.expect("room again");
    let refused = impatient.publish(Outgoing::new(&scratch.name, "", b"fourth")).await;
    assert!(!publisher.refused_throughout_a_window(), "a nack without a window is not a stuck publisher");
    // Nacked for a whole window: the publisher says so (its session starts over).
    let brief = publisher.clone().retrying_nacks_for(Duration::from_millis(500));
    let refused_throughout = brief.publish(Outgoing::new(&scratch.name, "", b"fifth")).await;
    scratch.cleanup().await;
    assert!(matches!(refused, Err(BrokerError::Nacked { .. })), "{refused:?}");
    assert!(matches!(refused_throughout, Err(BrokerError::Nacked { .. })), "{refused_throughout:?}");
    assert!(publisher.refused_throughout_a_window());
    assert!(took < Duration::from_secs(10), "the retry waited {took:?}");
}

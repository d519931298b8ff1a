//! `[broker].queue_type = "quorum"` on the real broker: the whole topology declares as
//! quorum queues, and the retry path (a TTL tier dead-lettering back to the jobs queue)
//! still works, since quorum queues handle dead-lettering differently from classic ones,
//! and the explicit delivery limit dead-letters a job delivered too often.

use std::time::Duration;

use sendfleet_broker::{
    Outgoing, Publisher, RETRY_TIERS, Topology,
    lapin::{
        options::{BasicGetOptions, BasicNackOptions, QueueDeclareOptions},
        types::{AMQPValue, FieldTable, LongString},
    },
};
use sendfleet_config::{BrokerConfig, QueueType};
use sendfleet_test_support::Namespace;

const DELIVERY_LIMIT: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_topology_declares_and_retries_flow_back_to_the_jobs_queue() {
    let ns = Namespace::new("quorum", &["q-sms"]);
    let broker = BrokerConfig { queue_type: QueueType::Quorum, delivery_limit: DELIVERY_LIMIT, ..ns.broker_config() };
    let topology = Topology::new(&broker);
    let connection = ns.connect().await;
    let channel = connection.create_channel().await.unwrap();
    topology.declare(&channel, &ns.providers).await.expect("quorum topology declares");
    // Declaring it again is idempotent with the same arguments.
    topology.declare(&channel, &ns.providers).await.expect("re-declare");

    // The jobs queue really is a quorum queue: declaring it as classic is refused.
    let probe = connection.create_channel().await.unwrap();
    let mut classic = FieldTable::default();
    classic.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("classic")));
    let jobs_queue = topology.jobs_queue("q-sms");
    let refused = probe
        .queue_declare(jobs_queue.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, classic)
        .await;
    let error = refused.expect_err("a quorum queue cannot be re-declared as classic").to_string();
    assert!(error.contains("PRECONDITION_FAILED") || error.contains("x-queue-type"), "{error}");

    // A retry in the shortest tier comes back to the provider's jobs queue after its TTL.
    let publisher = Publisher::open(&connection).await.unwrap();
    let tier = RETRY_TIERS[0];
    let key = Topology::retry_routing_key(tier, "q-sms", sendfleet_protocol::Priority::Normal);
    publisher.publish(Outgoing::new(&topology.retry_exchange(), &key, b"retry me")).await.expect("confirmed");
    let mut back = None;
    for _ in 0..100 {
        let got =
            channel.basic_get(jobs_queue.as_str().into(), BasicGetOptions { no_ack: true }).await.expect("basic.get");
        if let Some(message) = got {
            back = Some(message.delivery.data.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(back.as_deref(), Some(&b"retry me"[..]), "the retry came back within 10 s");

    // The delivery limit is explicit: a job delivered more often than it goes to the
    // dead-letter queue (on 3.10 as on 4.x), and a different limit is named at start-up.
    publisher.publish(Outgoing::new(&topology.jobs_exchange(), "q-sms", b"poison")).await.expect("confirmed");
    let mut deliveries = 0;
    for _ in 0..100 {
        let got = channel.basic_get(jobs_queue.as_str().into(), BasicGetOptions { no_ack: false }).await.unwrap();
        match got {
            Some(message) => {
                deliveries += 1;
                message.delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await.unwrap();
            }
            None if deliveries > 0 => break,
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(deliveries, DELIVERY_LIMIT as usize + 1, "delivered up to the limit, then dead-lettered");
    let mut dead = None;
    for _ in 0..100 {
        let queue = topology.dead_letter_queue();
        if let Some(message) = channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap()
        {
            dead = Some(message.delivery.data.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead.as_deref(), Some(&b"poison"[..]), "past the limit the job is a dead letter, not lost");
    let other = Topology::new(&BrokerConfig { delivery_limit: DELIVERY_LIMIT + 1, ..broker.clone() });
    let probe = connection.create_channel().await.unwrap();
    let err = other.declare(&probe, &ns.providers).await.expect_err("another limit is refused");
    assert!(err.to_string().contains("broker.delivery_limit"), "{err}");

    drop(connection.close(200, "".into()).await);
    ns.cleanup().await;
}

//! A report the provider posts again becomes the same event, on the real RabbitMQ.

mod common;

use std::time::Duration;

use common::{Ingest, TOKEN, fixture};

/// Providers post a report again whenever they did not get a 2xx (a 503, their own
/// timeout, callback-ingest restarting): each copy is published, and every copy of one
/// report carries the same `event_id`, so consumers can drop the repeats. Different
/// reports keep different ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_posted_again_is_published_with_the_same_event_id() {
    let ingest = Ingest::start("cb-repeat", None, 1 << 20).await;
    let url = ingest.url("ib-sms", TOKEN, "/delivery");
    for _ in 0..2 {
        let (status, answer) = ingest.post(&url, fixture("sms-dlr-delivered.json")).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, answer) = ingest.post(&url, fixture("sms-dlr-undeliverable.json")).await;
    assert_eq!(status, 200, "{answer}");
    let mut events = Vec::new();
    for _ in 0..100 {
        events = ingest.events.events();
        if events.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0].event_id, events[1].event_id, "the same report twice, one id");
    assert_ne!(events[0].event_id, events[2].event_id, "another report, another id");
    ingest.stop().await;
}

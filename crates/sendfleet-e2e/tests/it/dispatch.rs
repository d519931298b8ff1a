//! Invalid requests end in the rejected queue with a reason; the dispatcher keeps going.

use std::time::Duration;

use sendfleet_broker::lapin::{
    options::{BasicAckOptions, BasicGetOptions},
    types::AMQPValue,
};
use sendfleet_dispatcher::RejectedRequest;
use sendfleet_protocol::{Channel, Content, EventKind, SendRequest, decode, encode};
use sendfleet_test_support::{Fleet, FleetOptions};

fn request(to: &str, provider: Option<&str>) -> SendRequest {
    SendRequest {
        priority: Default::default(),
        schema_version: 1,
        message_id: None,
        channel: Channel::Sms,
        provider: provider.map(str::to_owned),
        to: Some(to.to_owned()),
        recipients: vec![],
        sender: None,
        content: Some(Content::Text { text: "hi".into(), suggestions: vec![] }),
        template: None,
        options: Default::default(),
        fallback: None,
        metadata: Default::default(),
        trace_id: Some("trace-reject".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_rejected_with_reasons_and_good_ones_still_flow() {
    let fleet = Fleet::start(FleetOptions::infobip("reject")).await;
    let requests_exchange = fleet.ns.topology().requests_exchange();
    fleet.publish_request(&request("12345", None)).await;
    fleet.publish_request(&request("+15551234567", Some("no-such-provider"))).await;
    fleet.publish_bytes(&requests_exchange, "", b"\x93\x01\x02garbage").await;
    let mut future = request("+15551234567", None);
    future.schema_version = 99;
    fleet.publish_bytes(&requests_exchange, "", &encode(&future)).await;
    fleet.publish_request(&request("+15551234567", None)).await;

    assert_eq!(fleet.events.wait_for(EventKind::Accepted, 1, Duration::from_secs(20)).await, 1);
    let rejected_queue = fleet.ns.topology().rejected_queue();
    let connection = fleet.ns.connect().await;
    let channel = connection.create_channel().await.unwrap();
    let mut rejected = Vec::new();
    for _ in 0..200 {
        match channel.basic_get(rejected_queue.as_str().into(), BasicGetOptions::default()).await.unwrap() {
            Some(message) => {
                let headers = message.delivery.properties.headers().clone().unwrap_or_default();
                let code = match headers.inner().get("x-sendfleet-reason-code") {
                    Some(AMQPValue::LongString(value)) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    other => panic!("reason code header missing or not a string: {other:?}"),
                };
                let body: RejectedRequest = decode(&message.delivery.data).expect("rejection body decodes");
                message.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
                rejected.push((code, body));
                if rejected.len() == 4 {
                    break;
                }
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(rejected.len(), 4, "{rejected:?}");
    // The dispatcher handles requests concurrently, so rejections arrive in any order.
    rejected.sort_by(|a, b| a.1.reason_code.cmp(&b.1.reason_code));
    let codes: Vec<&str> = rejected.iter().map(|(_, b)| b.reason_code.as_str()).collect();
    assert_eq!(codes, ["invalid_destination", "malformed", "unknown_provider", "unsupported_version"]);
    for (header, body) in &rejected {
        assert_eq!(header, &body.reason_code, "the reason code header matches the body");
    }
    assert!(rejected[0].1.reason.contains("'12345'"));
    assert_eq!(rejected[1].1.original, b"\x93\x01\x02garbage", "the original bytes are kept");
    assert!(rejected[2].1.reason.contains("no-such-provider"));
    assert!(rejected[3].1.reason.contains("99"));
    assert_eq!(fleet.mock.received().len(), 1, "only the good request reached the provider");
    drop(connection.close(200, "".into()).await);
    fleet.stop().await;
}

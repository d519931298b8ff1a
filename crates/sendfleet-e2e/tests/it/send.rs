//! Requests in, provider requests and events out.

use std::{collections::HashSet, time::Duration};

use sendfleet_protocol::{Channel, Content, EventKind, SendRequest};
use sendfleet_test_support::{Fleet, FleetOptions, TEST_API_KEY};

fn sms_request(i: usize) -> SendRequest {
    SendRequest {
        priority: Default::default(),
        schema_version: 1,
        message_id: Some(format!("msg-{i:05}")),
        channel: Channel::Sms,
        provider: None,
        to: Some(format!("+1555{:07}", i)),
        recipients: vec![],
        sender: None,
        content: Some(Content::Text { text: format!("Hello number {i}"), suggestions: vec![] }),
        template: None,
        options: Default::default(),
        fallback: None,
        metadata: [("n".to_owned(), i.to_string())].into(),
        trace_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_are_sent_accepted_and_delivered() {
    let fleet = Fleet::start(FleetOptions::infobip("thousand")).await;
    const N: usize = 1_000;
    for i in 0..N {
        fleet.publish_request(&sms_request(i)).await;
    }
    let accepted = fleet.events.wait_for(EventKind::Accepted, N, Duration::from_secs(60)).await;
    let delivered = fleet.events.wait_for(EventKind::Delivered, N, Duration::from_secs(60)).await;
    assert_eq!(accepted, N);
    assert_eq!(delivered, N);

    let received = fleet.mock.received();
    assert_eq!(received.len(), N, "the mock received exactly one request per message");
    let expected_auth = format!("App {TEST_API_KEY}");
    assert!(received.iter().all(|r| r.status == 200 && r.path == "/sms/3/messages"));
    assert!(received.iter().all(|r| r.authorization.as_deref() == Some(expected_auth.as_str())));
    let ids: HashSet<&str> = received.iter().flat_map(|r| r.message_ids.iter().map(String::as_str)).collect();
    assert_eq!(ids.len(), N);
    let sample = received.iter().find(|r| r.message_ids[0] == "msg-00042").expect("msg-00042 sent");
    let body = sample.body.as_ref().expect("body recorded");
    assert_eq!(body["messages"][0]["destinations"][0]["to"], "15550000042");
    assert_eq!(body["messages"][0]["content"]["text"], "Hello number 42");
    assert_eq!(body["messages"][0]["sender"], "ACMEIN");

    let events = fleet.events.events();
    let delivered_event = events
        .iter()
        .find(|e| e.kind == EventKind::Delivered && e.message_id.as_deref() == Some("msg-00042"))
        .expect("delivery event for msg-00042");
    assert_eq!(delivered_event.metadata.get("n").map(String::as_str), Some("42"), "metadata travels via callbackData");
    assert_eq!(delivered_event.to.as_deref(), Some("+15550000042"));
    assert_eq!(fleet.events.undecodable(), 0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcs_text_goes_to_the_rcs_endpoint_with_suggestions() {
    let fleet = Fleet::start(FleetOptions::infobip("rcs-text")).await;
    let mut request = sms_request(1);
    request.channel = Channel::Rcs;
    request.content = Some(Content::Text {
        text: "Your order shipped".into(),
        suggestions: vec![sendfleet_protocol::Suggestion::Reply {
            text: "Track".into(),
            postback_data: "track".into(),
        }],
    });
    fleet.publish_request(&request).await;
    assert_eq!(fleet.events.wait_for(EventKind::Delivered, 1, Duration::from_secs(20)).await, 1);
    let received = fleet.mock.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/rcs/2/messages");
    let content = &received[0].body.as_ref().unwrap()["messages"][0]["content"];
    assert_eq!(content["type"], "TEXT");
    assert_eq!(content["suggestions"][0]["type"], "REPLY");
    let delivered = fleet.events.events().into_iter().find(|e| e.kind == EventKind::Delivered).unwrap();
    assert_eq!(delivered.channel, Channel::Rcs);
    assert_eq!(delivered.provider, "ib-rcs");
    fleet.stop().await;
}

//! Generic RCS and Generic SMS through the whole pipeline: request → dispatcher →
//! worker → mock vendor (our Generic API, Basic auth) → delivery report →
//! callback-ingest → events.

use std::time::Duration;

use sendfleet_mock_provider::{Behaviour, GenericAuth};
use sendfleet_protocol::{Card, CardAlignment, CardOrientation, Channel, Content, EventKind, SendRequest, Suggestion};
use sendfleet_test_support::{Fleet, FleetOptions, TEST_API_KEY};

fn options() -> FleetOptions {
    let provider = |id: &str, kind: &str, path: &str, sender: &str| {
        format!(
            r#"
[[providers]]
id = "{id}"
kind = "{kind}"
sender_ids = ["{sender}"]
default_for_channel = true
rate_per_second = 4600
concurrency = 16
callback_token_env = "TEST_CALLBACK_TOKEN"
retry = {{ initial_delay_ms = 200, max_delay_ms = 2000 }}

[providers.generic]
endpoint = "{{mock}}/generic/{path}"
auth = {{ type = "basic", username = "acme", password_env = "TEST_API_KEY" }}
headers = {{ "X-Account" = "acme-{path}" }}
body_parameters = {{ account = "acme-001", ref = "sf-{{{{message_id}}}}", campaign = "{{{{metadata.campaign}}}}" }}
"#
        )
    };
    FleetOptions {
        providers_toml: provider("gen-rcs", "generic_rcs", "rcs", "AcmeAgent")
            + &provider("gen-sms", "generic_sms", "sms", "ACMEIN"),
        provider_ids: vec!["gen-rcs", "gen-sms"],
        behaviour: Behaviour {
            generic_auth: GenericAuth::Basic { username: "acme".into(), password: TEST_API_KEY.into() },
            ..Behaviour::default()
        },
        ..FleetOptions::infobip("generic")
    }
}

fn request(id: &str, channel: Channel, content: Content) -> SendRequest {
    SendRequest {
        priority: Default::default(),
        schema_version: 1,
        message_id: Some(id.into()),
        channel,
        provider: None,
        to: Some("+919876543210".into()),
        recipients: vec![],
        sender: None,
        content: Some(content),
        template: None,
        options: Default::default(),
        fallback: None,
        metadata: [("campaign".to_owned(), format!("camp-{id}"))].into(),
        trace_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_rcs_and_sms_are_sent_and_delivered_end_to_end() {
    let fleet = Fleet::start(options()).await;
    let card = Content::Card {
        orientation: CardOrientation::Vertical,
        alignment: CardAlignment::Left,
        card: Card {
            title: Some("Spring sale".into()),
            description: Some("20% off".into()),
            media: None,
            suggestions: vec![Suggestion::Reply { text: "Shop".into(), postback_data: "shop".into() }],
        },
        suggestions: vec![],
    };
    fleet.publish_request(&request("gen-rcs-1", Channel::Rcs, card)).await;
    fleet
        .publish_request(&request(
            "gen-sms-1",
            Channel::Sms,
            Content::Text { text: "Your OTP is 482913".into(), suggestions: vec![] },
        ))
        .await;
    assert_eq!(fleet.events.wait_for(EventKind::Accepted, 2, Duration::from_secs(30)).await, 2);
    assert_eq!(fleet.events.wait_for(EventKind::Delivered, 2, Duration::from_secs(30)).await, 2);

    let mut received = fleet.mock.received();
    received.sort_by(|a, b| a.path.cmp(&b.path));
    let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/generic/rcs", "/generic/sms"]);
    for (request, path) in received.iter().zip(["rcs", "sms"]) {
        assert_eq!(request.status, 200);
        assert!(request.authorization.as_deref().is_some_and(|a| a.starts_with("Basic ")));
        assert_eq!(request.headers.get("x-account").map(String::as_str), Some(format!("acme-{path}").as_str()));
        let body = request.body.as_ref().unwrap();
        assert_eq!(body["channel"], path);
        assert_eq!(body["account"], "acme-001");
        assert_eq!(body["ref"], format!("sf-gen-{path}-1"));
        assert_eq!(body["campaign"], format!("camp-gen-{path}-1"));
        assert!(body["callback_url"].as_str().unwrap().contains(&format!("/callbacks/gen-{path}/")));
    }
    assert_eq!(received[0].body.as_ref().unwrap()["content"]["card"]["title"], "Spring sale");
    assert_eq!(received[1].body.as_ref().unwrap()["content"]["text"], "Your OTP is 482913");

    let events = fleet.events.events();
    for (id, provider, channel) in [("gen-rcs-1", "gen-rcs", Channel::Rcs), ("gen-sms-1", "gen-sms", Channel::Sms)] {
        let delivered = events
            .iter()
            .find(|e| e.kind == EventKind::Delivered && e.message_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("delivery event for {id}"));
        assert_eq!(delivered.provider, provider);
        assert_eq!(delivered.channel, channel);
        assert_eq!(delivered.to.as_deref(), Some("+919876543210"));
        assert_eq!(
            delivered.metadata.get("campaign").map(String::as_str),
            Some(format!("camp-{id}").as_str()),
            "metadata travels via callback_data"
        );
        assert!(delivered.details.contains_key("vendor_message_id"));
    }
    assert_eq!(fleet.events.undecodable(), 0);
    fleet.stop().await;
}

//! Twilio through the whole pipeline: request → dispatcher → worker → mock Twilio
//! (form-encoded, validated against Twilio's published schema) → signed status
//! callbacks → callback-ingest (signature verified) → events.

use std::{collections::HashMap, time::Duration};

use sendfleet_mock_provider::{Behaviour, MOCK_RCS_AGENT};
use sendfleet_protocol::{Channel, Content, EventKind, Recipient, SendRequest, SmsFallback};
use sendfleet_test_support::{Fleet, FleetOptions, TEST_API_KEY, TEST_CALLBACK_TOKEN};

const ACCOUNT: &str = "AC00000000000000000000000000000001";
const RCS_SERVICE: &str = "MG00000000000000000000000000000003";

/// `tw-sms` (SMS default, sends `From`) and `tw-rcs` (RCS default, through a Messaging
/// Service) with `rcs_extra` lines. The mock signs callbacks with TEST_API_KEY, so that
/// is the Auth Token.
fn options(name: &'static str, rcs_extra: &str, behaviour: Behaviour) -> FleetOptions {
    let providers = format!(
        r#"
[[providers]]
id = "tw-sms"
kind = "twilio_sms"
base_url = "{{mock}}"
sender_ids = ["+14155550100"]
default_for_channel = true
rate_per_second = 4600
concurrency = 32
callback_token_env = "TEST_CALLBACK_TOKEN"
[providers.twilio]
account_sid = "{ACCOUNT}"
auth_token_env = "TEST_API_KEY"

[[providers]]
id = "tw-rcs"
kind = "twilio_rcs"
base_url = "{{mock}}"
sender_ids = ["acme_agent"]
default_for_channel = true
rate_per_second = 4600
concurrency = 32
callback_token_env = "TEST_CALLBACK_TOKEN"
{rcs_extra}
[providers.twilio]
account_sid = "{ACCOUNT}"
auth_token_env = "TEST_API_KEY"
messaging_service_sid = "{RCS_SERVICE}"
"#
    );
    FleetOptions {
        providers_toml: providers,
        provider_ids: vec!["tw-sms", "tw-rcs"],
        behaviour,
        ..FleetOptions::infobip(name)
    }
}

fn request(channel: Channel, recipients: &[(&str, &str)], fallback: bool) -> SendRequest {
    SendRequest {
        priority: Default::default(),
        schema_version: 1,
        message_id: None,
        channel,
        provider: None,
        to: None,
        recipients: recipients
            .iter()
            .map(|(id, to)| Recipient {
                to: (*to).into(),
                message_id: Some((*id).into()),
                variables: Default::default(),
                metadata: Default::default(),
            })
            .collect(),
        sender: None,
        content: Some(Content::Text { text: "Your code is 482913".into(), suggestions: vec![] }),
        template: None,
        options: Default::default(),
        fallback: fallback.then(|| SmsFallback {
            text: "Your code is 482913 (SMS)".into(),
            sender: Some("+14155550199".into()),
            provider: None,
            regional: None,
            validity_period_seconds: None,
        }),
        metadata: Default::default(),
        trace_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_sms_and_rcs_are_delivered_by_signed_callbacks_and_forged_ones_are_refused() {
    let fleet = Fleet::start(options("twilio", "", Behaviour::default())).await;
    fleet.publish_request(&request(Channel::Sms, &[("tw-sms-1", "+447700900001")], false)).await;
    fleet.publish_request(&request(Channel::Rcs, &[("tw-rcs-1", "+447700900002")], false)).await;
    assert_eq!(fleet.events.wait_for(EventKind::Delivered, 2, Duration::from_secs(30)).await, 2);

    let received = fleet.mock.received();
    assert_eq!(received.len(), 2);
    for request in &received {
        assert_eq!(request.status, 201, "valid against CreateMessageRequest: {:?}", request.body);
        assert_eq!(request.path, format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json"));
        assert_eq!(request.headers["content-type"], "application/x-www-form-urlencoded");
    }
    let form = |id: &str| received.iter().find(|r| r.message_ids == [id]).and_then(|r| r.body.clone()).unwrap();
    let sms = form("tw-sms-1");
    assert_eq!((sms["To"].as_str(), sms["From"].as_str()), (Some("+447700900001"), Some("+14155550100")));
    let rcs = form("tw-rcs-1");
    assert_eq!(rcs["To"], "rcs:+447700900002", "fleet fallback mode keeps the message on RCS");
    assert_eq!(rcs["MessagingServiceSid"], RCS_SERVICE);

    let events = fleet.events.events();
    let delivered = |id: &str| {
        events.iter().find(|e| e.kind == EventKind::Delivered && e.message_id.as_deref() == Some(id)).unwrap()
    };
    assert_eq!(delivered("tw-sms-1").channel, Channel::Sms);
    let rcs = delivered("tw-rcs-1");
    assert_eq!((rcs.channel, rcs.provider.as_str()), (Channel::Rcs, "tw-rcs"));
    assert_eq!(rcs.sender.as_deref(), Some(MOCK_RCS_AGENT));
    assert!(rcs.details["vendor_message_id"].starts_with("SM"));
    // The mock counts a callback once callback-ingest has answered it, which may be just
    // after the event it published was collected.
    let counted =
        sendfleet_test_support::wait_until(Duration::from_secs(10), || fleet.mock.twilio_callbacks_delivered() >= 4)
            .await;
    assert!(counted, "sent + delivered for each: {}", fleet.mock.twilio_callbacks_delivered());

    // A forged callback (wrong or no signature) is refused with 401 and publishes nothing.
    let ingest = fleet.ingest_url.clone().unwrap();
    let url = format!("{ingest}/callbacks/tw-sms/{TEST_CALLBACK_TOKEN}/delivery?message_id=tw-sms-1");
    let body = "MessageSid=SM1&MessageStatus=undelivered&ErrorCode=30003&From=%2B14155550100&To=%2B447700900001";
    let client = reqwest::Client::new();
    let forged_signature = sendfleet_mock_provider::twilio_signature(&url, &[], "not-the-auth-token");
    for signature in [Some(forged_signature.as_str()), None] {
        let mut post = client.post(&url).header("content-type", "application/x-www-form-urlencoded").body(body);
        if let Some(signature) = signature {
            post = post.header("X-Twilio-Signature", signature);
        }
        let answer = post.send().await.unwrap();
        assert_eq!(answer.status(), 401, "{signature:?}");
    }
    // The same body signed with the Auth Token is accepted.
    let params = form_pairs(body);
    let signature = sendfleet_mock_provider::twilio_signature(&url, &params, TEST_API_KEY);
    let answer = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(fleet.events.wait_for(EventKind::Undelivered, 1, Duration::from_secs(10)).await, 1);
    fleet.stop().await;
}

fn form_pairs(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcs_with_twilios_own_fallback_reports_the_channel_that_delivered() {
    let behaviour = Behaviour {
        twilio_rcs_services: vec![RCS_SERVICE.into()],
        not_rcs_capable_numbers: vec!["+447700900012".into()],
        ..Behaviour::default()
    };
    let fleet = Fleet::start(options("twilio-fallback", "fallback_mode = \"provider\"", behaviour)).await;
    let recipients = [("tw-fb-capable", "+447700900011"), ("tw-fb-not-capable", "+447700900012")];
    fleet.publish_request(&request(Channel::Rcs, &recipients, true)).await;
    assert_eq!(fleet.events.wait_for(EventKind::Delivered, 2, Duration::from_secs(30)).await, 2);
    let received = fleet.mock.received();
    assert_eq!(received.len(), 2, "one RCS request each; Twilio sends the SMS itself");
    for request in &received {
        let form = request.body.as_ref().unwrap();
        assert!(form["To"].as_str().unwrap().starts_with('+'), "a plain number lets Twilio fall back: {form}");
        assert_eq!(form["FallbackFrom"], "+14155550199");
    }
    let by_channel: HashMap<String, (Channel, Option<String>)> = fleet
        .events
        .events()
        .into_iter()
        .filter(|e| e.kind == EventKind::Delivered)
        .filter_map(|e| e.message_id.map(|id| (id, (e.channel, e.sender))))
        .collect();
    assert_eq!(by_channel["tw-fb-capable"], (Channel::Rcs, Some(MOCK_RCS_AGENT.to_owned())));
    assert_eq!(by_channel["tw-fb-not-capable"], (Channel::Sms, Some("+14155550199".to_owned())));
    assert_eq!(fleet.events.count(EventKind::FallbackTriggered), 0, "no SMS job of our own");
    fleet.stop().await;
}

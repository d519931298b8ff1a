//! The Infobip/JioCX feature surface through the real pipeline (dispatcher → queue →
//! sender-worker → mock provider): every content type and every option, checked field
//! by field in what the mock received; outbound events and Send Test through the
//! dispatcher's HTTP API.

use std::{collections::BTreeMap, time::Duration};

use sendfleet_protocol::{
    Card, CardAlignment, CardOrientation, CardWidth, Channel, Content, DeliveryTimeWindow, EventKind, IndiaDlt, Media,
    MediaHeight, Regional, SendOptions, SendRequest, Suggestion, TemplateRef, TimeOfDay, TurkeyIys, UrlApplication,
    WebviewViewMode,
};
use sendfleet_test_support::{Fleet, FleetOptions, TEST_API_KEY, TEST_CALLBACK_TOKEN, TEST_JIOCX_API_KEY};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const PROVIDERS: &str = r#"
[[providers]]
id = "ib-sms"
kind = "infobip_sms"
base_url = "{mock}"
api_key_env = "TEST_API_KEY"
sender_ids = ["ACMEIN", "ACMETR"]
default_for_channel = true
rate_per_second = 4600
concurrency = 16
callback_token_env = "TEST_CALLBACK_TOKEN"
require_india_dlt = true
click_tracking = { enabled = true }
regional = { turkey_brand_code = 654321, turkey_recipient_type = "TACIR" }

[[providers]]
id = "ib-rcs"
kind = "infobip_rcs"
base_url = "{mock}"
api_key_env = "TEST_API_KEY"
sender_ids = ["AcmeAgent"]
default_for_channel = true
rate_per_second = 4600
concurrency = 16
callback_token_env = "TEST_CALLBACK_TOKEN"
click_tracking = { custom_domain = "go.acme.example", tracking_url = "https://hooks.acme.example/clicks" }
sms_fallback = { sender_id = "ACMEIN", sms_provider = "ib-sms", india = true, principal_entity_id = "1201159100000001" }

[[providers]]
id = "jio-rcs"
kind = "jiocx_rcs"
base_url = "{jio}"
api_key_env = "TEST_JIOCX_API_KEY"
sender_ids = ["AcmeJioAgent"]
rate_per_second = 4600
concurrency = 16
callback_token_env = "TEST_CALLBACK_TOKEN"
"#;

const TEMPLATES: &str = r#"
[[templates]]
id = "promo-card"
content = { type = "card", orientation = "vertical", alignment = "left", card = { title = "Hi {{name}}", description = "{{pct}}% off for you", media = { url = "https://img.acme.example/{{sku}}.jpg", height = "tall" }, suggestions = [{ type = "open_url", text = "Shop", postback_data = "shop-{{sku}}", url = "https://acme.example/p/{{sku}}" }] } }
"#;

fn request(id: &str, channel: Channel, to: &str, content: Content) -> SendRequest {
    SendRequest {
        priority: Default::default(),
        schema_version: 1,
        message_id: Some(id.to_owned()),
        channel,
        provider: None,
        to: Some(to.to_owned()),
        recipients: vec![],
        sender: None,
        content: Some(content),
        template: None,
        options: SendOptions::default(),
        fallback: None,
        metadata: BTreeMap::from([("case".to_owned(), id.to_owned())]),
        trace_id: None,
    }
}

fn every_suggestion() -> Vec<Suggestion> {
    vec![
        Suggestion::Reply { text: "Yes".into(), postback_data: "yes".into() },
        Suggestion::OpenUrl {
            text: "Open".into(),
            postback_data: "open".into(),
            url: "https://acme.example/o/1".into(),
            application: Some(UrlApplication::Webview),
            webview_view_mode: Some(WebviewViewMode::Half),
        },
        Suggestion::DialPhone {
            text: "Call".into(),
            postback_data: "call".into(),
            phone_number: "+15551230000".into(),
        },
        Suggestion::ShowLocation {
            text: "Store".into(),
            postback_data: "loc".into(),
            latitude: 45.8,
            longitude: 15.97,
            label: Some("Zagreb store".into()),
        },
        Suggestion::RequestLocation { text: "Share location".into(), postback_data: "req-loc".into() },
        Suggestion::CreateCalendarEvent {
            text: "Remind me".into(),
            postback_data: "cal".into(),
            start_time: "2030-05-01T10:00:00Z".into(),
            end_time: "2030-05-01T11:00:00+02:00".into(),
            title: "Sale".into(),
            description: Some("Spring sale".into()),
        },
    ]
}

fn card(n: u32) -> Card {
    Card {
        title: Some(format!("Card {n}")),
        description: Some(format!("Description {n}")),
        media: Some(Media {
            url: format!("https://img.acme.example/{n}.png"),
            thumbnail_url: None,
            height: MediaHeight::Medium,
        }),
        suggestions: vec![Suggestion::Reply { text: format!("Pick {n}"), postback_data: format!("pick-{n}") }],
    }
}

/// The recorded body of the request that carried `message_id`.
fn body_of(received: &[sendfleet_mock_provider::Received], message_id: &str) -> (String, Option<String>, Value) {
    let found = received
        .iter()
        .find(|r| r.message_ids.iter().any(|m| m == message_id))
        .unwrap_or_else(|| panic!("{message_id} was not received"));
    assert_eq!(found.status, 200, "{message_id}: the mock accepted it");
    (found.path.clone(), found.authorization.clone(), found.body.clone().expect("body recorded"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_content_type_and_option_reaches_the_provider_as_infobip_expects() {
    // JioCX on its own host with its own key.
    let jio_shutdown = CancellationToken::new();
    let jio = sendfleet_mock_provider::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        sendfleet_mock_provider::MockConfig { api_keys: vec![TEST_JIOCX_API_KEY.into()], ..Default::default() },
        jio_shutdown.clone(),
    )
    .await
    .unwrap();
    let mut options = FleetOptions::infobip("features");
    options.providers_toml = PROVIDERS.replace("{jio}", &jio.base_url());
    options.provider_ids = vec!["ib-sms", "ib-rcs", "jio-rcs"];
    options.extra_toml = TEMPLATES.to_owned();
    let fleet = Fleet::start(options).await;

    let mut requests = Vec::new();
    // RCS text with every suggestion type and every message/request option.
    let mut text = request(
        "rcs-text",
        Channel::Rcs,
        "+447700900001",
        Content::Text { text: "Spring sale: https://acme.example/sale".into(), suggestions: every_suggestion() },
    );
    text.options = SendOptions {
        validity_period_seconds: Some(7_200),
        send_at: Some("2030-01-02T03:04:05Z".into()),
        delivery_time_window: Some(DeliveryTimeWindow {
            days: vec!["MONDAY".into(), "FRIDAY".into()],
            from: Some(TimeOfDay { hour: 9, minute: 0 }),
            to: Some(TimeOfDay { hour: 17, minute: 30 }),
        }),
        campaign_reference_id: Some("spring-2030".into()),
        regional: None,
    };
    requests.push(text);
    requests.push(request(
        "rcs-file",
        Channel::Rcs,
        "+447700900002",
        Content::File {
            url: "https://cdn.acme.example/video.mp4".into(),
            thumbnail_url: Some("https://cdn.acme.example/thumb.jpg".into()),
            suggestions: vec![Suggestion::Reply { text: "Nice".into(), postback_data: "nice".into() }],
        },
    ));
    requests.push(request(
        "rcs-card",
        Channel::Rcs,
        "+447700900003",
        Content::Card {
            orientation: CardOrientation::Horizontal,
            alignment: CardAlignment::Right,
            card: Card {
                media: Some(Media {
                    url: "https://cdn.acme.example/v.mp4".into(),
                    thumbnail_url: Some("https://cdn.acme.example/v.jpg".into()),
                    height: MediaHeight::Short,
                }),
                ..card(1)
            },
            suggestions: vec![Suggestion::RequestLocation { text: "Where?".into(), postback_data: "where".into() }],
        },
    ));
    requests.push(request(
        "rcs-carousel",
        Channel::Rcs,
        "+447700900004",
        Content::Carousel {
            card_width: CardWidth::Small,
            cards: vec![card(1), card(2), card(3)],
            suggestions: vec![Suggestion::Reply { text: "More".into(), postback_data: "more".into() }],
        },
    ));
    requests.push(request(
        "rcs-template",
        Channel::Rcs,
        "+447700900005",
        Content::Template {
            template_id: "order_update_v2".into(),
            parameters: BTreeMap::from([
                ("order".to_owned(), "A-17".to_owned()),
                ("eta".to_owned(), "Friday".to_owned()),
            ]),
        },
    ));
    let mut rendered = request(
        "rcs-our-template",
        Channel::Rcs,
        "+447700900006",
        Content::Text { text: String::new(), suggestions: vec![] },
    );
    rendered.content = None;
    rendered.template = Some(TemplateRef {
        id: "promo-card".into(),
        variables: BTreeMap::from([
            ("name".to_owned(), "Asha".to_owned()),
            ("pct".to_owned(), "20".to_owned()),
            ("sku".to_owned(), "SKU9".to_owned()),
        ]),
    });
    requests.push(rendered);
    let mut jio_text = request(
        "jio-text",
        Channel::Rcs,
        "+919876500007",
        Content::Text {
            text: "Hello from Jio".into(),
            suggestions: vec![Suggestion::Reply { text: "Hi".into(), postback_data: "hi".into() }],
        },
    );
    jio_text.provider = Some("jio-rcs".into());
    jio_text.options.validity_period_seconds = Some(600);
    requests.push(jio_text);
    // SMS: India DLT, Turkey IYS (explicit and from the provider's regional defaults).
    let mut india = request(
        "sms-india",
        Channel::Sms,
        "+919876500008",
        Content::Text { text: "OTP 123456 https://acme.example/v".into(), suggestions: vec![] },
    );
    india.sender = Some("ACMEIN".into());
    india.options = SendOptions {
        validity_period_seconds: Some(90),
        send_at: Some("2030-03-04T05:06:07.250+05:30".into()),
        delivery_time_window: Some(DeliveryTimeWindow {
            days: vec!["SATURDAY".into(), "SUNDAY".into()],
            from: None,
            to: None,
        }),
        campaign_reference_id: Some("otp".into()),
        regional: Some(Regional {
            india_dlt: Some(IndiaDlt {
                principal_entity_id: "1201159100000001".into(),
                content_template_id: "1207161234567890123".to_owned().into(),
                telemarketer_id: Some("1702159000000000".into()),
            }),
            turkey_iys: None,
        }),
    };
    requests.push(india);
    let mut turkey = request(
        "sms-turkey",
        Channel::Sms,
        "+905321234509",
        Content::Text { text: "Kampanya".into(), suggestions: vec![] },
    );
    turkey.sender = Some("ACMETR".into());
    turkey.options.regional = Some(Regional {
        india_dlt: None,
        turkey_iys: Some(TurkeyIys { recipient_type: "BIREYSEL".into(), brand_code: Some(123456) }),
    });
    requests.push(turkey);
    requests.push(request(
        "sms-turkey-default",
        Channel::Sms,
        "+905321234510",
        Content::Text { text: "Kampanya 2".into(), suggestions: vec![] },
    ));
    // RCS to India with an SMS fallback: sender and DLT id come from sms_fallback settings.
    let mut with_fallback = request(
        "rcs-fallback",
        Channel::Rcs,
        "+919876500011",
        Content::Text { text: "Rich hello".into(), suggestions: vec![] },
    );
    with_fallback.fallback = Some(sendfleet_protocol::SmsFallback {
        text: "Plain hello".into(),
        sender: None,
        provider: None,
        regional: None,
        validity_period_seconds: None,
    });
    requests.push(with_fallback);

    for request in &requests {
        fleet.publish_request(request).await;
    }
    let n = requests.len();
    assert_eq!(
        fleet.events.wait_for(EventKind::Accepted, n, Duration::from_secs(30)).await,
        n,
        "{:?}",
        fleet.events.events()
    );
    let received = fleet.mock.received();
    let jio_received = jio.received();
    assert_eq!(received.len(), n - 1, "all but the JioCX message went to the Infobip host");
    assert_eq!(jio_received.len(), 1, "the JioCX message went to the JioCX host only");
    let callback = format!("{}/callbacks/ib-rcs/{TEST_CALLBACK_TOKEN}", fleet.ingest_url.as_deref().unwrap());

    // --- RCS text: content, suggestions, options, request options, webhooks.
    let (path, auth, body) = body_of(&received, "rcs-text");
    assert_eq!(path, "/rcs/2/messages");
    assert_eq!(auth.as_deref(), Some(format!("App {TEST_API_KEY}").as_str()));
    let message = &body["messages"][0];
    assert_eq!(message["sender"], "AcmeAgent");
    assert_eq!(message["destinations"], json!([{ "to": "447700900001", "messageId": "rcs-text" }]));
    assert_eq!(message["content"]["type"], "TEXT");
    assert_eq!(message["content"]["text"], "Spring sale: https://acme.example/sale");
    let s = &message["content"]["suggestions"];
    assert_eq!(s[0], json!({ "type": "REPLY", "text": "Yes", "postbackData": "yes" }));
    assert_eq!(
        s[1],
        json!({ "type": "OPEN_URL", "text": "Open", "postbackData": "open", "url": "https://acme.example/o/1", "application": "WEBVIEW", "webviewViewMode": "HALF" })
    );
    assert_eq!(
        s[2],
        json!({ "type": "DIAL_PHONE", "text": "Call", "postbackData": "call", "phoneNumber": "+15551230000" })
    );
    assert_eq!(
        s[3],
        json!({ "type": "SHOW_LOCATION", "text": "Store", "postbackData": "loc", "latitude": 45.8, "longitude": 15.97, "label": "Zagreb store" })
    );
    assert_eq!(s[4], json!({ "type": "REQUEST_LOCATION", "text": "Share location", "postbackData": "req-loc" }));
    assert_eq!(
        s[5],
        json!({ "type": "CREATE_CALENDAR_EVENT", "text": "Remind me", "postbackData": "cal", "startTime": "2030-05-01T10:00:00.000+0000", "endTime": "2030-05-01T11:00:00.000+0200", "title": "Sale", "description": "Spring sale" })
    );
    assert_eq!(message["options"]["validityPeriod"], json!({ "amount": 2, "timeUnit": "HOURS" }));
    assert_eq!(
        message["options"]["deliveryTimeWindow"],
        json!({ "days": ["MONDAY", "FRIDAY"], "from": { "hour": 9, "minute": 0 }, "to": { "hour": 17, "minute": 30 } })
    );
    assert_eq!(message["options"]["campaignReferenceId"], "spring-2030");
    assert!(message["options"].get("regional").is_none(), "regional ids belong to SMS");
    assert_eq!(body["options"]["schedule"]["sendAt"], "2030-01-02T03:04:05.000+0000");
    assert_eq!(
        body["options"]["tracking"],
        json!({ "shortenUrl": true, "trackClicks": true, "customDomain": "go.acme.example", "trackingUrl": "https://hooks.acme.example/clicks" })
    );
    assert_eq!(message["webhooks"]["delivery"]["url"], callback.as_str());
    assert_eq!(message["webhooks"]["seen"]["url"], callback.as_str());
    assert_eq!(message["webhooks"]["contentType"], "application/json");
    assert!(message["webhooks"]["callbackData"].as_str().is_some_and(|d| !d.is_empty()));

    // --- File.
    let (_, _, body) = body_of(&received, "rcs-file");
    assert_eq!(
        body["messages"][0]["content"],
        json!({ "type": "FILE", "file": { "url": "https://cdn.acme.example/video.mp4" }, "thumbnail": { "url": "https://cdn.acme.example/thumb.jpg" }, "suggestions": [{ "type": "REPLY", "text": "Nice", "postbackData": "nice" }] })
    );

    // --- Card: orientation, alignment, title, description, media with thumbnail and height.
    let (_, _, body) = body_of(&received, "rcs-card");
    let content = &body["messages"][0]["content"];
    assert_eq!(
        (content["type"].as_str(), content["orientation"].as_str(), content["alignment"].as_str()),
        (Some("CARD"), Some("HORIZONTAL"), Some("RIGHT"))
    );
    assert_eq!(
        content["content"],
        json!({ "title": "Card 1", "description": "Description 1", "media": { "file": { "url": "https://cdn.acme.example/v.mp4" }, "thumbnail": { "url": "https://cdn.acme.example/v.jpg" }, "height": "SHORT" }, "suggestions": [{ "type": "REPLY", "text": "Pick 1", "postbackData": "pick-1" }] })
    );
    assert_eq!(content["suggestions"][0]["type"], "REQUEST_LOCATION");

    // --- Carousel: width and cards in order.
    let (_, _, body) = body_of(&received, "rcs-carousel");
    let content = &body["messages"][0]["content"];
    assert_eq!(content["type"], "CAROUSEL");
    assert_eq!(content["cardWidth"], "SMALL");
    let cards = content["contents"].as_array().unwrap();
    assert_eq!(cards.len(), 3);
    assert_eq!(cards[2]["title"], "Card 3");
    assert_eq!(cards[1]["media"], json!({ "file": { "url": "https://img.acme.example/2.png" }, "height": "MEDIUM" }));
    assert_eq!(content["suggestions"][0]["text"], "More");

    // --- Provider template with parameters.
    let (_, _, body) = body_of(&received, "rcs-template");
    assert_eq!(
        body["messages"][0]["content"],
        json!({ "type": "PROVIDER_TEMPLATE", "templateId": "order_update_v2", "parameters": [{ "name": "eta", "value": "Friday" }, { "name": "order", "value": "A-17" }] })
    );

    // --- Our own template, rendered by the dispatcher.
    let (_, _, body) = body_of(&received, "rcs-our-template");
    let content = &body["messages"][0]["content"];
    assert_eq!(
        (content["type"].as_str(), content["orientation"].as_str(), content["alignment"].as_str()),
        (Some("CARD"), Some("VERTICAL"), Some("LEFT"))
    );
    assert_eq!(content["content"]["title"], "Hi Asha");
    assert_eq!(content["content"]["description"], "20% off for you");
    assert_eq!(content["content"]["media"]["file"]["url"], "https://img.acme.example/SKU9.jpg");
    assert_eq!(content["content"]["suggestions"][0]["url"], "https://acme.example/p/SKU9");
    assert_eq!(content["content"]["suggestions"][0]["postbackData"], "shop-SKU9");

    // --- JioCX: same API, its own host and key, no click tracking configured.
    let (path, auth, body) = body_of(&jio_received, "jio-text");
    assert_eq!(path, "/rcs/2/messages");
    assert_eq!(auth.as_deref(), Some(format!("App {TEST_JIOCX_API_KEY}").as_str()));
    assert_eq!(body["messages"][0]["sender"], "AcmeJioAgent");
    assert_eq!(body["messages"][0]["options"]["validityPeriod"], json!({ "amount": 10, "timeUnit": "MINUTES" }));
    assert!(body.get("options").is_none_or(|o| o.get("tracking").is_none()));
    let jio_callback = format!("{}/callbacks/jio-rcs/{TEST_CALLBACK_TOKEN}", fleet.ingest_url.as_deref().unwrap());
    assert_eq!(body["messages"][0]["webhooks"]["delivery"]["url"], jio_callback.as_str());

    // --- SMS India: DLT ids, validity in seconds, schedule in UTC offset form, window, tracking.
    let (path, _, body) = body_of(&received, "sms-india");
    assert_eq!(path, "/sms/3/messages");
    let message = &body["messages"][0];
    assert_eq!(message["sender"], "ACMEIN");
    assert_eq!(message["destinations"], json!([{ "to": "919876500008", "messageId": "sms-india" }]));
    assert_eq!(message["content"], json!({ "text": "OTP 123456 https://acme.example/v" }));
    assert_eq!(message["options"]["validityPeriod"], json!({ "amount": 90, "timeUnit": "SECONDS" }));
    assert_eq!(message["options"]["deliveryTimeWindow"], json!({ "days": ["SATURDAY", "SUNDAY"] }));
    assert_eq!(message["options"]["campaignReferenceId"], "otp");
    assert_eq!(
        message["options"]["regional"],
        json!({ "indiaDlt": { "principalEntityId": "1201159100000001", "contentTemplateId": "1207161234567890123", "telemarketerId": "1702159000000000" } })
    );
    assert_eq!(body["options"]["schedule"]["sendAt"], "2030-03-04T05:06:07.250+0530");
    assert_eq!(body["options"]["tracking"], json!({ "shortenUrl": true, "trackClicks": true }));
    assert!(message["webhooks"].get("seen").is_none(), "SMS has no seen reports");

    // --- SMS Turkey: explicit IYS ids, and the provider's defaults when none are given.
    let (_, _, body) = body_of(&received, "sms-turkey");
    assert_eq!(body["messages"][0]["sender"], "ACMETR");
    assert_eq!(
        body["messages"][0]["options"]["regional"],
        json!({ "turkeyIys": { "recipientType": "BIREYSEL", "brandCode": 123456 } })
    );
    let (_, _, body) = body_of(&received, "sms-turkey-default");
    assert_eq!(
        body["messages"][0]["options"]["regional"],
        json!({ "turkeyIys": { "recipientType": "TACIR", "brandCode": 654321 } })
    );

    // --- The RCS message to India went out as RCS; its fallback waits in the job, completed
    // from the provider's sms_fallback settings (seen in the accepted event's provider).
    let (path, _, body) = body_of(&received, "rcs-fallback");
    assert_eq!(path, "/rcs/2/messages");
    assert!(body["messages"][0]["options"].get("regional").is_none());

    let accepted: Vec<_> = fleet.events.events().into_iter().filter(|e| e.kind == EventKind::Accepted).collect();
    for request in &requests {
        let id = request.message_id.as_deref().unwrap();
        let event =
            accepted.iter().find(|e| e.message_id.as_deref() == Some(id)).unwrap_or_else(|| panic!("{id} accepted"));
        assert_eq!(event.metadata.get("case").map(String::as_str), Some(id));
    }
    jio_shutdown.cancel();
    fleet.stop().await;
}

async fn post(url: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new().post(url).json(body).send().await.expect("http call");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_and_outbound_events_go_straight_to_the_provider() {
    let mut options = FleetOptions::infobip("send-test");
    options.workers = 0;
    options.providers_toml = options.providers_toml.replace(
        "id = \"ib-rcs\"\n",
        "id = \"ib-rcs\"\nsms_fallback = { sender_id = \"ACMEFB\", sms_provider = \"ib-sms\", india = true, principal_entity_id = \"PE-77\" }\n",
    );
    let fleet = Fleet::start(options).await;
    let base = fleet.dispatcher_url.clone().unwrap();

    // An accepted RCS send test: the provider's answer as it came back.
    let (status, result) = post(
        &format!("{base}/v1/send-test"),
        &json!({ "provider": "ib-rcs", "country_code": "+91", "number": "98765 43210", "text": "Test message", "sms_fallback_text": "Test SMS" }),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    let answer = &result["answer"];
    assert_eq!(answer["http_status"], 200);
    assert_eq!(answer["outcome"], "accepted");
    assert_eq!(answer["provider_message_id"], answer["message_id"], "our id is the provider's id");
    assert!(answer["raw_body"].as_str().unwrap().contains("PENDING_ACCEPTED"));
    assert!(result["fallback"].is_null(), "no fallback when RCS was accepted");
    let received = fleet.mock.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body.as_ref().unwrap()["messages"][0]["destinations"][0]["to"], "919876543210");

    // Infobip refuses RCS text over 3,072 characters; the SMS fallback is then sent with
    // the fallback sender and the India DLT principal entity id.
    let (status, result) = post(
        &format!("{base}/v1/send-test"),
        &json!({ "provider": "ib-rcs", "country_code": "91", "number": "9876543210", "text": "x".repeat(3_073), "sms_fallback_text": "Test SMS" }),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["answer"]["http_status"], 400);
    assert_eq!(result["answer"]["outcome"], "rejected");
    assert!(result["answer"]["raw_body"].as_str().unwrap().contains("messages[0].content.text"), "{result}");
    assert_eq!(result["fallback"]["outcome"], "accepted", "{result}");
    let sms = fleet.mock.received().into_iter().find(|r| r.path == "/sms/3/messages").expect("fallback SMS sent");
    let sms = &sms.body.unwrap()["messages"][0];
    assert_eq!(sms["sender"], "ACMEFB");
    assert_eq!(sms["content"]["text"], "Test SMS");
    assert_eq!(sms["options"]["regional"]["indiaDlt"]["principalEntityId"], "PE-77");

    // SMS provider: template id is the DLT content template id.
    let (_, result) = post(
        &format!("{base}/v1/send-test"),
        &json!({ "provider": "ib-sms", "country_code": "91", "number": "9876543211", "text": "Your OTP", "template_id": "1207000000000000001", "principal_entity_id": "PE-1" }),
    )
    .await;
    assert_eq!(result["answer"]["outcome"], "accepted", "{result}");
    let id = result["answer"]["message_id"].as_str().unwrap().to_owned();
    let (_, _, body) = body_of(&fleet.mock.received(), &id);
    assert_eq!(
        body["messages"][0]["options"]["regional"]["indiaDlt"],
        json!({ "principalEntityId": "PE-1", "contentTemplateId": "1207000000000000001" })
    );

    // Outbound events: typing indicator and read receipt.
    let (status, result) = post(
        &format!("{base}/v1/events"),
        &json!({ "provider": "ib-rcs", "to": "+447700900123", "type": "typing_indicator" }),
    )
    .await;
    assert_eq!((status, result["outcome"].as_str()), (200, Some("accepted")), "{result}");
    let (status, result) = post(
        &format!("{base}/v1/events"),
        &json!({ "provider": "ib-rcs", "to": "+447700900123", "type": "read_receipt", "message_id": "mo-42" }),
    )
    .await;
    assert_eq!((status, result["outcome"].as_str()), (200, Some("accepted")), "{result}");
    let events: Vec<Value> =
        fleet.mock.received().into_iter().filter(|r| r.path == "/rcs/1/events").map(|r| r.body.unwrap()).collect();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0],
        json!({ "events": [{ "sender": "AcmeAgent", "destinations": [{ "to": "447700900123" }], "content": { "type": "TYPING_INDICATOR" } }] })
    );
    assert_eq!(events[1]["events"][0]["content"], json!({ "type": "SEEN", "messageId": "mo-42" }));
    fleet.stop().await;
}

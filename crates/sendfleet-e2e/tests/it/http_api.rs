//! The dispatcher's HTTP API against the real broker: one message, a streamed bulk
//! request with per-line errors, and bearer-token auth.

use std::time::Duration;

use sendfleet_protocol::EventKind;
use sendfleet_test_support::{Fleet, FleetOptions, TEST_CALLBACK_TOKEN};
use serde_json::{Value, json};

const TEMPLATES: &str = r#"
[dispatcher]
api_token_env = "TEST_CALLBACK_TOKEN"
bulk_publish_window = 8

[[templates]]
id = "hello"
content = { type = "text", text = "Hello {{name}}, code {{code}}" }
"#;

async fn post(url: &str, token: Option<&str>, body: String) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(url).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("http call");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_streamed_bulk_requests_become_jobs_with_per_line_errors() {
    let mut options = FleetOptions::infobip("http-api");
    options.extra_toml = TEMPLATES.to_owned();
    let fleet = Fleet::start(options).await;
    let base = fleet.dispatcher_url.clone().unwrap();
    let token = Some(TEST_CALLBACK_TOKEN);

    let single = json!({
        "schema_version": 1, "channel": "sms", "message_id": "http-one", "to": "+15550001111",
        "content": { "type": "text", "text": "one" }
    })
    .to_string();
    let (status, body) = post(&format!("{base}/v1/messages"), None, single.clone()).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")));
    let (status, body) = post(&format!("{base}/v1/messages"), token, single).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({ "accepted": 1, "message_ids": ["http-one"] }));

    // Bulk: the request on line 1, then recipients; bad lines are reported, the rest sent.
    const N: usize = 200;
    let mut lines = vec![
        json!({ "schema_version": 1, "channel": "sms", "template": { "id": "hello", "variables": { "code": "42" } } })
            .to_string(),
    ];
    for i in 0..N {
        lines.push(json!({ "to": format!("+1555{i:07}"), "message_id": format!("bulk-{i}"), "variables": { "name": format!("N{i}") } }).to_string());
    }
    lines.push("{not json".into()); // line N+2
    lines.push(json!({ "to": "12345" }).to_string()); // line N+3
    lines.push(json!({ "to": "+15559999999" }).to_string()); // line N+4: no 'name'
    lines.push(String::new()); // blank: skipped
    lines.push(json!({ "to": "+15559999998", "variables": { "name": "x".repeat(70_000) } }).to_string()); // N+6: too long
    let (status, report) = post(&format!("{base}/v1/messages/bulk"), token, lines.join("\n")).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], N as u64);
    assert_eq!(report["rejected"], 4);
    assert_eq!(report["recipients"], N as u64 + 4);
    let errors = report["errors"].as_array().unwrap();
    let at = |line: usize| {
        errors.iter().find(|e| e["line"] == line as u64).unwrap_or_else(|| panic!("line {line}: {report}"))
    };
    assert_eq!(at(N + 2)["code"], "malformed");
    assert_eq!(at(N + 3)["code"], "invalid_destination");
    assert_eq!(at(N + 4)["code"], "missing_variable");
    assert!(at(N + 4)["reason"].as_str().unwrap().contains("'name'"));
    assert_eq!(at(N + 6)["code"], "line_too_long");

    let accepted = fleet.events.wait_for(EventKind::Accepted, N + 1, Duration::from_secs(30)).await;
    assert_eq!(accepted, N + 1);
    let received = fleet.mock.received();
    let sample = received.iter().find(|r| r.message_ids == ["bulk-117"]).expect("bulk-117 sent");
    let body = sample.body.as_ref().unwrap();
    assert_eq!(body["messages"][0]["content"]["text"], "Hello N117, code 42");
    assert_eq!(body["messages"][0]["destinations"][0]["to"], "15550000117");

    // A bad first line refuses the whole body; nothing is published.
    let (status, body) = post(
        &format!("{base}/v1/messages/bulk"),
        token,
        "{\"schema_version\":1,\"channel\":\"sms\",\"template\":{\"id\":\"nope\"}}\n{\"to\":\"+15550000001\"}\n".into(),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (422, Some("unknown_template")));
    let (status, body) = post(&format!("{base}/v1/messages/bulk"), token, String::new()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("malformed")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fleet.mock.received().len(), N + 1, "refused bodies published nothing");
    fleet.stop().await;
}

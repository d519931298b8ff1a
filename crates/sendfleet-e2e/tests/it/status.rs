//! Message status end to end: the worker and callback-ingest write it, the dispatcher's
//! `GET /v1/messages/{id}` reads it; late and repeated updates never move it back; an
//! RCS message with an SMS fallback shows both legs.

use std::time::Duration;

use sendfleet_mock_provider::Behaviour;
use sendfleet_protocol::{Channel, Content, SendJob, encode, now_ms};
use sendfleet_test_support::{Fleet, FleetOptions, TEST_CALLBACK_TOKEN};
use serde_json::{Value, json};

async fn status(base: &str, id: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}/v1/messages/{id}")).await.expect("http call");
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

/// Polls the record until `done` holds (≤ 30 s); returns the last one read.
async fn wait_for(base: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = status(base, id).await;
        if code == 200 && done(&body) || tokio::time::Instant::now() >= deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn states(record: &Value) -> Vec<&str> {
    record["transitions"].as_array().map(|t| t.iter().filter_map(|t| t["state"].as_str()).collect()).unwrap_or_default()
}

async fn send(base: &str, request: Value) -> String {
    let response =
        reqwest::Client::new().post(format!("{base}/v1/messages")).json(&request).send().await.expect("post");
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.json().await.expect("json");
    body["message_ids"][0].as_str().expect("an id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_walks_accepted_to_delivered_and_late_or_repeated_updates_leave_it_delivered() {
    let fleet = Fleet::start(FleetOptions::infobip("status-walk")).await;
    let base = fleet.dispatcher_url.clone().expect("dispatcher");
    let (code, body) = status(&base, "never-sent").await;
    assert_eq!((code, body["error"].as_str()), (404, Some("unknown_message")), "{body}");

    let id = send(
        &base,
        json!({ "schema_version": 1, "channel": "sms", "message_id": "st-1", "to": "+15550002222",
                "content": { "type": "text", "text": "hello" } }),
    )
    .await;
    let record = wait_for(&base, &id, |r| r["state"] == "delivered").await;
    assert_eq!(record["state"], "delivered", "{record}");
    assert_eq!(record["final"], true);
    assert_eq!(states(&record), ["accepted", "delivered"], "{record}");
    assert_eq!((record["channel"].as_str(), record["provider"].as_str()), (Some("sms"), Some("ib-sms")));
    assert_eq!(record["attempts"], 1);
    assert_eq!(record["provider_status"]["group_name"], "DELIVERED", "{record}");
    assert_eq!(record["stale_updates"], 0);

    // A late `accepted`: the same job published again is found already sent, and its
    // `accepted` is published (and written) once more.
    let job = SendJob {
        priority: Default::default(),
        schema_version: 1,
        message_id: id.clone(),
        provider: "ib-sms".into(),
        channel: Channel::Sms,
        to: "+15550002222".into(),
        sender: "ACMEIN".into(),
        content: Content::Text { text: "hello".into(), suggestions: vec![] },
        options: Default::default(),
        fallback: None,
        metadata: Default::default(),
        trace_id: "t".into(),
        attempts: 0,
        first_attempt_at_ms: None,
        created_at_ms: now_ms(),
        fallback_for: None,
    };
    fleet.publish_bytes(&fleet.ns.topology().jobs_exchange(), "ib-sms", &encode(&job)).await;
    // A repeated report: the provider posts the delivery report again.
    let fixture =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/infobip/sms-dlr-delivered.json"))
            .expect("fixture")
            .replace("7f1c2a9e-3b4d-4e5f-8a6b-0c1d2e3f4a01", &id);
    let ingest = fleet.ingest_url.clone().expect("ingest");
    let answer = reqwest::Client::new()
        .post(format!("{ingest}/callbacks/ib-sms/{TEST_CALLBACK_TOKEN}/delivery"))
        .body(fixture)
        .send()
        .await
        .expect("post report");
    assert_eq!(answer.status().as_u16(), 200);

    // Both updates reached Redis (counted as stale) and neither moved the record back.
    let record = wait_for(&base, &id, |r| r["stale_updates"].as_u64() >= Some(2)).await;
    assert_eq!(record["stale_updates"], 2, "{record}");
    assert_eq!(record["state"], "delivered", "{record}");
    assert_eq!(states(&record), ["accepted", "delivered"]);
    assert!(fleet.mock.stats().duplicate_message_ids == 0, "the late job was not sent again");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rcs_message_with_fallback_shows_both_legs() {
    let mut options = FleetOptions::infobip("status-legs");
    // The RCS delivery report says "not RCS capable" (7002): callback-ingest fires the
    // SMS fallback, which the worker sends and the mock reports delivered.
    options.behaviour = Behaviour { not_rcs_capable_numbers: vec!["+15550003333".into()], ..Behaviour::default() };
    let fleet = Fleet::start(options).await;
    let base = fleet.dispatcher_url.clone().expect("dispatcher");
    let id = send(
        &base,
        json!({ "schema_version": 1, "channel": "rcs", "message_id": "st-rcs-1", "to": "+15550003333",
                "content": { "type": "text", "text": "hello" }, "fallback": { "text": "hello by SMS" } }),
    )
    .await;
    let record = wait_for(&base, &id, |r| r["sms_leg"]["state"] == "delivered").await;
    assert_eq!(record["state"], "undelivered", "{record}");
    assert_eq!(record["channel"], "rcs");
    assert_eq!(states(&record), ["accepted", "undelivered"], "{record}");
    assert_eq!(record["provider_error"]["id"], 7002, "{record}");
    let leg = &record["sms_leg"];
    assert_eq!(leg["message_id"], "st-rcs-1.sms", "{record}");
    assert_eq!(leg["fallback_for"], "st-rcs-1");
    assert_eq!((leg["channel"].as_str(), leg["provider"].as_str()), (Some("sms"), Some("ib-sms")));
    assert_eq!(states(leg), ["accepted", "delivered"], "{record}");
    // The leg can be asked for by its own id too.
    let (code, own) = status(&base, "st-rcs-1.sms").await;
    assert_eq!((code, own["fallback_for"].as_str()), (200, Some("st-rcs-1")));
    fleet.stop().await;
}

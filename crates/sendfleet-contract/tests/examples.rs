//! The generated schemas are not vacuous: the JSON examples of `docs/http-api.md` (request
//! bodies, NDJSON lines, answers) validate against the OpenAPI document's schemas, and
//! wrong documents do not.

use jsonschema::Validator;
use serde_json::{Value, json};

fn repo_file(path: &str) -> String {
    let full = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// A validator for one schema of the OpenAPI document's `components/schemas`.
fn component(name: &str) -> Validator {
    let doc = sendfleet_dispatcher::openapi::document();
    assert!(doc["components"]["schemas"].get(name).is_some(), "no component {name}");
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"].clone(),
        "$ref": format!("#/components/schemas/{name}"),
    });
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name} does not compile: {e}"))
}

fn wire(name: &str) -> Validator {
    let schema = sendfleet_contract::wire_schemas().into_iter().find(|(n, _)| *n == name).expect("known schema").1;
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name} does not compile: {e}"))
}

fn assert_valid(validator: &Validator, instance: &Value, what: &str) {
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}\n{instance:#}");
}

/// Every JSON value in the fenced blocks of a Markdown file (```json blocks, NDJSON
/// lines in bare ``` blocks, and `-d '…'` bodies of ```sh blocks), in order.
fn examples(markdown: &str) -> Vec<Value> {
    let mut found = Vec::new();
    let mut block: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (&mut block, line.trim_start().strip_prefix("```")) {
            (None, Some(lang)) => block = Some((lang.trim().to_owned(), String::new())),
            (Some((lang, text)), Some(_)) => {
                match lang.as_str() {
                    "json" => found.extend(
                        serde_json::Deserializer::from_str(text)
                            .into_iter::<Value>()
                            .map(|value| value.unwrap_or_else(|e| panic!("{e}: {text}"))),
                    ),
                    "" => found.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok())),
                    "sh" => {
                        if let Some((_, body)) = text.split_once("-d '") {
                            let body = body.split('\'').next().unwrap_or_default();
                            found.push(serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")));
                        }
                    }
                    _ => {}
                }
                block = None;
            }
            (Some((_, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    found
}

#[test]
fn the_http_api_examples_match_the_openapi_schemas() {
    let found = examples(&repo_file("docs/http-api.md"));
    let mut matched = std::collections::BTreeMap::<&str, usize>::new();
    let candidates = [
        ("SendRequest", component("SendRequest")),
        ("Recipient", component("Recipient")),
        ("BulkReport", component("BulkReport")),
        ("SendTestResult", component("SendTestResult")),
        ("EventRequest", component("EventRequest")),
        ("MessageStatus", component("MessageStatus")),
        ("Accepted", component("Accepted")),
        ("EventAnswer", component("EventAnswer")),
        ("SendTestRequest", component("SendTestRequest")),
    ];
    for example in &found {
        // Each example is of exactly the kind its required fields say.
        let kind = if example.get("schema_version").is_some() {
            "SendRequest"
        } else if example.get("number").is_some() {
            "SendTestRequest"
        } else if example.get("message_ids").is_some() {
            "Accepted"
        } else if example.get("recipients").is_some() {
            "BulkReport"
        } else if example.get("answer").is_some() {
            "SendTestResult"
        } else if example.get("type").is_some() {
            "EventRequest"
        } else if example.get("http_status").is_some() {
            "EventAnswer"
        } else if example.get("state").is_some() {
            "MessageStatus"
        } else {
            "Recipient"
        };
        let validator = &candidates.iter().find(|(name, _)| *name == kind).expect("candidate").1;
        assert_valid(validator, example, &format!("docs/http-api.md example as {kind}"));
        *matched.entry(kind).or_default() += 1;
    }
    for (name, _) in &candidates {
        assert!(matched.contains_key(name), "no {name} example found in docs/http-api.md: {matched:?}");
    }
}

#[test]
fn wrong_documents_are_refused() {
    let request = component("SendRequest");
    let good = json!({"schema_version": 1, "channel": "sms", "to": "+14155550101",
                      "content": {"type": "text", "text": "hi"}});
    assert_valid(&request, &good, "a minimal request");
    for (field, bad) in [
        ("schema_version", json!(2)),
        ("channel", json!("fax")),
        ("content", json!({"type": "hologram"})),
        ("metadata", json!({"n": 1})),
    ] {
        let mut wrong = good.clone();
        wrong[field] = bad;
        assert!(!request.is_valid(&wrong), "{field} = {}", wrong[field]);
    }
    let status = component("MessageStatus");
    assert!(!status.is_valid(&json!({"message_id": "m", "state": "lost"})), "unknown state");
}

#[test]
fn an_event_of_a_kind_added_later_is_valid_but_a_malformed_kind_is_not() {
    let event = wire("event");
    let base = json!({"schema_version": 1, "event_id": "e-1", "kind": "delivered", "provider": "ib-sms",
                      "channel": "sms", "at_ms": 1_767_000_000_000_i64});
    assert_valid(&event, &base, "a delivered event");
    let mut later = base.clone();
    later["kind"] = json!("reaction_added");
    assert_valid(&event, &later, "an event of an unknown kind (protocol.md: consumers must accept it)");
    later["kind"] = json!(7);
    assert!(!event.is_valid(&later), "a kind is a string");
    let mut no_kind = base;
    no_kind.as_object_mut().expect("object").remove("kind");
    assert!(!event.is_valid(&no_kind), "kind is required");
}

#[test]
fn a_rejected_request_as_the_dispatcher_writes_it_matches_its_schema() {
    let body = sendfleet_dispatcher::RejectedRequest {
        schema_version: 1,
        reason_code: "invalid_destination".into(),
        reason: "'12345' is not an E.164 number".into(),
        original: vec![0x81, 0xa1, b'a', 0x01],
    };
    // serde_json writes the bin as an array of integers: the JSON view of the document.
    let view = serde_json::to_value(&body).expect("serializes");
    assert_eq!(view["original"], json!([0x81, 0xa1, 97, 1]));
    assert_valid(&wire("rejected-request"), &view, "a rejected request");
    let mut text = view;
    text["original"] = json!("not bytes");
    assert!(!wire("rejected-request").is_valid(&text), "original is bytes, not a string");
}

#[test]
fn the_request_examples_of_the_openapi_document_match_their_schemas() {
    let doc = sendfleet_dispatcher::openapi::document();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let Some(example) = operation["requestBody"]["content"]["application/json"].get("example") else {
                continue;
            };
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            let name = schema["$ref"].as_str().and_then(|r| r.rsplit('/').next()).expect("a component");
            assert_valid(&component(name), example, &format!("{method} {path} example"));
            checked += 1;
        }
    }
    assert_eq!(checked, 3, "POST /v1/messages, /v1/send-test and /v1/events have JSON examples");
    // The bulk example: line 1 a request without recipients, then recipients.
    let bulk = doc["paths"]["/v1/messages/bulk"]["post"]["requestBody"]["content"]["text/plain"]["example"]
        .as_str()
        .expect("bulk example");
    let lines: Vec<Value> = bulk.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert!(lines.len() >= 2);
    assert_valid(&component("SendRequest"), &lines[0], "bulk line 1");
    for line in &lines[1..] {
        assert_valid(&component("Recipient"), line, "bulk recipient line");
    }
}

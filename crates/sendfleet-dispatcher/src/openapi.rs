//! The OpenAPI 3.1 document of the dispatcher's HTTP API, built from the same Rust
//! types the handlers read and write (their JSON Schemas come from `schemars`), served at
//! `GET /openapi.json` and committed as `docs/openapi.json` (a test keeps the two equal).

use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use sendfleet_protocol::{Recipient, SendRequest};
use sendfleet_status::MessageStatus;
use serde_json::{Map, Value, json};

use crate::{
    SendTestRequest, SendTestResult,
    api::{Accepted, BulkFailure, BulkReport, ErrorBody, EventAnswer, EventRequest},
};

/// Every answer that can be an error, with the codes it carries.
struct Failure {
    status: u16,
    codes: &'static [&'static str],
    what: &'static str,
}

const MALFORMED: Failure = Failure {
    status: 400,
    codes: &["malformed", "body_error"],
    what: "Not JSON, or JSON of the wrong shape (the reason names the field); or the body could not be read.",
};
const UNAUTHORIZED: Failure = Failure {
    status: 401,
    codes: &["unauthorized"],
    what: "`dispatcher.api_token_env` is set and the bearer token is missing or wrong.",
};
const TOO_LARGE: Failure = Failure {
    status: 413,
    codes: &["body_too_large"],
    what: "The body is larger than `dispatcher.api_max_body_bytes`.",
};
const REFUSED: Failure = Failure {
    status: 422,
    codes: &[],
    what: "Well formed but refused; `error` is the rejection code the rejected queue uses \
           (`invalid_destination`, `unknown_provider`, `unknown_template`, `missing_variable`, \
           `unsupported_version`, …).",
};
const BROKER_DOWN: Failure = Failure {
    status: 503,
    codes: &["broker_unavailable"],
    what: "Not connected to the broker, or a publish was not confirmed; retry.",
};

/// The example bulk body: the request, then one recipient per line.
const BULK_EXAMPLE: &str = "{\"schema_version\":1,\"channel\":\"sms\",\"template\":{\"id\":\"order-shipped\",\
                            \"variables\":{\"order\":\"A-17\"}}}\n\
                            {\"to\":\"+14155550101\",\"variables\":{\"name\":\"Asha\"}}\n\
                            {\"to\":\"+14155550102\",\"variables\":{\"name\":\"Ben\"}}\n";

/// The OpenAPI document as JSON. The examples name the providers `ib-sms` and `ib-rcs`
/// and the template `order-shipped`, as `scripts/api_contract.sh` configures them; against
/// a config without them they are answered with a documented 422.
pub fn document() -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
    });
    let mut generator = SchemaGenerator::new(settings);
    let send_request = generator.subschema_for::<SendRequest>().to_value();
    let accepted = generator.subschema_for::<Accepted>().to_value();
    let bulk_report = generator.subschema_for::<BulkReport>().to_value();
    let bulk_failure = generator.subschema_for::<BulkFailure>().to_value();
    let status = generator.subschema_for::<MessageStatus>().to_value();
    let send_test = generator.subschema_for::<SendTestRequest>().to_value();
    let send_test_result = generator.subschema_for::<SendTestResult>().to_value();
    let event_request = generator.subschema_for::<EventRequest>().to_value();
    let event_answer = generator.subschema_for::<EventAnswer>().to_value();
    // Named in the NDJSON description, so its schema is listed too.
    generator.subschema_for::<Recipient>();
    generator.subschema_for::<ErrorBody>();
    let schemas = generator.take_definitions(true);

    let ndjson_schema = json!({
        "type": "string",
        "description": "NDJSON: line 1 is a send request without `to` or `recipients` (a `SendRequest`); \
                        every further line is one `Recipient`. Blank lines are skipped. The Content-Type is not \
                        checked (`application/x-ndjson` is usual).",
    });
    let paths = json!({
        "/v1/messages": {
            "post": operation(
                "sendMessage",
                "One send request (JSON); answered after the broker confirmed every job.",
                Some(json!({"content": {"application/json": {"schema": send_request, "example": {
                    "schema_version": 1, "channel": "sms", "to": "+14155550123",
                    "content": {"type": "text", "text": "Your order A-17 has shipped."},
                    "metadata": {"order": "A-17"},
                }}}, "required": true})),
                vec![("202", "Every job was published and confirmed.", json_body(&accepted))],
                &[MALFORMED, UNAUTHORIZED, TOO_LARGE, REFUSED, BROKER_DOWN],
            ),
        },
        "/v1/messages/bulk": {
            "post": operation(
                "sendBulk",
                "NDJSON: the request on line 1, one recipient per following line, read as a stream. \
                 A bad line 1 refuses the whole body; a bad recipient line is listed in `errors`.",
                Some(json!({
                    "content": {
                        "text/plain": {"schema": ndjson_schema, "example": BULK_EXAMPLE},
                    },
                    "required": true,
                })),
                vec![
                    ("200", "The body was read to its end; what was published and what was refused.", json_body(&bulk_report)),
                    ("400", "Line 1 is not a request without recipients, the body is empty, or it broke off \
                             (`malformed`, `body_error`; a `body_error` carries the report so far).",
                     json_body(&json!({"anyOf": [error_ref(&["malformed"]), bulk_failure]}))),
                    ("413", "Line 1 is longer than `dispatcher.api_max_line_bytes`.", json_body(&error_ref(&["line_too_long"]))),
                    ("503", "Not connected to the broker (`ErrorBody`), or a publish failed mid-body \
                             (`BulkFailure`: resubmit from the line after `report.confirmed_through_line`).",
                     json_body(&json!({"anyOf": [error_ref(&["broker_unavailable"]), bulk_failure]}))),
                ],
                &[UNAUTHORIZED, REFUSED],
            ),
        },
        "/v1/messages/{id}": {
            "get": {
                "operationId": "getMessageStatus",
                "summary": "The message's status record.",
                "parameters": [{
                    "name": "id",
                    "in": "path",
                    "required": true,
                    "description": "Our message id (percent-encoded).",
                    "schema": {"type": "string"},
                    "example": "order-1001-shipped",
                }],
                "security": bearer(),
                "responses": responses(
                    vec![
                        ("200", "The record.", json_body(&status)),
                        ("400", "The id is not valid percent-encoded UTF-8.", json_body(&error_ref(&["malformed"]))),
                        ("404", "No record: never sent through this fleet or expired (`unknown_message`), or \
                                 the status store is switched off (`status_disabled`).",
                         json_body(&error_ref(&["unknown_message", "status_disabled"]))),
                        ("503", "Redis did not answer; retry.", json_body(&error_ref(&["status_store_unavailable"]))),
                    ],
                    &[UNAUTHORIZED],
                ),
            },
        },
        "/v1/send-test": {
            "post": operation(
                "sendTest",
                "One message sent synchronously through the named provider's adapter; the provider's \
                 answer is returned (a provider refusal is still 200).",
                Some(json!({"content": {"application/json": {"schema": send_test, "example": {
                    "provider": "ib-sms", "country_code": "+1", "number": "415 555 0123", "text": "Test",
                }}}, "required": true})),
                vec![("200", "The test ran; the provider's answer.", json_body(&send_test_result))],
                &[MALFORMED, UNAUTHORIZED, TOO_LARGE, REFUSED],
            ),
        },
        "/v1/events": {
            "post": operation(
                "sendEvent",
                "An outbound RCS event: typing indicator or read receipt.",
                Some(json!({"content": {"application/json": {"schema": event_request, "example": {
                    "provider": "ib-rcs", "to": "+447700900123", "type": "typing_indicator",
                }}}, "required": true})),
                vec![
                    ("200", "The event was sent; the provider's answer.", json_body(&event_answer)),
                    ("500", "The provider's adapter could not be built (its HTTP client); the reason says why.",
                     json_body(&error_ref(&["provider_unavailable"]))),
                ],
                &[MALFORMED, UNAUTHORIZED, TOO_LARGE, REFUSED],
            ),
        },
        "/health": {"get": text_operation("health", "Readiness: 200 `ready` while connected to the broker.", true)},
        "/livez": {"get": text_operation("livez", "Liveness: 200 `ok` while the process runs.", false)},
        "/metrics": {"get": text_operation("metrics", "Prometheus text exposition.", false)},
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI document.", "content": {"application/json": {"schema": {"type": "object"}}}}},
            },
        },
    });
    let mut components = Map::new();
    components.insert("schemas".into(), Value::Object(schemas));
    components.insert(
        "securitySchemes".into(),
        json!({"bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "Required on `/v1/*` when `dispatcher.api_token_env` is set (then the dispatcher may \
                            listen beyond loopback); without it the API is open and only allowed on loopback.",
        }}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "sendfleet dispatcher HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Generated from the dispatcher's code (crates/sendfleet-dispatcher/src/openapi.rs); \
                            prose in docs/http-api.md. Every error answer is JSON `{\"error\": code, \"reason\": text}`.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": components,
    })
}

fn bearer() -> Value {
    json!([{"bearer": []}])
}

fn json_body(schema: &Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// The error body, with `error` limited to `codes` when they are known.
fn error_ref(codes: &[&str]) -> Value {
    let reference = json!({"$ref": format!("#/components/schemas/{}", ErrorBody::schema_name())});
    if codes.is_empty() { reference } else { json!({"allOf": [reference, {"properties": {"error": {"enum": codes}}}]}) }
}

fn responses(ok: Vec<(&str, &str, Value)>, failures: &[Failure]) -> Value {
    let mut map = Map::new();
    for (status, description, content) in ok {
        map.insert(status.to_owned(), json!({"description": description, "content": content}));
    }
    for failure in failures {
        let entry = json!({"description": failure.what, "content": json_body(&error_ref(failure.codes))});
        map.entry(failure.status.to_string()).or_insert(entry);
    }
    if failures.iter().any(|f| f.status == 401)
        && let Some(Value::Object(unauthorized)) = map.get_mut("401")
    {
        unauthorized.insert(
            "headers".into(),
            json!({"WWW-Authenticate": {"description": "`Bearer`", "schema": {"const": "Bearer"}}}),
        );
    }
    Value::Object(map)
}

fn operation(
    id: &str,
    summary: &str,
    body: Option<Value>,
    ok: Vec<(&str, &str, Value)>,
    failures: &[Failure],
) -> Value {
    let mut op = json!({
        "operationId": id,
        "summary": summary,
        "security": bearer(),
        "responses": responses(ok, failures),
    });
    if let Some(body) = body {
        op["requestBody"] = body;
    }
    op
}

fn text_operation(id: &str, summary: &str, may_be_unready: bool) -> Value {
    let text = json!({"text/plain": {"schema": {"type": "string"}}});
    let mut responses = json!({"200": {"description": summary, "content": text}});
    if may_be_unready {
        responses["503"] = json!({"description": "Not ready: `not ready`.", "content": text});
    }
    json!({"operationId": id, "summary": summary, "security": [], "responses": responses})
}

/// The document as committed and served: pretty JSON with a final newline.
pub fn document_text() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, sync::Arc};

    use axum::{body::Body, http::StatusCode};
    use tower::ServiceExt;

    use super::*;

    /// `(path, method)` of every `.route(...)` call in the dispatcher's sources and in the
    /// shared ops router: what the dispatcher serves, read from the code itself, so a
    /// route added without documentation fails the test below.
    fn routes_in_source() -> BTreeSet<(String, String)> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let files =
            ["sendfleet-dispatcher/src/api.rs", "sendfleet-dispatcher/src/lib.rs", "sendfleet-telemetry/src/ops.rs"];
        let mut routes = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
            for piece in text.split(".route(").skip(1) {
                let piece = piece.trim_start();
                let Some(rest) = piece.strip_prefix('"') else { continue };
                let (path, rest) = rest.split_once('"').unwrap();
                let rest = rest.trim_start().trim_start_matches(',').trim_start();
                let rest = rest.strip_prefix("axum::routing::").unwrap_or(rest);
                let method: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
                routes.insert((path.to_owned(), method));
            }
        }
        routes
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc = document();
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                ops.insert((path.clone(), method.clone()));
            }
        }
        ops
    }

    #[test]
    fn every_route_the_dispatcher_serves_is_documented_and_nothing_else() {
        let served = routes_in_source();
        assert!(served.len() >= 9, "the source scan found the routes: {served:?}");
        assert!(served.contains(&("/v1/messages/{id}".to_owned(), "get".to_owned())));
        assert_eq!(served, documented(), "routes served (left) vs documented in the OpenAPI document (right)");
    }

    /// Each documented operation reaches a handler of the real router: no 405, and no
    /// bare 404 from the router (the status route's own 404 has a JSON body).
    #[tokio::test]
    async fn every_documented_operation_is_routed() {
        let api = Arc::new(crate::api::ApiState::new(crate::api::tests::config(false)));
        let ops = sendfleet_telemetry::ops_router(
            sendfleet_telemetry::metrics::install(),
            sendfleet_telemetry::Readiness::default(),
        );
        let app = crate::app(ops, api);
        for (path, method) in documented() {
            let uri = path.replace("{id}", "no-such-message");
            let request =
                axum::http::Request::builder().method(method.to_uppercase().as_str()).uri(&uri).body(Body::empty());
            let response = app.clone().oneshot(request.unwrap()).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 22).await.unwrap();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            assert!(status != StatusCode::NOT_FOUND || !body.is_empty(), "{method} {uri} is not routed");
        }
    }

    #[tokio::test]
    async fn the_served_document_is_the_generated_one() {
        let api = Arc::new(crate::api::ApiState::new(crate::api::tests::config(false)));
        let ops = sendfleet_telemetry::ops_router(
            sendfleet_telemetry::metrics::install(),
            sendfleet_telemetry::Readiness::default(),
        );
        let request = axum::http::Request::get("/openapi.json").body(Body::empty()).unwrap();
        let response = crate::app(ops, api).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = axum::body::to_bytes(response.into_body(), 1 << 22).await.unwrap();
        assert_eq!(std::str::from_utf8(&body).unwrap(), document_text());
    }

    #[test]
    fn every_component_reference_resolves() {
        let text = document_text();
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling $ref to {name}");
        }
        for name in ["SendRequest", "Recipient", "ErrorBody", "MessageStatus", "SendTestRequest", "EventRequest"] {
            assert!(schemas.contains_key(name), "{name} is in components/schemas");
        }
    }
}

use axum::body::Body;
use futures_util::stream;
use tower::ServiceExt;

use super::*;

/// A one-provider config (and a bearer token when `token`), shared by the API's tests.
pub(crate) fn config(token: bool) -> Arc<Config> {
    let dispatcher = if token { "[dispatcher]\napi_token_env = \"TOKEN\"\n" } else { "" };
    let toml = format!(
        r#"{dispatcher}
[[providers]]
id = "sms"
kind = "infobip_sms"
base_url = "http://127.0.0.1:9"
api_key_env = "K"
sender_ids = ["ACME"]
default_for_channel = true

[[templates]]
id = "hello"
content = {{ type = "text", text = "Hi {{{{name}}}}" }}
"#
    );
    let lookup = |name: &str| match name {
        "TOKEN" => Some("token-0123456789abcdef".to_owned()),
        _ => Some("k".to_owned()),
    };
    Arc::new(Config::from_toml(&toml, &lookup, &sendfleet_providers::VENDORS).unwrap())
}

async fn call(router: Router, path: &str, auth: Option<&str>, body: &str) -> (StatusCode, serde_json::Value) {
    let mut request = axum::http::Request::post(path).header("content-type", "application/json");
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = router.oneshot(request.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

const GOOD: &str = r#"{"schema_version":1,"channel":"sms","to":"+14155551237","content":{"type":"text","text":"hi"}}"#;

#[tokio::test]
async fn the_bearer_token_is_required_when_configured() {
    let router = super::router(Arc::new(ApiState::new(config(true))));
    let (status, body) = call(router.clone(), "/v1/messages", None, GOOD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorized");
    let (status, _) = call(router.clone(), "/v1/messages", Some("Bearer wrong-token-0123456789"), GOOD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Right token: past auth; no broker session yet, so 503 rather than a silent loss.
    let (status, body) = call(router, "/v1/messages", Some("Bearer token-0123456789abcdef"), GOOD).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "broker_unavailable");
}

#[tokio::test]
async fn bad_messages_get_4xx_with_reasons() {
    let router = super::router(Arc::new(ApiState::new(config(false))));
    let (status, body) = call(router.clone(), "/v1/messages", None, "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "malformed");
    let (status, body) = call(router.clone(), "/v1/messages", None, &GOOD.replace("+14155551237", "12345")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"], "invalid_destination");
    assert!(body["reason"].as_str().unwrap().contains("12345"));
    let (status, body) =
        call(router.clone(), "/v1/messages", None, &GOOD.replace("\"schema_version\":1", "\"schema_version\":7")).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unsupported_version")));
    let template = r#"{"schema_version":1,"channel":"sms","to":"+14155551237","template":{"id":"hello"}}"#;
    let (status, body) = call(router.clone(), "/v1/messages", None, template).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"], "missing_variable");
    assert!(body["reason"].as_str().unwrap().contains("'name'"), "{body}");
    let unknown = template.replace("hello", "nope");
    let (_, body) = call(router, "/v1/messages", None, &unknown).await;
    assert_eq!(body["error"], "unknown_template");
}

#[tokio::test]
async fn send_test_and_events_refuse_bad_forms() {
    let router = super::router(Arc::new(ApiState::new(config(false))));
    let (status, body) = call(
        router.clone(),
        "/v1/send-test",
        None,
        r#"{"provider":"nope","country_code":"91","number":"9876543210","text":"x"}"#,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_provider")));
    let (status, body) =
        call(router.clone(), "/v1/events", None, r#"{"provider":"sms","to":"+14155551237","type":"typing_indicator"}"#)
            .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unsupported_provider")));
    let (status, _) = call(router, "/v1/events", None, r#"{"provider":"sms"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn read_all(chunks: Vec<&'static str>, max: usize) -> Vec<Option<String>> {
    let stream = stream::iter(chunks.into_iter().map(|c| Ok::<_, std::convert::Infallible>(Bytes::from(c))));
    let mut reader = LineReader::new(stream, max);
    let mut out = Vec::new();
    while let Some(line) = reader.next_line().await.unwrap() {
        out.push(match line {
            Line::Data(bytes) => Some(String::from_utf8(bytes).unwrap()),
            Line::TooLong => None,
        });
    }
    out
}

#[tokio::test]
async fn lines_are_split_across_chunks_and_overlong_lines_are_flagged_not_buffered() {
    let lines = read_all(vec!["ab", "c\r\nde", "f\n\nlast"], 100).await;
    assert_eq!(lines, [Some("abc".into()), Some("def".into()), Some(String::new()), Some("last".into())]);
    let lines = read_all(vec!["short\n", "0123456789", "0123456789", "xx\nok\n"], 8).await;
    assert_eq!(lines, [Some("short".into()), None, Some("ok".into())]);
    let lines = read_all(vec!["0123456789abc"], 8).await;
    assert_eq!(lines, [None]);
}

async fn get_json(router: Router, path: &str, auth: Option<&str>) -> (StatusCode, serde_json::Value) {
    let mut request = axum::http::Request::get(path);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = router.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn a_message_status_needs_the_token_and_an_unknown_id_is_404_with_a_reason() {
    let router = super::router(Arc::new(ApiState::new(config(true))));
    let path = format!("/v1/messages/unknown-{}", uuid::Uuid::new_v4());
    let (status, _) = get_json(router.clone(), &path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Past auth: the real Redis has no record of it.
    let (status, body) = get_json(router, &path, Some("Bearer token-0123456789abcdef")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "unknown_message");
    assert!(
        body["reason"].as_str().is_some_and(|r| r.contains("unknown-") && r.contains("status.ttl_seconds")),
        "{body}"
    );

    let mut off = (*config(false)).clone();
    off.status.enabled = false;
    let router = super::router(Arc::new(ApiState::new(Arc::new(off))));
    let (status, body) = get_json(router, "/v1/messages/m-1", None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("status_disabled")), "{body}");
}

/// A body over `api_max_body_bytes` was answered by axum in plain text; every error of
/// the API is JSON (`docs/http-api.md`, the OpenAPI document).
#[tokio::test]
async fn an_oversized_body_is_a_json_413() {
    let mut config = (*config(false)).clone();
    config.dispatcher.api_max_body_bytes = 64;
    let router = super::router(Arc::new(ApiState::new(Arc::new(config))));
    let big = format!(r#"{{"schema_version":1,"channel":"sms","to":"+14155550101","pad":"{}"}}"#, "x".repeat(200));
    for path in ["/v1/messages", "/v1/send-test", "/v1/events"] {
        let (status, body) = call(router.clone(), path, None, &big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert_eq!(body["error"], "body_too_large", "{path}: {body}");
        assert!(body["reason"].as_str().is_some_and(|r| !r.is_empty()), "{path}: {body}");
    }
}

/// Found by the contract test (schemathesis): serde reads a JSON array in place of an
/// object (fields by position), so `"options": [null, null]` was accepted although the
/// OpenAPI document says an object. Now such a body is `400 malformed`, naming the place.
#[tokio::test]
async fn an_array_where_an_object_belongs_is_malformed() {
    let router = super::router(Arc::new(ApiState::new(config(false))));
    let positional = r#"{"schema_version":1,"channel":"sms","to":"+14155550123","content":{"type":"text","text":"hi"},"options":[null,null]}"#;
    let (status, body) = call(router.clone(), "/v1/messages", None, positional).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "malformed");
    assert!(body["reason"].as_str().is_some_and(|r| r.contains("/options")), "{body}");

    let form = r#"["sms", "1", "4155550123"]"#;
    let (status, body) = call(router.clone(), "/v1/send-test", None, form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let event = r#"["sms", "+14155550123", "typing_indicator"]"#;
    let (status, body) = call(router.clone(), "/v1/events", None, event).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The version is still checked first: another version is refused as such.
    let future = r#"{"schema_version":2,"channel":"sms","to":"+14155550123","content":{"type":"text","text":"hi"}}"#;
    let (status, body) = call(router, "/v1/messages", None, future).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"], "unsupported_version");
}

#[test]
fn a_positional_recipient_line_is_malformed() {
    let line = br#"["+14155550123", "m-1"]"#;
    let err = strict::read_conforming::<Recipient>(line).unwrap_err();
    assert!(err.contains("object"), "{err}");
    assert!(strict::read_conforming::<Recipient>(br#"{"to":"+14155550123"}"#).is_ok());
}

/// A message id that is not valid percent-encoded UTF-8 was answered by axum in plain
/// text; it is a JSON `400 malformed` like every other error.
#[tokio::test]
async fn an_undecodable_message_id_is_a_json_400() {
    let router = super::router(Arc::new(ApiState::new(config(false))));
    let (status, body) = get_json(router, "/v1/messages/%FF%FE", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "malformed", "{body}");
}

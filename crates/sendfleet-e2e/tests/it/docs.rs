//! The request examples of `README.md`, `docs/protocol.md` and `docs/http-api.md`, run
//! as written against a live dispatcher on the real broker (and the mock provider behind
//! a worker and callback-ingest), so an example that stops working fails here.
//!
//! Examples are marked in the markdown by an HTML comment on the line before their code
//! block (invisible when rendered):
//!
//! - `<!-- doc-test: publish -->`: a send request (JSON, a Python dict literal, or a
//!   Python script assigning `request = {…}`), published as MessagePack to
//!   `<prefix>.requests`. Every recipient must come back as an `accepted` event carrying
//!   the request's message id, channel, provider, trace id and metadata where it gives
//!   them, and nothing may land in `<prefix>.requests.rejected`.
//! - `<!-- doc-test: http -->`: a `curl` command, sent as curl would send it (method,
//!   path, headers, `-d` body with curl's content type; `$TOKEN` is the API token).
//! - `<!-- doc-test: http METHOD PATH -->`: the block is the body of that request; with
//!   `, one request per line` each line is a request of its own.
//! - `<!-- doc-test: answer STATUS -->`: the answer the previous `http` example gets: the
//!   status, and a JSON body of the same shape — the same keys at every level, arrays of
//!   the same length, equal values, except that a string with `…` stands for any string
//!   and numbers under keys ending in `_ms` or `_seconds` (times) for any number. A `GET`
//!   is repeated until it matches (the status record lags its events) or 30 s pass.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use sendfleet_mock_provider::Behaviour;
use sendfleet_protocol::{Event, EventKind};
use sendfleet_test_support::{Fleet, FleetOptions, TEST_CALLBACK_TOKEN, wait_until};
use serde_json::Value;

/// The files whose examples run, in order (later examples may use earlier ones' messages).
const FILES: [&str; 3] = ["README.md", "docs/protocol.md", "docs/http-api.md"];

/// The dispatcher address the examples use: `dispatcher.listen`'s default.
const DOC_BASE: &str = "http://127.0.0.1:9101";

/// The providers of `config/sendfleet.example.toml` the examples name, on the mock.
const PROVIDERS: &str = r#"
[[providers]]
id = "infobip-rcs"
kind = "infobip_rcs"
base_url = "{mock}"
api_key_env = "TEST_API_KEY"
sender_ids = ["AcmeRetailAgent"]
default_for_channel = true
callback_token_env = "TEST_CALLBACK_TOKEN"
fallback_mode = "fleet"
sms_fallback = { enabled = true, sender_id = "ACMEIN", sms_provider = "infobip-sms", india = true, principal_entity_id = "1201159100000000001" }

[[providers]]
id = "infobip-sms"
kind = "infobip_sms"
base_url = "{mock}"
api_key_env = "TEST_API_KEY"
sender_ids = ["ACMEIN"]
default_for_channel = true
callback_token_env = "TEST_CALLBACK_TOKEN"
require_india_dlt = true
"#;

/// The RCS destination of http-api.md's `POST /v1/messages` example: the mock reports it
/// as not RCS capable (7002), so its SMS fallback is sent, as the status example shows.
const NOT_RCS_CAPABLE: &str = "+919876543210";

#[derive(Debug)]
enum Kind {
    Publish,
    Curl,
    Body { method: String, path: String, per_line: bool },
    Answer { status: u16 },
}

#[derive(Debug)]
struct Example {
    /// `file:line` of the code block.
    at: String,
    kind: Kind,
    text: String,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every marked code block of `file`, in order.
fn examples(file: &str) -> Vec<Example> {
    let markdown = std::fs::read_to_string(repo_root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let lines: Vec<&str> = markdown.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        let Some(directive) = line.strip_prefix("<!-- doc-test:").and_then(|d| d.strip_suffix("-->")) else {
            i += 1;
            continue;
        };
        let directive = directive.trim();
        let at = format!("{file}:{}", i + 2);
        assert!(lines.get(i + 1).is_some_and(|l| l.starts_with("```")), "{at}: the marker must precede a code block");
        let mut text = String::new();
        i += 2;
        while i < lines.len() && !lines[i].starts_with("```") {
            text.push_str(lines[i]);
            text.push('\n');
            i += 1;
        }
        let kind = match directive.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["publish"] => Kind::Publish,
            ["http"] => Kind::Curl,
            ["answer", status] => Kind::Answer { status: status.parse().unwrap_or_else(|_| panic!("{at}: status")) },
            ["http", method, path, rest @ ..] => Kind::Body {
                method: (*method).to_owned(),
                path: path.trim_end_matches(',').to_owned(),
                per_line: rest.join(" ") == "one request per line",
            },
            _ => panic!("{at}: unknown doc-test directive '{directive}'"),
        };
        found.push(Example { at, kind, text });
        i += 1;
    }
    found
}

/// A Python literal (or a script assigning `request = {…}`) as JSON: comments, trailing
/// commas and `True`/`False`/`None` outside strings rewritten.
fn python_to_json(text: &str) -> String {
    let text = match text.find("request = {") {
        Some(at) => {
            let start = at + "request = ".len();
            &text[start..start + matching_brace(&text[start..])]
        }
        None => text,
    };
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            _ => out.push(c),
        }
    }
    // Outside strings now only punctuation, numbers and keywords remain between them.
    let mut json = String::new();
    let mut in_string = false;
    let mut escaped = false;
    let bytes: Vec<char> = out.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            json.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        if c == ',' {
            let next = bytes[i + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some('}' | ']')) {
                i += 1;
                continue;
            }
        }
        let rest: String = bytes[i..bytes.len().min(i + 5)].iter().collect();
        if let Some((word, value)) =
            [("True", "true"), ("False", "false"), ("None", "null")].into_iter().find(|(w, _)| rest.starts_with(w))
        {
            json.push_str(value);
            i += word.len();
            continue;
        }
        json.push(c);
        i += 1;
    }
    json
}

/// The length of the `{…}` group `text` starts with, strings respected.
fn matching_brace(text: &str) -> usize {
    let (mut depth, mut in_string, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced braces in {text}")
}

/// A request as curl would send it.
#[derive(Debug)]
struct HttpRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

/// Shell words of a command: whitespace-separated, single and double quotes grouping.
fn shell_words(command: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut started) = (Vec::new(), String::new(), None, false);
    for c in command.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            (None, c) => word.push(c),
        }
    }
    assert!(quote.is_none(), "unclosed quote in {command}");
    if started || !word.is_empty() {
        words.push(word);
    }
    words
}

fn parse_curl(at: &str, text: &str) -> HttpRequest {
    let command = text.replace("\\\n", " ");
    let words = shell_words(&command);
    assert_eq!(words.first().map(String::as_str), Some("curl"), "{at}: not a curl command");
    let (mut method, mut url, mut headers, mut body) = (None, None, Vec::new(), None);
    let mut rest = words[1..].iter();
    while let Some(word) = rest.next() {
        match word.as_str() {
            "-s" | "-S" | "-sS" | "-Ss" | "--fail" => {}
            "-H" | "--header" => {
                let header = rest.next().unwrap_or_else(|| panic!("{at}: -H without a value"));
                let (name, value) = header.split_once(':').unwrap_or_else(|| panic!("{at}: header {header}"));
                headers.push((name.trim().to_owned(), value.trim().replace("$TOKEN", TEST_CALLBACK_TOKEN)));
            }
            "-d" | "--data" | "--data-binary" | "--data-raw" => body = rest.next().cloned(),
            "-X" | "--request" => method = rest.next().cloned(),
            other if other.starts_with("http") => url = Some(other.to_owned()),
            other => panic!("{at}: curl option '{other}' not understood by the docs test"),
        }
    }
    let url = url.unwrap_or_else(|| panic!("{at}: no URL"));
    let path = url.strip_prefix(DOC_BASE).unwrap_or_else(|| panic!("{at}: {url} is not on {DOC_BASE}")).to_owned();
    if body.is_some() && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
        // What curl sends with -d.
        headers.push(("Content-Type".into(), "application/x-www-form-urlencoded".into()));
    }
    let method = method.unwrap_or_else(|| if body.is_some() { "POST".into() } else { "GET".into() });
    HttpRequest { method, path, headers, body }
}

async fn send(base: &str, request: &HttpRequest) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).expect("method");
    let mut builder = reqwest::Client::new().request(method, format!("{base}{}", request.path));
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    let response = builder.send().await.expect("http call");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Whether `actual` has the shape and values of `doc` (see the module comment).
fn matches(doc: &Value, actual: &Value, key: &str, path: &str) -> Result<(), String> {
    match (doc, actual) {
        (Value::String(d), Value::String(_)) if d.contains('…') => Ok(()),
        (Value::Number(_), Value::Number(_)) if key.ends_with("_ms") || key.ends_with("_seconds") => Ok(()),
        // How many events arrived out of order (a report before the worker's `accepted`):
        // set by arrival order, which no example can fix; any count matches.
        (Value::Number(_), Value::Number(_)) if key == "stale_updates" => Ok(()),
        (Value::Object(d), Value::Object(a)) => {
            let (dk, ak): (Vec<_>, Vec<_>) = (d.keys().collect(), a.keys().collect());
            if dk != ak {
                return Err(format!("{path}: keys {dk:?} in the doc, {ak:?} in the answer"));
            }
            d.iter().try_for_each(|(k, v)| matches(v, &a[k], k, &format!("{path}.{k}")))
        }
        (Value::Array(d), Value::Array(a)) if d.len() == a.len() => {
            d.iter().zip(a).enumerate().try_for_each(|(i, (d, a))| matches(d, a, key, &format!("{path}[{i}]")))
        }
        (d, a) if d == a => Ok(()),
        (d, a) => Err(format!("{path}: {d} in the doc, {a} in the answer")),
    }
}

/// Publishes a documented send request and waits for every recipient's `accepted` event.
async fn publish(fleet: &Fleet, example: &Example) {
    let at = &example.at;
    let request: Value = serde_json::from_str(&python_to_json(&example.text))
        .unwrap_or_else(|e| panic!("{at}: not a JSON / Python literal request: {e}"));
    let bytes = rmp_serde::to_vec_named(&request).expect("msgpack");
    fleet.publish_bytes(&fleet.ns.topology().requests_exchange(), "", &bytes).await;

    let shared: BTreeMap<String, String> = serde_json::from_value(request["metadata"].clone()).unwrap_or_default();
    let recipients = match request["recipients"].as_array() {
        Some(list) => list.clone(),
        None => vec![serde_json::json!({ "to": request["to"], "message_id": request["message_id"] })],
    };
    for recipient in recipients {
        let mut metadata = shared.clone();
        metadata.extend(
            serde_json::from_value::<BTreeMap<String, String>>(recipient["metadata"].clone()).unwrap_or_default(),
        );
        let wanted = |event: &Event| {
            event.kind == EventKind::Accepted
                && event.to.as_deref() == recipient["to"].as_str()
                && recipient["message_id"].as_str().is_none_or(|id| event.message_id.as_deref() == Some(id))
                && serde_json::to_value(event.channel).ok().as_ref() == Some(&request["channel"])
                && request["provider"].as_str().is_none_or(|p| event.provider == p)
                && request["trace_id"].as_str().is_none_or(|t| event.trace_id.as_deref() == Some(t))
                && event.metadata == metadata
        };
        let arrived = wait_until(Duration::from_secs(30), || fleet.events.events().iter().any(wanted)).await;
        assert!(
            arrived,
            "{at}: no accepted event for {recipient} (metadata {metadata:?}); rejected: {:?}; events: {:?}",
            fleet.drain_queue(&fleet.ns.topology().rejected_queue()).await,
            fleet.events.events()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_examples_get_the_documented_answers() {
    let example_config: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo_root().join("config/sendfleet.example.toml")).expect("example"))
            .expect("example config");
    let templates = toml::Table::from_iter([("templates".to_owned(), example_config["templates"].clone())]);
    let options = FleetOptions {
        providers_toml: PROVIDERS.to_owned(),
        provider_ids: vec!["infobip-rcs", "infobip-sms"],
        extra_toml: format!(
            "[dispatcher]\napi_token_env = \"TEST_CALLBACK_TOKEN\"\n\n{}",
            toml::to_string(&templates).expect("templates")
        ),
        behaviour: Behaviour { not_rcs_capable_numbers: vec![NOT_RCS_CAPABLE.into()], ..Behaviour::default() },
        check_numbering_plan: true,
        ..FleetOptions::infobip("docs")
    };
    let fleet = Fleet::start(options).await;
    let base = fleet.dispatcher_url.clone().expect("dispatcher");

    let mut ran = 0;
    for file in FILES {
        let mut pending: Option<(String, Vec<HttpRequest>)> = None;
        for example in examples(file) {
            let at = example.at.clone();
            match example.kind {
                Kind::Publish => publish(&fleet, &example).await,
                Kind::Curl | Kind::Body { .. } => {
                    assert!(pending.is_none(), "{at}: the previous http example shows no answer");
                    let requests = match &example.kind {
                        Kind::Body { method, path, per_line: true } => example
                            .text
                            .lines()
                            .filter(|l| !l.trim().is_empty())
                            .map(|line| body_request(method, path, line.to_owned()))
                            .collect(),
                        Kind::Body { method, path, per_line: false } => {
                            vec![body_request(method, path, example.text.clone())]
                        }
                        _ => vec![parse_curl(&at, &example.text)],
                    };
                    pending = Some((at, requests));
                }
                Kind::Answer { status } => {
                    let (request_at, requests) =
                        pending.take().unwrap_or_else(|| panic!("{at}: an answer without an http example before it"));
                    let doc: Value = serde_json::from_str(&example.text)
                        .unwrap_or_else(|e| panic!("{at}: the documented answer is not JSON: {e}"));
                    for request in &requests {
                        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                        loop {
                            let (got, body) = send(&base, request).await;
                            let verdict = if got == status {
                                matches(&doc, &body, "", "answer")
                            } else {
                                Err(format!("status {got} (the doc shows {status}): {body}"))
                            };
                            match verdict {
                                Ok(()) => break,
                                Err(_) if request.method == "GET" && tokio::time::Instant::now() < deadline => {
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                }
                                Err(why) => panic!("{request_at} → {at}: {why}\nanswer: {body}"),
                            }
                        }
                    }
                }
            }
            ran += 1;
        }
        assert!(pending.is_none(), "{file}: the last http example shows no answer");
    }
    assert!(ran >= 12, "only {ran} marked examples found: markers lost?");
    let rejected = fleet.ns.queue_depth(&fleet.ns.topology().rejected_queue()).await;
    assert_eq!(rejected, 0, "a published example was rejected");
    fleet.stop().await;
}

fn body_request(method: &str, path: &str, body: String) -> HttpRequest {
    HttpRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        headers: vec![("Authorization".into(), format!("Bearer {TEST_CALLBACK_TOKEN}"))],
        body: Some(body),
    }
}

#[test]
fn python_literals_become_json() {
    let script = "import x\nrequest = {\n  \"a\": [1, 2,],  # note\n  \"b\": \"#not a comment\", \"c\": True, \"d\": None,\n}\nx.send(request)\n";
    let json: Value = serde_json::from_str(&python_to_json(script)).unwrap();
    assert_eq!(json, serde_json::json!({ "a": [1, 2], "b": "#not a comment", "c": true, "d": null }));
}

#[test]
fn answers_match_by_shape_with_wildcards() {
    let doc = serde_json::json!({ "id": "0193…", "at_ms": 1, "n": 2, "list": [{ "x": "y" }] });
    let good = serde_json::json!({ "id": "anything", "at_ms": 99, "n": 2, "list": [{ "x": "y" }] });
    assert_eq!(matches(&doc, &good, "", "a"), Ok(()));
    let extra = serde_json::json!({ "id": "a", "at_ms": 1, "n": 2, "list": [{ "x": "y" }], "more": 1 });
    assert!(matches(&doc, &extra, "", "a").is_err(), "an undocumented field");
    let wrong = serde_json::json!({ "id": "a", "at_ms": 1, "n": 3, "list": [{ "x": "y" }] });
    assert!(matches(&doc, &wrong, "", "a").unwrap_err().contains("a.n"));
}

//! The contract sendfleet publishes to other teams, generated from the Rust types so it
//! cannot drift from the code:
//!
//! - `docs/schema/*.schema.json`: JSON Schemas (draft 2020-12) of the MessagePack
//!   documents on the broker (send request, send job, event, rejected request);
//! - `docs/openapi.json`: the OpenAPI 3.1 document of the dispatcher's HTTP API (also
//!   served at `GET /openapi.json`).
//!
//! `cargo nextest run -p sendfleet-contract` fails when a committed file differs from
//! what the code generates; `SENDFLEET_REGENERATE=1` rewrites them.

use schemars::{JsonSchema, generate::SchemaSettings};
use sendfleet_dispatcher::RejectedRequest;
use sendfleet_protocol::{Event, SendJob, SendRequest};
use serde_json::Value;

/// What every wire schema says about how to read it.
const WIRE_NOTE: &str = "This schema validates the JSON view of the MessagePack document: maps are objects, \
     nil is null, bin is an array of integers 0-255. Readers ignore unknown fields, so they are allowed. It \
     checks what a reader decodes; the dispatcher's semantic checks (E.164, lengths, counts) are listed in \
     docs/protocol.md. Generated from the Rust types by crates/sendfleet-contract; do not edit.";

/// One generated file: its path from the repository root, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Path relative to the repository root (`docs/schema/event.schema.json`).
    pub path: String,
    /// The file's text: pretty JSON with a final newline.
    pub text: String,
}

/// The JSON Schema of one wire document, with its `$id` and the reading note appended to
/// the type's own description.
fn wire_schema<T: JsonSchema>(name: &str) -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    let own = schema["description"].as_str().unwrap_or_default().to_owned();
    schema["description"] =
        Value::String(if own.is_empty() { WIRE_NOTE.to_owned() } else { format!("{own}\n\n{WIRE_NOTE}") });
    schema["$id"] = Value::String(format!("urn:sendfleet:schema:{name}:{}", sendfleet_protocol::SCHEMA_VERSION));
    schema
}

/// The wire schemas by document name (`send-request`, `send-job`, `event`,
/// `rejected-request`).
pub fn wire_schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("send-request", wire_schema::<SendRequest>("send-request")),
        ("send-job", wire_schema::<SendJob>("send-job")),
        ("event", wire_schema::<Event>("event")),
        ("rejected-request", wire_schema::<RejectedRequest>("rejected-request")),
    ]
}

/// Where the schema of document `name` is committed.
pub fn schema_path(name: &str) -> String {
    format!("docs/schema/{name}.schema.json")
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// Every generated file of the contract.
pub fn generated_files() -> Vec<GeneratedFile> {
    let mut files: Vec<GeneratedFile> = wire_schemas()
        .into_iter()
        .map(|(name, schema)| GeneratedFile { path: schema_path(name), text: pretty(&schema) })
        .collect();
    files.push(GeneratedFile {
        path: "docs/openapi.json".to_owned(),
        text: sendfleet_dispatcher::openapi::document_text(),
    });
    files
}

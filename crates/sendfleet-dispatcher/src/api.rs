//! The dispatcher's HTTP API, beside `/metrics` and `/health` on `dispatcher.listen`
//! (documented in `docs/http-api.md`):
//!
//! - `POST /v1/messages`: one send request (JSON), published with confirms before the
//!   202 answer.
//! - `POST /v1/messages/bulk`: NDJSON, the request on the first line and one recipient
//!   per following line, read as a stream; jobs are published in a bounded window of
//!   unconfirmed publishes, so neither the body nor its jobs are ever held whole.
//! - `POST /v1/send-test`: one synchronous send through a named provider's adapter.
//! - `POST /v1/events`: an outbound RCS event (typing indicator, read receipt).
//! - `GET /v1/messages/{id}`: the message's status record (`sendfleet-status`).
//!
//! With `dispatcher.api_token_env` set, every `/v1/*` call needs
//! `Authorization: Bearer <token>`.

use std::{
    collections::BTreeSet,
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{
        DefaultBodyLimit, Path, Request, State,
        rejection::{BytesRejection, PathRejection},
    },
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures_util::{Stream, StreamExt, future::try_join_all, stream::FuturesUnordered};
use metrics::counter;
use schemars::JsonSchema;
use sendfleet_broker::{BrokerError, Publisher, Topology};
use sendfleet_config::Config;
use sendfleet_protocol::{Recipient, SUPPORTED_SCHEMA_VERSIONS, SendJob, SendRequest};
use sendfleet_providers::{AdapterSettings, OutboundEvent};
use sendfleet_telemetry::metrics as names;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::{
    NumberingPlan, Planner, Rejection, check_destination, plan,
    send_test::{SendTestRequest, send_test},
};

/// Errors listed in a bulk answer; past this only the count grows.
const MAX_REPORTED_ERRORS: usize = 1_000;

/// What the API handlers share: the config and the publisher of the current broker
/// session (absent while disconnected, so calls answer 503 instead of waiting).
pub(crate) struct ApiState {
    pub config: Arc<Config>,
    pub topology: Topology,
    publisher: RwLock<Option<Publisher>>,
    /// Message status records (`GET /v1/messages/{id}`); the error when the store
    /// cannot be set up (a Redis URL a config built without validation let through).
    status: Result<sendfleet_status::StatusStore, String>,
}

impl ApiState {
    pub fn new(config: Arc<Config>) -> ApiState {
        let topology = Topology::new(&config.broker);
        let status = sendfleet_status::StatusStore::connect(&config).map_err(|e| e.to_string());
        ApiState { config, topology, publisher: RwLock::new(None), status }
    }

    /// Installs the publisher of a new broker session.
    pub fn set_publisher(&self, publisher: Publisher) {
        *self.publisher.write().unwrap_or_else(|e| e.into_inner()) = Some(publisher);
    }

    fn publisher(&self) -> Result<Publisher, Box<Response>> {
        self.publisher.read().unwrap_or_else(|e| e.into_inner()).clone().ok_or_else(|| {
            Box::new(error(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable", "not connected to the broker yet"))
        })
    }
}

/// The `/v1` routes.
pub(crate) fn router(state: Arc<ApiState>) -> Router {
    let limit = state.config.dispatcher.api_max_body_bytes;
    Router::new()
        .route("/v1/messages", post(single))
        .route("/v1/messages/bulk", post(bulk))
        .route("/v1/messages/{id}", get(message_status))
        .route("/v1/send-test", post(send_test_handler))
        .route("/v1/events", post(event))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// The body of every error answer: `{"error": code, "reason": what is wrong}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// Bounded error code (`malformed`, `unauthorized`, a rejection code, …).
    pub error: String,
    /// What is wrong, for a human.
    pub reason: String,
}

/// The answer to a `POST /v1/messages/bulk` that stopped part way (503): the error and
/// the report of what was settled before it.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct BulkFailure {
    /// `broker_unavailable` (503) or `body_error` (400).
    pub error: String,
    /// What is wrong.
    pub reason: String,
    /// What was settled: every line up to `confirmed_through_line` was published or
    /// listed as refused.
    pub report: BulkReport,
}

/// The answer to `POST /v1/events`: what the provider said.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct EventAnswer {
    /// Provider id.
    pub provider: String,
    /// The provider's HTTP status, absent when no answer came.
    pub http_status: Option<u16>,
    /// `accepted`, `rejected`, `transient` or `auth_failure`.
    pub outcome: String,
    /// Why, when not accepted.
    pub reason: Option<String>,
    /// The answer body as received.
    pub raw_body: String,
}

/// A JSON error body: `{"error": code, "reason": what is wrong}`.
fn error(status: StatusCode, code: &str, reason: impl Into<String>) -> Response {
    (status, Json(ErrorBody { error: code.to_owned(), reason: reason.into() })).into_response()
}

/// The JSON error for a body that could not be read: over `dispatcher.api_max_body_bytes`
/// (413) or broken off (400). Axum's own answer is plain text, which the error contract
/// (every error is JSON) does not allow.
fn body_error(rejection: &BytesRejection) -> Response {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        error(status, "body_too_large", rejection.body_text())
    } else {
        error(StatusCode::BAD_REQUEST, "body_error", rejection.body_text())
    }
}

fn rejected(rejection: &Rejection) -> Response {
    counter!(names::REQUESTS_TOTAL, "outcome" => "rejected").increment(1);
    counter!(names::REQUESTS_REJECTED_TOTAL, "reason" => rejection.code).increment(1);
    error(StatusCode::UNPROCESSABLE_ENTITY, rejection.code, rejection.reason.clone())
}

async fn authenticate(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let expected = state.config.dispatcher.api_token.expose();
    if expected.is_empty() {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        next.run(request).await
    } else {
        let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer token");
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

fn parse_request(bytes: &[u8]) -> Result<SendRequest, Box<Response>> {
    let malformed =
        |e: String| Box::new(error(StatusCode::BAD_REQUEST, "malformed", format!("not a send request: {e}")));
    let (request, conforms) = strict::read::<SendRequest>(bytes).map_err(malformed)?;
    if !SUPPORTED_SCHEMA_VERSIONS.contains(&request.schema_version) {
        return Err(Box::new(rejected(&Rejection::new(
            "unsupported_version",
            format!(
                "schema_version {} is not supported (this build reads {}-{})",
                request.schema_version,
                SUPPORTED_SCHEMA_VERSIONS.start(),
                SUPPORTED_SCHEMA_VERSIONS.end()
            ),
        ))));
    }
    // Checked after the version: a request of another version is refused as such.
    conforms.map_err(malformed)?;
    Ok(request)
}

/// The answer to an accepted `POST /v1/messages`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Accepted {
    /// Jobs published (one per recipient).
    pub accepted: usize,
    /// Their message ids, in recipient order.
    pub message_ids: Vec<String>,
}

async fn single(State(state): State<Arc<ApiState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_error(&rejection),
    };
    let request = match parse_request(&body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let jobs = match plan(request, &state.config) {
        Ok(jobs) => jobs,
        Err(rejection) => return rejected(&rejection),
    };
    let publisher = match state.publisher() {
        Ok(publisher) => publisher,
        Err(response) => return *response,
    };
    let publishes = jobs.iter().map(|job| publisher.publish_job(&state.topology, job));
    if let Err(err) = try_join_all(publishes).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable", err.to_string());
    }
    for job in &jobs {
        counter!(names::JOBS_PUBLISHED_TOTAL, "provider" => job.provider.clone()).increment(1);
    }
    counter!(names::REQUESTS_TOTAL, "outcome" => "accepted").increment(1);
    let message_ids = jobs.into_iter().map(|job| job.message_id).collect::<Vec<_>>();
    (StatusCode::ACCEPTED, Json(Accepted { accepted: message_ids.len(), message_ids })).into_response()
}

/// `GET /v1/messages/{id}`: the status record as JSON; 404 with a reason when there is
/// none (or the store is switched off), 503 when Redis cannot answer.
async fn message_status(State(state): State<Arc<ApiState>>, id: Result<Path<String>, PathRejection>) -> Response {
    // An id that is not valid percent-encoded UTF-8: axum's own answer is plain text.
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, "malformed", rejection.body_text()),
    };
    let store = match &state.status {
        Ok(store) => store,
        Err(reason) => return error(StatusCode::SERVICE_UNAVAILABLE, "status_store_unavailable", reason.clone()),
    };
    match store.get(&id).await {
        Ok(Some(status)) => (StatusCode::OK, Json(status)).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "unknown_message",
            format!(
                "no status record for message id '{id}': never sent through this fleet, or its record expired \
                 ({} s after its last change, status.ttl_seconds)",
                state.config.status.ttl_seconds
            ),
        ),
        Err(sendfleet_status::StatusError::Disabled) => {
            error(StatusCode::NOT_FOUND, "status_disabled", sendfleet_status::StatusError::Disabled.to_string())
        }
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, "status_store_unavailable", err.to_string()),
    }
}

/// One refused line of a bulk request.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LineError {
    /// 1-based line number (line 1 is the request).
    pub line: u64,
    /// Bounded code (`invalid_destination`, `missing_variable`, `malformed`, …).
    pub code: String,
    /// What is wrong.
    pub reason: String,
}

/// The answer to `POST /v1/messages/bulk`.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct BulkReport {
    /// Recipient lines read (blank lines not counted).
    pub recipients: u64,
    /// Jobs published and confirmed.
    pub accepted: u64,
    /// Recipient lines refused.
    pub rejected: u64,
    /// The refused lines, the first 1,000.
    pub errors: Vec<LineError>,
    /// True when more lines were refused than listed.
    pub errors_truncated: bool,
    /// Every line up to this one is settled (published or listed as refused). Only
    /// meaningful after a 503: resubmit from the line after it.
    pub confirmed_through_line: u64,
}

impl BulkReport {
    fn refuse(&mut self, line: u64, code: &str, reason: String) {
        self.rejected += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(LineError { line, code: code.to_owned(), reason });
        } else {
            self.errors_truncated = true;
        }
    }
}

type PublishFuture = Pin<Box<dyn Future<Output = (u64, String, Result<(), BrokerError>)> + Send>>;

async fn bulk(State(state): State<Arc<ApiState>>, body: Body) -> Response {
    let publisher = match state.publisher() {
        Ok(publisher) => publisher,
        Err(response) => return *response,
    };
    let config = state.config.clone();
    let window = config.dispatcher.bulk_publish_window;
    let topology = state.topology.clone();
    let mut lines = LineReader::new(body.into_data_stream(), config.dispatcher.api_max_line_bytes);
    let mut planner: Option<Planner<'_>> = None;
    let mut in_flight: FuturesUnordered<PublishFuture> = FuturesUnordered::new();
    let mut pending = BTreeSet::new();
    let mut report = BulkReport::default();
    let mut last_line = 0;

    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(err) => {
                // The client went away or sent a broken body; what was confirmed stays.
                return bulk_failure(StatusCode::BAD_REQUEST, "body_error", err, report, &pending, last_line);
            }
        };
        last_line = lines.line_number;
        let number = lines.line_number;
        let bytes = match line {
            Line::TooLong => {
                let reason = format!("line longer than {} bytes", config.dispatcher.api_max_line_bytes);
                if planner.is_none() {
                    return error(StatusCode::PAYLOAD_TOO_LARGE, "line_too_long", format!("line 1: {reason}"));
                }
                report.recipients += 1;
                report.refuse(number, "line_too_long", reason);
                continue;
            }
            Line::Data(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Data(bytes) => bytes,
        };
        if planner.is_none() {
            let request = match parse_request(&bytes) {
                Ok(request) => request,
                Err(response) => return *response,
            };
            if request.to.is_some() || !request.recipients.is_empty() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    "line 1 is the request without 'to' or 'recipients'; recipients follow, one per line",
                );
            }
            match Planner::new(request, &config) {
                Ok(new) => planner = Some(new),
                Err(rejection) => return rejected(&rejection),
            }
            continue;
        }
        let Some(planner) = planner.as_ref() else { continue };
        report.recipients += 1;
        let job = strict::read_conforming::<Recipient>(&bytes)
            .map_err(|e| Rejection::new("malformed", format!("not a recipient: {e}")))
            .and_then(|recipient| planner.job(recipient));
        match job {
            Ok(job) => {
                pending.insert(number);
                in_flight.push(owned_publish(publisher.clone(), topology.clone(), number, job));
            }
            Err(rejection) => {
                counter!(names::REQUESTS_REJECTED_TOTAL, "reason" => rejection.code).increment(1);
                report.refuse(number, rejection.code, rejection.reason);
            }
        }
        // Reading waits for the window to drain: bounded memory whatever the body size.
        while in_flight.len() >= window {
            if let Err(err) = settle(&mut in_flight, &mut pending, &mut report).await {
                return bulk_failure(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "broker_unavailable",
                    err,
                    report,
                    &pending,
                    last_line,
                );
            }
        }
    }
    while !in_flight.is_empty() {
        if let Err(err) = settle(&mut in_flight, &mut pending, &mut report).await {
            return bulk_failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "broker_unavailable",
                err,
                report,
                &pending,
                last_line,
            );
        }
    }
    if planner.is_none() {
        return error(StatusCode::BAD_REQUEST, "malformed", "empty body: line 1 must be the request");
    }
    counter!(names::REQUESTS_TOTAL, "outcome" => "accepted").increment(1);
    report.confirmed_through_line = last_line;
    (StatusCode::OK, Json(report)).into_response()
}

fn owned_publish(publisher: Publisher, topology: Topology, line: u64, job: SendJob) -> PublishFuture {
    Box::pin(async move {
        let result = publisher.publish_job(&topology, &job).await;
        (line, job.provider, result)
    })
}

/// Awaits one publish of the window.
async fn settle(
    in_flight: &mut FuturesUnordered<PublishFuture>,
    pending: &mut BTreeSet<u64>,
    report: &mut BulkReport,
) -> Result<(), String> {
    let Some((line, provider, result)) = in_flight.next().await else { return Ok(()) };
    result.map_err(|e| format!("line {line}: {e}"))?;
    pending.remove(&line);
    report.accepted += 1;
    counter!(names::JOBS_PUBLISHED_TOTAL, "provider" => provider).increment(1);
    Ok(())
}

fn bulk_failure(
    status: StatusCode,
    code: &str,
    reason: impl std::fmt::Display,
    mut report: BulkReport,
    pending: &BTreeSet<u64>,
    last_line: u64,
) -> Response {
    report.confirmed_through_line = pending.first().map_or(last_line, |first| first - 1);
    (status, Json(BulkFailure { error: code.to_owned(), reason: reason.to_string(), report })).into_response()
}

/// A line of an NDJSON body.
enum Line {
    /// The line's bytes, without the line end.
    Data(Vec<u8>),
    /// A line over the limit; its bytes were dropped as they came.
    TooLong,
}

/// Splits a streamed body into lines, holding at most one line (bounded) at a time.
struct LineReader<S> {
    stream: S,
    buf: Vec<u8>,
    scanned: usize,
    max: usize,
    skipping: bool,
    done: bool,
    line_number: u64,
}

impl<S, E> LineReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    fn new(stream: S, max: usize) -> Self {
        LineReader { stream, buf: Vec::new(), scanned: 0, max, skipping: false, done: false, line_number: 0 }
    }

    async fn next_line(&mut self) -> Result<Option<Line>, String> {
        loop {
            if let Some(offset) = self.buf[self.scanned..].iter().position(|b| *b == b'\n') {
                let end = self.scanned + offset;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                self.scanned = 0;
                self.line_number += 1;
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if std::mem::take(&mut self.skipping) || line.len() > self.max {
                    return Ok(Some(Line::TooLong));
                }
                return Ok(Some(Line::Data(line)));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > self.max {
                self.buf.clear();
                self.scanned = 0;
                self.skipping = true;
            }
            if self.done {
                return Ok(None);
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(err)) => return Err(format!("reading the body failed: {err}")),
                None => {
                    self.done = true;
                    if self.buf.is_empty() && !self.skipping {
                        return Ok(None);
                    }
                    // The last line may lack its newline.
                    self.buf.push(b'\n');
                }
            }
        }
    }
}

async fn send_test_handler(State(state): State<Arc<ApiState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_error(&rejection),
    };
    let request: SendTestRequest = match strict::read_conforming(&body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed", format!("not a send-test request: {e}")),
    };
    match send_test(&request, &state.config).await {
        Ok(result) => (StatusCode::OK, Json(result)).into_response(),
        Err(rejection) => error(StatusCode::UNPROCESSABLE_ENTITY, rejection.code, rejection.reason),
    }
}

/// `POST /v1/events` body: an outbound RCS event.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventRequest {
    /// Provider id of an RCS provider (`infobip_rcs` or `jiocx_rcs`).
    provider: String,
    /// The recipient, E.164.
    to: String,
    /// `typing_indicator` or `read_receipt`.
    #[serde(rename = "type")]
    kind: String,
    /// `read_receipt`: the provider's id of the inbound message that was read.
    #[serde(default)]
    message_id: Option<String>,
    /// RCS agent; absent means the provider's first sender id.
    #[serde(default)]
    sender: Option<String>,
}

async fn event(State(state): State<Arc<ApiState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_error(&rejection),
    };
    let request: EventRequest = match strict::read_conforming(&body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed", format!("not an event request: {e}")),
    };
    let Some(provider) = state.config.provider(&request.provider) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_provider",
            format!("no provider '{}'", request.provider),
        );
    };
    let settings = AdapterSettings::default();
    // Events go out at once, outside the fleet's rate (they are not messages).
    let adapter = match sendfleet_providers::build(provider, &settings, sendfleet_providers::unlimited()) {
        Ok(adapter) => adapter,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "provider_unavailable", e.to_string()),
    };
    if !adapter.sends_outbound_events() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_provider",
            format!("provider '{}' ({}) has no outbound RCS events", provider.id, provider.kind.as_str()),
        );
    }
    if let Err(rejection) = check_destination(&request.to, NumberingPlan::of(&state.config.dispatcher)) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, rejection.code, rejection.reason);
    }
    let sender = request.sender.unwrap_or_default();
    let event = match (request.kind.as_str(), request.message_id) {
        ("typing_indicator", _) => OutboundEvent::TypingIndicator { to: request.to, sender },
        ("read_receipt", Some(message_id)) => OutboundEvent::ReadReceipt { to: request.to, sender, message_id },
        ("read_receipt", None) => {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "missing_message_id", "read_receipt needs message_id");
        }
        (other, _) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_event",
                format!("type '{other}' is not typing_indicator or read_receipt"),
            );
        }
    };
    let answer = adapter.send_event(&event).await;
    let reason = match &answer.outcome {
        sendfleet_providers::SendOutcome::Accepted { .. } => None,
        sendfleet_providers::SendOutcome::Rejected { reason, .. }
        | sendfleet_providers::SendOutcome::Transient { reason, .. }
        | sendfleet_providers::SendOutcome::AuthFailure { reason, .. } => Some(reason.clone()),
    };
    let body = EventAnswer {
        provider: provider.id.clone(),
        http_status: answer.http_status,
        outcome: answer.outcome.label().to_owned(),
        reason,
        raw_body: answer.body,
    };
    (StatusCode::OK, Json(body)).into_response()
}

mod strict;

#[cfg(test)]
pub(crate) mod tests;

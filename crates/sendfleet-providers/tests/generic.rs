//! The Generic adapter against the real mock-provider on loopback: every auth mode,
//! token caching and refresh, headers and body parameters as they arrive.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::future::{BoxFuture, join_all};
use sendfleet_config::Config;
use sendfleet_mock_provider::{Behaviour, GenericAuth, MockConfig, MockHandle};
use sendfleet_protocol::{Channel, Content, SendJob, Suggestion};
use sendfleet_providers::{
    AdapterSettings, GateError, Provider, RejectCode, RequestGate, SendOutcome, TransientCode, generic::GenericAdapter,
    unlimited,
};
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "basic-pa55word";
const CLIENT_SECRET: &str = "oauth-client-secret-0123";

struct Mock {
    handle: MockHandle,
    shutdown: CancellationToken,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn mock(behaviour: Behaviour) -> Mock {
    let shutdown = CancellationToken::new();
    let handle = sendfleet_mock_provider::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        MockConfig {
            twilio_auth_token: None,
            api_keys: vec![],
            default_dlr_url: None,
            behaviour: Behaviour { delivery_reports: false, ..behaviour },
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    Mock { handle, shutdown }
}

/// A validated config with one generic provider, so the adapter sees what production sees.
fn adapter(kind: &str, mock: &MockHandle, generic: &str) -> GenericAdapter {
    gated_adapter(kind, mock, generic, unlimited())
}

/// [`adapter`] whose extra requests take their slots from `gate`.
fn gated_adapter(kind: &str, mock: &MockHandle, generic: &str, gate: Arc<dyn RequestGate>) -> GenericAdapter {
    let path = if kind == "generic_sms" { "sms" } else { "rcs" };
    let toml = format!(
        "[[providers]]\nid = \"gen\"\nkind = \"{kind}\"\nsender_ids = [\"AcmeAgent\"]\nconcurrency = 64\n\
         [providers.generic]\nendpoint = \"{}/generic/{path}\"\n{}",
        mock.base_url(),
        generic.replace("{mock}", &mock.base_url()),
    );
    let lookup = |name: &str| match name {
        "GEN_PASSWORD" => Some(PASSWORD.to_owned()),
        "GEN_WRONG_PASSWORD" => Some("not-the-password".to_owned()),
        "GEN_CLIENT_SECRET" => Some(CLIENT_SECRET.to_owned()),
        "GEN_API_KEY" => Some("vendor-api-key-42".to_owned()),
        _ => None,
    };
    let config = Config::from_toml(&toml, &lookup, &sendfleet_providers::VENDORS).unwrap();
    GenericAdapter::new(config.providers[0].clone(), &AdapterSettings::default(), gate).unwrap()
}

fn job(id: &str, channel: Channel) -> SendJob {
    let suggestions = match channel {
        Channel::Rcs => vec![Suggestion::Reply { text: "Yes".into(), postback_data: "yes".into() }],
        Channel::Sms => vec![],
    };
    SendJob {
        priority: Default::default(),
        schema_version: 1,
        message_id: id.into(),
        provider: "gen".into(),
        channel,
        to: "+919876543210".into(),
        sender: "AcmeAgent".into(),
        content: Content::Text { text: format!("Hello {id}"), suggestions },
        options: Default::default(),
        fallback: None,
        metadata: BTreeMap::from([("campaign".into(), "spring".into())]),
        trace_id: "trace".into(),
        attempts: 0,
        first_attempt_at_ms: None,
        created_at_ms: 0,
        fallback_for: None,
    }
}

const OAUTH: &str = r#"auth = { type = "oauth2", token_url = "{mock}/oauth/token", client_id = "acme", client_secret_env = "GEN_CLIENT_SECRET" }"#;

fn oauth_behaviour(ttl: u64) -> Behaviour {
    Behaviour {
        generic_auth: GenericAuth::Oauth2 { client_id: "acme".into(), client_secret: CLIENT_SECRET.into() },
        oauth_token_ttl_seconds: ttl,
        ..Behaviour::default()
    }
}

#[tokio::test]
async fn no_auth_put_with_custom_headers_and_body_parameters() {
    let mock = mock(Behaviour::default()).await;
    let adapter = adapter(
        "generic_rcs",
        &mock.handle,
        r#"method = "PUT"
headers = { "X-Account" = "acme", "X-Feature" = "rbm-v2" }
secret_headers = { "X-Api-Key" = "GEN_API_KEY" }
body_parameters = { account = "acme-001", ref = "sf-{{message_id}}", campaign = "{{metadata.campaign}}", msisdn = "{{to_digits}}" }"#,
    );
    assert_eq!(adapter.send(&job("m-1", Channel::Rcs)).await, SendOutcome::Accepted { status: None });

    let received = mock.handle.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!((request.path.as_str(), request.method.as_str(), request.status), ("/generic/rcs", "PUT", 200));
    assert_eq!(request.headers.get("x-account").map(String::as_str), Some("acme"));
    assert_eq!(request.headers.get("x-feature").map(String::as_str), Some("rbm-v2"));
    assert_eq!(request.headers.get("x-api-key").map(String::as_str), Some("vendor-api-key-42"));
    assert_eq!(request.headers.get("content-type").map(String::as_str), Some("application/json"));
    assert_eq!(request.authorization, None);
    let body = request.body.as_ref().unwrap();
    assert_eq!(body["message_id"], "m-1");
    assert_eq!(body["account"], "acme-001");
    assert_eq!(body["ref"], "sf-m-1");
    assert_eq!(body["campaign"], "spring");
    assert_eq!(body["msisdn"], "919876543210");
    assert_eq!(body["content"]["suggestions"][0]["type"], "reply");
}

#[tokio::test]
async fn sms_goes_to_the_sms_endpoint_and_bad_requests_are_rejected() {
    let mock = mock(Behaviour::default()).await;
    let adapter = adapter("generic_sms", &mock.handle, "");
    assert_eq!(adapter.send(&job("s-1", Channel::Sms)).await, SendOutcome::Accepted { status: None });
    // The mock validates strictly: a number that is not E.164 is refused with a 400,
    // which is the message's fault, not the provider's.
    let mut bad = job("s-2", Channel::Sms);
    bad.to = "12345".into();
    let SendOutcome::Rejected { code, reason, .. } = adapter.send(&bad).await else { panic!("rejected expected") };
    assert_eq!(code, RejectCode::BadRequest);
    assert!(reason.starts_with("HTTP 400: INVALID_REQUEST"), "{reason}");
    assert_eq!(mock.handle.received()[0].body.as_ref().unwrap()["channel"], "sms");
}

#[tokio::test]
async fn overload_is_transient_with_retry_after() {
    let mock = mock(Behaviour { error_429_ratio: 1.0, retry_after_seconds: Some(3), ..Behaviour::default() }).await;
    let adapter = adapter("generic_rcs", &mock.handle, "");
    let outcome = adapter.send(&job("m-1", Channel::Rcs)).await;
    let SendOutcome::Transient { code, retry_after, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!((code, retry_after), (TransientCode::Throttled, Some(Duration::from_secs(3))));
    mock.handle.set_behaviour(Behaviour { force_status: Some(503), ..Behaviour::default() });
    assert_eq!(adapter.send(&job("m-2", Channel::Rcs)).await.label(), "transient");
}

#[tokio::test]
async fn basic_auth_is_sent_and_a_wrong_password_pauses() {
    let behaviour = Behaviour {
        generic_auth: GenericAuth::Basic { username: "acme".into(), password: PASSWORD.into() },
        ..Behaviour::default()
    };
    let mock = mock(behaviour).await;
    let good = adapter(
        "generic_rcs",
        &mock.handle,
        r#"auth = { type = "basic", username = "acme", password_env = "GEN_PASSWORD" }"#,
    );
    assert_eq!(good.send(&job("m-1", Channel::Rcs)).await, SendOutcome::Accepted { status: None });
    let wrong = adapter(
        "generic_rcs",
        &mock.handle,
        r#"auth = { type = "basic", username = "acme", password_env = "GEN_WRONG_PASSWORD" }"#,
    );
    let outcome = wrong.send(&job("m-2", Channel::Rcs)).await;
    let SendOutcome::AuthFailure { http_status, reason } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(*http_status, 401);
    assert!(!reason.contains("not-the-password"));
    let none = adapter("generic_rcs", &mock.handle, "");
    assert_eq!(none.send(&job("m-3", Channel::Rcs)).await.label(), "auth_failure");
    let statuses: Vec<u16> = mock.handle.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 401, 401]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_serves_many_concurrent_sends() {
    let mock = mock(Behaviour { latency_ms: 20, ..oauth_behaviour(3_600) }).await;
    let adapter = Arc::new(adapter("generic_rcs", &mock.handle, OAUTH));
    let jobs: Vec<SendJob> = (0..64).map(|i| job(&format!("m-{i}"), Channel::Rcs)).collect();
    let outcomes = join_all(jobs.iter().map(|job| adapter.send(job))).await;
    assert!(outcomes.iter().all(|o| *o == SendOutcome::Accepted { status: None }), "{outcomes:?}");
    assert_eq!(mock.handle.oauth_token_requests(), 1, "concurrent callers share one token fetch");
    assert_eq!(adapter.token_fetches(), 1);
    let received = mock.handle.received();
    assert_eq!(received.len(), 64);
    let first = received[0].authorization.clone().unwrap();
    assert!(first.starts_with("Bearer "));
    assert!(received.iter().all(|r| r.authorization.as_deref() == Some(first.as_str())));
}

#[tokio::test]
async fn the_token_is_refreshed_before_it_expires() {
    let mock = mock(oauth_behaviour(2)).await;
    let adapter = adapter("generic_rcs", &mock.handle, OAUTH);
    assert_eq!(adapter.send(&job("m-1", Channel::Rcs)).await.label(), "accepted");
    assert_eq!(adapter.send(&job("m-2", Channel::Rcs)).await.label(), "accepted");
    assert_eq!(mock.handle.oauth_token_requests(), 1, "a fresh token is reused");
    // Past four fifths of the 2 s lifetime a send still goes out with the old token,
    // which is valid for a while yet: a send does not wait for a refresh.
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    assert_eq!(adapter.send(&job("m-3", Channel::Rcs)).await.label(), "accepted");
    assert_eq!(mock.handle.oauth_token_requests(), 1);
    // Preparing the next send (as the worker does before its rate slot) refreshes it,
    // so the mock never has to refuse an expired token.
    adapter.prepare().await.unwrap();
    assert_eq!(mock.handle.oauth_token_requests(), 2);
    assert_eq!(adapter.send(&job("m-4", Channel::Rcs)).await.label(), "accepted");
    assert_eq!(mock.handle.oauth_tokens_refused(), 0);
    let received = mock.handle.received();
    assert!(received.iter().all(|r| r.status == 200));
    assert_eq!(received[0].authorization, received[2].authorization);
    assert_ne!(received[0].authorization, received[3].authorization, "the fourth send used the new token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_replaced_once_and_the_sends_succeed() {
    let mock = mock(oauth_behaviour(3_600)).await;
    let adapter = Arc::new(adapter("generic_rcs", &mock.handle, OAUTH));
    assert_eq!(adapter.send(&job("m-0", Channel::Rcs)).await.label(), "accepted");
    mock.handle.revoke_tokens();
    let jobs: Vec<SendJob> = (1..=16).map(|i| job(&format!("m-{i}"), Channel::Rcs)).collect();
    let outcomes = join_all(jobs.iter().map(|job| adapter.send(job))).await;
    assert!(outcomes.iter().all(|o| o.label() == "accepted"), "{outcomes:?}");
    assert_eq!(mock.handle.oauth_token_requests(), 2, "exactly one refresh after the 401s");
    assert!(mock.handle.oauth_tokens_refused() >= 1);
    let accepted: Vec<_> = mock.handle.received().into_iter().filter(|r| r.status == 200).collect();
    assert_eq!(accepted.len(), 17, "every message went through exactly once");
}

#[tokio::test]
async fn a_wrong_client_secret_pauses_without_leaking_it() {
    let mock = mock(Behaviour {
        generic_auth: GenericAuth::Oauth2 { client_id: "acme".into(), client_secret: "something-else".into() },
        ..Behaviour::default()
    })
    .await;
    let refused = adapter("generic_rcs", &mock.handle, OAUTH);
    let outcome = refused.send(&job("m-1", Channel::Rcs)).await;
    assert_eq!(
        outcome,
        SendOutcome::AuthFailure {
            http_status: 401,
            reason: "OAuth token endpoint answered HTTP 401 (invalid_client)".into()
        }
    );
    assert!(mock.handle.received().is_empty(), "nothing is sent without a token");
    // Basic client authentication reaches the same endpoint the RFC 6749 way.
    mock.handle.set_behaviour(oauth_behaviour(3_600));
    let basic = adapter("generic_rcs", &mock.handle, &OAUTH.replace(" }", ", client_auth = \"basic\" }"));
    assert_eq!(basic.send(&job("m-2", Channel::Rcs)).await.label(), "accepted");
}

/// Counts the slots it hands out; refuses them (the slot store is down) when told to.
#[derive(Default)]
struct CountingGate {
    acquired: AtomicU64,
    refuse: AtomicBool,
}

impl CountingGate {
    fn acquired(&self) -> u64 {
        self.acquired.load(Ordering::SeqCst)
    }
}

impl RequestGate for CountingGate {
    fn acquire(&self) -> BoxFuture<'_, Result<(), GateError>> {
        Box::pin(async move {
            if self.refuse.load(Ordering::SeqCst) {
                return Err(GateError::Unavailable("test: slot store down".into()));
            }
            self.acquired.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

/// A send as the worker makes it: prepare, take the first request's slot, send.
async fn worker_send(adapter: &GenericAdapter, caller_slots: &AtomicU64, job: &SendJob) -> SendOutcome {
    if let Err(outcome) = adapter.prepare().await {
        return outcome;
    }
    caller_slots.fetch_add(1, Ordering::SeqCst);
    adapter.send(job).await
}

/// Every HTTP request the mock received: token requests and sends (resends included).
fn requests_at(mock: &MockHandle) -> u64 {
    mock.oauth_token_requests() + mock.received().len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_expired_token_every_request_takes_a_slot() {
    const N: u64 = 24;
    let mock = mock(Behaviour { latency_ms: 20, ..oauth_behaviour(1) }).await;
    let gate = Arc::new(CountingGate::default());
    let adapter = Arc::new(gated_adapter("generic_rcs", &mock.handle, OAUTH, gate.clone()));
    let caller = AtomicU64::new(0);
    assert_eq!(worker_send(&adapter, &caller, &job("warm", Channel::Rcs)).await.label(), "accepted");
    // The 1 s token is now past its expiry, not merely due for refresh.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (requests, acquired, token_requests) =
        (requests_at(&mock.handle), gate.acquired(), mock.handle.oauth_token_requests());
    caller.store(0, Ordering::SeqCst);

    let jobs: Vec<SendJob> = (0..N).map(|i| job(&format!("m-{i}"), Channel::Rcs)).collect();
    let outcomes = join_all(jobs.iter().map(|job| worker_send(&adapter, &caller, job))).await;
    assert!(outcomes.iter().all(|o| o.label() == "accepted"), "{outcomes:?}");
    assert_eq!(mock.handle.oauth_token_requests() - token_requests, 1, "the waiters share one fetch");
    assert_eq!(mock.handle.oauth_tokens_refused(), 0, "no send went out with the expired token");
    assert_eq!(caller.load(Ordering::SeqCst), N);
    assert_eq!(gate.acquired() - acquired, 1, "the token fetch took a slot of its own");
    assert_eq!(
        requests_at(&mock.handle) - requests,
        (gate.acquired() - acquired) + N,
        "every request at the provider had a slot: the adapter's or the caller's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resend_after_a_401_takes_a_slot() {
    const N: u64 = 16;
    let mock = mock(Behaviour { latency_ms: 10, ..oauth_behaviour(3_600) }).await;
    let gate = Arc::new(CountingGate::default());
    let adapter = Arc::new(gated_adapter("generic_rcs", &mock.handle, OAUTH, gate.clone()));
    let caller = AtomicU64::new(0);
    assert_eq!(worker_send(&adapter, &caller, &job("warm", Channel::Rcs)).await.label(), "accepted");
    mock.handle.revoke_tokens();
    let (requests, acquired, token_requests) =
        (requests_at(&mock.handle), gate.acquired(), mock.handle.oauth_token_requests());
    caller.store(0, Ordering::SeqCst);

    let jobs: Vec<SendJob> = (0..N).map(|i| job(&format!("m-{i}"), Channel::Rcs)).collect();
    let outcomes = join_all(jobs.iter().map(|job| worker_send(&adapter, &caller, job))).await;
    assert!(outcomes.iter().all(|o| o.label() == "accepted"), "{outcomes:?}");
    let resends = mock.handle.oauth_tokens_refused();
    assert!(resends >= 1, "at least one send met the revoked token");
    assert_eq!(mock.handle.oauth_token_requests() - token_requests, 1, "one replacement for all the 401s");
    assert_eq!(gate.acquired() - acquired, 1 + resends, "the replacement and every resend took a slot");
    assert_eq!(requests_at(&mock.handle) - requests, (gate.acquired() - acquired) + N);
}

#[tokio::test]
async fn without_a_slot_no_request_is_made() {
    let mock = mock(oauth_behaviour(3_600)).await;
    let gate = Arc::new(CountingGate::default());
    let adapter = gated_adapter("generic_rcs", &mock.handle, OAUTH, gate.clone());
    let caller = AtomicU64::new(0);
    gate.refuse.store(true, Ordering::SeqCst);
    // No token yet, and no slot to fetch one with.
    let outcome = worker_send(&adapter, &caller, &job("m-1", Channel::Rcs)).await;
    let SendOutcome::Transient { code, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(*code, TransientCode::RateStoreUnavailable);
    assert_eq!(requests_at(&mock.handle), 0, "no token request without a slot");

    gate.refuse.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_100)).await; // past the failure hold
    assert_eq!(worker_send(&adapter, &caller, &job("m-2", Channel::Rcs)).await.label(), "accepted");
    mock.handle.revoke_tokens();
    gate.refuse.store(true, Ordering::SeqCst);
    // The first request goes out on the caller's slot and meets a 401; neither the
    // replacement token nor the resend may go out without a slot of their own.
    let outcome = worker_send(&adapter, &caller, &job("m-3", Channel::Rcs)).await;
    let SendOutcome::Transient { code, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(*code, TransientCode::RateStoreUnavailable);
    assert_eq!(mock.handle.oauth_token_requests(), 1);
    let statuses: Vec<u16> = mock.handle.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 401]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_waited_for_a_token_takes_a_fresh_slot() {
    // Callers that do not prepare: their slot went stale while the token was fetched,
    // so each send takes a new one when it can go out, besides the fetch's own.
    const N: u64 = 16;
    let mock = mock(Behaviour { latency_ms: 20, ..oauth_behaviour(3_600) }).await;
    let gate = Arc::new(CountingGate::default());
    let adapter = Arc::new(gated_adapter("generic_rcs", &mock.handle, OAUTH, gate.clone()));
    let jobs: Vec<SendJob> = (0..N).map(|i| job(&format!("m-{i}"), Channel::Rcs)).collect();
    let outcomes = join_all(jobs.iter().map(|job| adapter.send(job))).await;
    assert!(outcomes.iter().all(|o| o.label() == "accepted"), "{outcomes:?}");
    assert_eq!(mock.handle.oauth_token_requests(), 1);
    assert_eq!(requests_at(&mock.handle), gate.acquired(), "each request had a slot taken right before it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_the_refresh_margin_one_caller_refreshes_and_the_others_go_on() {
    const N: u64 = 16;
    // 5 s tokens: due for refresh 4 s after their request, still sent until 4.75 s. The
    // wide window keeps the test steady on a loaded machine.
    let mock = mock(Behaviour { latency_ms: 100, ..oauth_behaviour(5) }).await;
    let gate = Arc::new(CountingGate::default());
    let adapter = Arc::new(gated_adapter("generic_rcs", &mock.handle, OAUTH, gate.clone()));
    let caller = AtomicU64::new(0);
    let start = tokio::time::Instant::now();
    assert_eq!(worker_send(&adapter, &caller, &job("warm", Channel::Rcs)).await.label(), "accepted");
    let old = mock.handle.received()[0].authorization.clone();
    tokio::time::sleep_until(start + Duration::from_millis(4_200)).await;
    let (requests, acquired) = (requests_at(&mock.handle), gate.acquired());
    caller.store(0, Ordering::SeqCst);

    let jobs: Vec<SendJob> = (0..N).map(|i| job(&format!("m-{i}"), Channel::Rcs)).collect();
    let outcomes = join_all(jobs.iter().map(|job| worker_send(&adapter, &caller, job))).await;
    assert!(outcomes.iter().all(|o| o.label() == "accepted"), "{outcomes:?}");
    assert_eq!(mock.handle.oauth_token_requests(), 2, "one refresh");
    assert_eq!(mock.handle.oauth_tokens_refused(), 0);
    let received = mock.handle.received();
    let with_old = received.iter().skip(1).filter(|r| r.authorization == old).count();
    assert!(with_old >= 1, "the callers that found the refresh under way sent with the still-valid token");
    assert_eq!(gate.acquired() - acquired, 1);
    assert_eq!(requests_at(&mock.handle) - requests, 1 + N);
}

//! OAuth 2.0 client credentials: one token per adapter (so per worker), shared by all
//! of its concurrent sends.
//!
//! - One fetch at a time: callers that find no fresh token queue on one lock and, once
//!   inside, look again before fetching, so N concurrent sends cause one token request.
//! - Refreshed shortly before expiry (the last fifth of its life, at most 60 s early),
//!   with the lifetime counted from *before* the token request so our idea of expiry
//!   is never later than the server's.
//! - After a 401 the caller asks for a replacement of the token it used; if another task
//!   already replaced it, that one is returned without a fetch.
//! - A failed fetch is remembered for a second, so a queue of waiters does not hammer
//!   a failing token endpoint one after another.
//! - Every token request takes a rate slot from the adapter's [`RequestGate`] first:
//!   the provider's cap counts it like any other request. No slot, no request: the
//!   caller gets a transient `rate_store_unavailable` outcome.
//! - [`TokenSource::prepare`] runs before the caller takes its send's slot, so tasks
//!   queued on a fetch wait *before* their slots and do not all fire on stale ones
//!   when it completes. Inside the refresh margin the current token still works:
//!   one caller refreshes and the others go on sending with it, without waiting.

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use reqwest::header::HeaderValue;
use sendfleet_config::Secret;

use super::OAuthClientAuth;
use tokio::time::Instant;

use super::wire::{TokenError, TokenResponse};
use crate::{RequestGate, SendOutcome, http};

/// Lifetime assumed when the token response has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Refresh at most this long before expiry.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// How long a failed fetch is answered from memory.
const FAILURE_HOLD: Duration = Duration::from_secs(1);

/// A bearer token ready for the `Authorization` header.
#[derive(Debug)]
pub struct Token {
    /// `Bearer <token>`, marked sensitive.
    pub header: HeaderValue,
    /// Which fetch produced it (1, 2, …).
    pub generation: u64,
    /// From here on a caller preparing a send fetches a new one.
    refresh_at: Instant,
    /// From here on it is not sent at all. A quarter of the refresh margin before the
    /// expiry we counted (itself never later than the server's), so a request still in
    /// flight does not arrive with a dead token.
    valid_until: Instant,
}

/// Where OAuth settings come from.
pub struct OAuthSettings {
    /// Token endpoint.
    pub token_url: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
    /// Optional scope.
    pub scope: Option<String>,
    /// Client authentication method.
    pub client_auth: OAuthClientAuth,
}

/// The shared token of one adapter.
pub struct TokenSource {
    client: reqwest::Client,
    settings: OAuthSettings,
    gate: Arc<dyn RequestGate>,
    current: RwLock<Option<Arc<Token>>>,
    fetch_lock: tokio::sync::Mutex<Option<(Instant, SendOutcome)>>,
    fetches: AtomicU64,
}

impl TokenSource {
    /// A source that fetches with `client` (the provider's, so its timeouts apply),
    /// each token request within a slot from `gate`.
    pub fn new(client: reqwest::Client, settings: OAuthSettings, gate: Arc<dyn RequestGate>) -> TokenSource {
        TokenSource {
            client,
            settings,
            gate,
            current: RwLock::new(None),
            fetch_lock: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// Token requests made so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn fresh(&self) -> Option<Arc<Token>> {
        let current = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        current.as_ref().filter(|t| Instant::now() < t.refresh_at).cloned()
    }

    /// The current token if it may still be sent, refresh due or not. What a send uses:
    /// a prepared send finds it here without waiting.
    pub fn usable(&self) -> Option<Arc<Token>> {
        let current = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        current.as_ref().filter(|t| Instant::now() < t.valid_until).cloned()
    }

    /// Makes sure [`TokenSource::usable`] has a token for the next send; called before
    /// the caller takes the send's rate slot. Without a usable token it waits for one
    /// (one fetch, the other callers queue behind it). With a token due for refresh
    /// but still valid, the first caller to find the fetch lock free refreshes it and
    /// the rest go on with the current token; a failed refresh is then not an error,
    /// since the token still works (the next try comes after the failure hold).
    pub async fn prepare(&self) -> Result<(), SendOutcome> {
        if self.fresh().is_some() {
            return Ok(());
        }
        if self.usable().is_some() {
            if let Ok(mut last_failure) = self.fetch_lock.try_lock()
                && self.fresh().is_none()
            {
                drop(self.fetch_locked(&mut last_failure).await);
            }
            return Ok(());
        }
        self.token().await.map(drop)
    }

    /// A token that is not about to expire, fetching one if needed.
    pub async fn token(&self) -> Result<Arc<Token>, SendOutcome> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let mut last_failure = self.fetch_lock.lock().await;
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        self.fetch_locked(&mut last_failure).await
    }

    /// A replacement for a token the server refused (401). Fetches only if nobody has
    /// replaced `rejected` yet.
    pub async fn replace(&self, rejected: u64) -> Result<Arc<Token>, SendOutcome> {
        let mut last_failure = self.fetch_lock.lock().await;
        if let Some(token) = self.fresh().filter(|t| t.generation != rejected) {
            return Ok(token);
        }
        // The refused token must not be handed out again.
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        *last_failure = None;
        self.fetch_locked(&mut last_failure).await
    }

    async fn fetch_locked(&self, last_failure: &mut Option<(Instant, SendOutcome)>) -> Result<Arc<Token>, SendOutcome> {
        if let Some((at, outcome)) = last_failure.as_ref()
            && at.elapsed() < FAILURE_HOLD
        {
            return Err(outcome.clone());
        }
        match self.fetch().await {
            Ok(token) => {
                *last_failure = None;
                *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token.clone());
                Ok(token)
            }
            Err(outcome) => {
                *last_failure = Some((Instant::now(), outcome.clone()));
                Err(outcome)
            }
        }
    }

    async fn fetch(&self) -> Result<Arc<Token>, SendOutcome> {
        // The token endpoint counts against the provider's cap like a send (it usually
        // is the provider's host; if not, counting it costs a slot and keeps one rule).
        self.gate.acquire().await.map_err(|e| e.outcome())?;
        let generation = self.fetches.fetch_add(1, Ordering::Relaxed) + 1;
        let settings = &self.settings;
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = settings.scope.as_deref() {
            form.push(("scope", scope));
        }
        let mut request = self.client.post(&settings.token_url).header(reqwest::header::ACCEPT, "application/json");
        match settings.client_auth {
            OAuthClientAuth::Body => {
                form.push(("client_id", settings.client_id.as_str()));
                form.push(("client_secret", settings.client_secret.expose()));
            }
            OAuthClientAuth::Basic => {
                // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
                request = request
                    .basic_auth(form_escape(&settings.client_id), Some(form_escape(settings.client_secret.expose())));
            }
        }
        let request =
            request.header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(form_encode(&form));
        let started = Instant::now();
        let answer = http::execute(request).await.map_err(|outcome| match outcome {
            SendOutcome::Transient { code, reason, retry_after } => {
                SendOutcome::Transient { code, reason: format!("OAuth token request: {reason}"), retry_after }
            }
            other => other,
        })?;
        if !(200..300).contains(&answer.status) {
            return Err(token_failure(answer.status, answer.retry_after, &answer.body));
        }
        let response: TokenResponse = serde_json::from_slice(&answer.body).map_err(|_| SendOutcome::AuthFailure {
            http_status: answer.status,
            reason: "OAuth token endpoint answered without a JSON access_token".into(),
        })?;
        if let Some(kind) = response.token_type.as_deref()
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(SendOutcome::AuthFailure {
                http_status: answer.status,
                reason: format!("OAuth token type {kind:?} is not supported (only Bearer)"),
            });
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {}", response.access_token)).map_err(|_| {
            SendOutcome::AuthFailure {
                http_status: answer.status,
                reason: "OAuth access token contains characters not allowed in an HTTP header".into(),
            }
        })?;
        header.set_sensitive(true);
        let lifetime = lifetime(response.expires_in.as_ref());
        let margin = (lifetime / 5).min(MAX_REFRESH_MARGIN);
        Ok(Arc::new(Token {
            header,
            generation,
            refresh_at: started + lifetime - margin,
            valid_until: started + lifetime - margin / 4,
        }))
    }
}

/// `expires_in` as a number or a numeric string; absent or unreadable → 5 minutes.
fn lifetime(expires_in: Option<&serde_json::Value>) -> Duration {
    let seconds = match expires_in {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    match seconds {
        Some(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s.min(86_400.0 * 365.0)),
        _ => DEFAULT_LIFETIME,
    }
}

/// A token endpoint's refusal: credentials or URL wrong → pause; overload → retry.
/// The reason quotes only the OAuth error code, never a body that might echo secrets.
fn token_failure(status: u16, retry_after: Option<Duration>, body: &[u8]) -> SendOutcome {
    let code = serde_json::from_slice::<TokenError>(body).map(|e| e.error).unwrap_or_default();
    let code: String = code.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
    let reason = if code.is_empty() {
        format!("OAuth token endpoint answered HTTP {status}")
    } else {
        format!("OAuth token endpoint answered HTTP {status} ({code})")
    };
    match status {
        408 | 429 | 500..=599 => http::classify_status(status, retry_after, reason),
        _ => SendOutcome::AuthFailure { http_status: status, reason },
    }
}

/// `application/x-www-form-urlencoded` pairs, through the URL parser reqwest ships.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://form.invalid/").expect("static URL parses");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

/// One form-encoded value.
fn form_escape(value: &str) -> String {
    form_encode(&[("", value)]).split_off(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_read_from_numbers_and_strings() {
        assert_eq!(lifetime(Some(&serde_json::json!(3600))), Duration::from_secs(3600));
        assert_eq!(lifetime(Some(&serde_json::json!("120"))), Duration::from_secs(120));
        assert_eq!(lifetime(Some(&serde_json::json!(0))), DEFAULT_LIFETIME);
        assert_eq!(lifetime(None), DEFAULT_LIFETIME);
    }

    #[test]
    fn token_endpoint_refusals_pause_and_overload_retries() {
        let refused =
            token_failure(401, None, br#"{"error":"invalid_client","error_description":"bad secret s3cr3t"}"#);
        assert_eq!(
            refused,
            SendOutcome::AuthFailure {
                http_status: 401,
                reason: "OAuth token endpoint answered HTTP 401 (invalid_client)".into()
            }
        );
        assert_eq!(token_failure(400, None, b"nonsense").label(), "auth_failure");
        assert_eq!(token_failure(503, None, b"").label(), "transient");
        assert_eq!(token_failure(429, None, b"").label(), "transient");
    }

    #[test]
    fn form_encoding_escapes_reserved_characters() {
        assert_eq!(form_encode(&[("a", "x y&z=1"), ("b", "ü")]), "a=x+y%26z%3D1&b=%C3%BC");
        assert_eq!(form_escape("a:b c"), "a%3Ab+c");
    }
}

//! HTTP plumbing shared by adapters: one pooled client per provider, `Retry-After`,
//! and turning transport failures into outcomes.

use std::time::Duration;

use reqwest::header::HeaderMap;
use sendfleet_config::ProviderConfig;

use crate::{AdapterError, RejectCode, SendOutcome, TransientCode};

/// A client for one provider: keep-alive connections pooled up to the provider's
/// concurrency, so every permit has a warm connection and none idles beyond it.
pub fn client_for(config: &ProviderConfig) -> Result<reqwest::Client, AdapterError> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(config.concurrency as usize)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_keepalive(Duration::from_secs(30))
        .tcp_nodelay(true)
        .timeout(Duration::from_millis(config.request_timeout_ms))
        .connect_timeout(Duration::from_millis(config.request_timeout_ms.min(5_000)))
        .user_agent(concat!("sendfleet/", env!("CARGO_PKG_VERSION")))
        // A provider API answers, it does not redirect; following a 301/302 would turn
        // a send into a GET elsewhere. A 3xx is an answer like any other.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|source| AdapterError::Client { provider: config.id.clone(), source })
}

/// `base_url` of the provider joined with `path`, parsed once for every request.
pub fn endpoint_url(config: &ProviderConfig, path: &str) -> Result<reqwest::Url, AdapterError> {
    parse_url(config, &format!("{}{path}", config.base_url.trim_end_matches('/')))
}

/// A configured URL, parsed; an error names the provider.
pub fn parse_url(config: &ProviderConfig, url: &str) -> Result<reqwest::Url, AdapterError> {
    reqwest::Url::parse(url)
        .map_err(|source| AdapterError::InvalidUrl { provider: config.id.clone(), reason: source.to_string() })
}

/// A provider's answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After`, if present and parseable.
    pub retry_after: Option<Duration>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Sends a request and reads the answer; a transport failure becomes the transient
/// outcome to return (timeouts and connection errors leave the outcome unknown, so the
/// job is retried with the same message id).
pub async fn execute(request: reqwest::RequestBuilder) -> Result<Answer, SendOutcome> {
    let response = request.send().await.map_err(transport_failure)?;
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await.map_err(transport_failure)?.to_vec();
    Ok(Answer { status, retry_after, body })
}

fn transport_failure(err: reqwest::Error) -> SendOutcome {
    let code = if err.is_timeout() { TransientCode::Timeout } else { TransientCode::Network };
    // reqwest's Display includes the URL, which for some vendors carries a token;
    // keep only the kind of failure.
    let reason = if err.is_timeout() {
        "request timed out".to_owned()
    } else if err.is_connect() {
        "connection failed".to_owned()
    } else {
        "transport error".to_owned()
    };
    SendOutcome::Transient { code, reason, retry_after: None }
}

/// Parses `Retry-After` in seconds (the HTTP-date form is rare for APIs; treated as absent).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)))
}

/// The generic HTTP-status classification, used when the body says nothing more
/// specific: 2xx accepted; 408/429/5xx transient; 401/403/404 auth/config; other 4xx
/// rejected.
pub fn classify_status(status: u16, retry_after: Option<Duration>, reason: String) -> SendOutcome {
    match status {
        200..=299 => SendOutcome::Accepted { status: None },
        401 | 403 | 404 => SendOutcome::AuthFailure { http_status: status, reason },
        408 => SendOutcome::Transient { code: TransientCode::Timeout, reason, retry_after },
        429 => SendOutcome::Transient { code: TransientCode::Throttled, reason, retry_after },
        500..=599 => SendOutcome::Transient { code: TransientCode::ServerError, reason, retry_after },
        _ => SendOutcome::Rejected { code: RejectCode::Http4xx, reason, status: None, error: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_are_read() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn statuses_map_to_the_right_outcome() {
        let label = |s| classify_status(s, None, String::new()).label();
        assert_eq!(label(200), "accepted");
        assert_eq!(label(400), "rejected");
        assert_eq!(label(401), "auth_failure");
        assert_eq!(label(403), "auth_failure");
        assert_eq!(label(404), "auth_failure");
        assert_eq!(label(408), "transient");
        assert_eq!(label(429), "transient");
        assert_eq!(label(503), "transient");
        assert_eq!(label(422), "rejected");
    }
}

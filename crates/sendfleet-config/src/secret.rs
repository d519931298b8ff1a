//! Values that must never reach a log line.

use serde::{Deserialize, Serialize};

/// A secret read from the environment. `Debug` and `Display` print `[redacted]`; the
/// value is only reachable through [`Secret::expose`], which makes every use greppable.
#[derive(Clone, Default)]
pub struct Secret(secrecy::SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(secrecy::SecretString::from(value.into()))
    }

    /// The secret itself. Call it only where the value goes on the wire.
    pub fn expose(&self) -> &str {
        use secrecy::ExposeSecret;
        self.0.expose_secret()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A URL that may carry credentials (`amqp://user:pass@host`). `Debug`/`Display` show
/// it parsed, password replaced by `***`; [`RedactedUrl::expose`] gives the full URL for
/// connecting.
///
/// Redaction parses the URL the way its client will (lapin's parser for `amqp(s)://`,
/// the URL standard Redis uses for `redis(s)://` and `unix://`) instead of cutting the
/// text at the first `/`: an unencoded reserved character in the password moves the
/// authority's end, so no cut is safe. What does not parse, or parses with an `@` left
/// after the host (a sign the password was split), is never echoed at all.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RedactedUrl(String);

/// Schemes whose name may be shown even when the rest of the URL is hidden.
const KNOWN_SCHEMES: [&str; 9] =
    ["amqp", "amqps", "redis", "rediss", "valkey", "valkeys", "unix", "redis+unix", "valkey+unix"];

/// Why a broker or Redis URL cannot be used. The text never quotes the URL: a password
/// with an unencoded reserved character can end up in any part of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all; the parser's reason is a fixed phrase (`invalid port number`).
    #[error("does not parse as a URL ({0})")]
    Syntax(url::ParseError),
    /// `scheme:rest` without `//`: there is no host to connect to.
    #[error("has no //host part")]
    NoAuthority,
    /// An `@` in the path, query or fragment: an unencoded `/`, `?` or `#` in the user
    /// name or password ended the authority early, and the rest would be read as a
    /// path or port.
    #[error(
        "has an '@' after the host: the user name or password holds an unencoded '/', '?' or '#' \
         (or the path an '@', which must be %40)"
    )]
    StrayAt,
    /// lapin would refuse it (percent-encoding that is not UTF-8, a bad query parameter).
    #[error(
        "is not an AMQP URI lapin accepts (check the percent-encoding and the query parameters heartbeat, \
         frame_max, channel_max, connection_timeout and auth_mechanism)"
    )]
    Amqp,
    /// A TCP URL without a host name.
    #[error("has no host")]
    NoHost,
    /// A Redis URL whose path is not a database number.
    #[error("has a path that is not a Redis database number (redis://host:6379/0)")]
    RedisDatabase,
    /// A Unix-socket URL without a socket path.
    #[error("has no socket path (unix:///run/redis.sock)")]
    NoSocketPath,
}

/// The parts of a URL that may be shown.
struct Shown {
    scheme: String,
    /// As written (percent-encoded): decoding could turn it back into something ambiguous.
    user: String,
    has_password: bool,
    host: String,
    port: Option<u16>,
    path: String,
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://", self.scheme)?;
        if !self.user.is_empty() || self.has_password {
            f.write_str(&self.user)?;
            if self.has_password {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        // The query is left out: a Unix-socket Redis URL carries its password there.
        f.write_str(&self.path)
    }
}

/// Parses `raw` as its scheme's client would, keeping only what may be shown.
fn parse(raw: &str) -> Result<Shown, UrlError> {
    let url = url::Url::parse(raw).map_err(UrlError::Syntax)?;
    if url.cannot_be_a_base() {
        return Err(UrlError::NoAuthority);
    }
    let has_at = |part: Option<&str>| part.is_some_and(|p| p.contains('@'));
    if has_at(Some(url.path())) || has_at(url.query()) || has_at(url.fragment()) {
        return Err(UrlError::StrayAt);
    }
    let host = url.host_str().unwrap_or_default().to_owned();
    let default_port = match url.scheme() {
        "amqp" | "amqps" => {
            // lapin parses the text itself; what it refuses must be refused here too.
            let uri = raw.parse::<amq_protocol_uri::AMQPUri>().map_err(|_| UrlError::Amqp)?;
            Some(uri.authority.port)
        }
        "redis" | "rediss" | "valkey" | "valkeys" => {
            if host.is_empty() {
                return Err(UrlError::NoHost);
            }
            let database = url.path().trim_matches('/');
            if !database.is_empty() && database.parse::<i64>().is_err() {
                return Err(UrlError::RedisDatabase);
            }
            Some(6379)
        }
        "unix" | "redis+unix" | "valkey+unix" => {
            if url.path().trim_matches('/').is_empty() {
                return Err(UrlError::NoSocketPath);
            }
            None
        }
        _ => None,
    };
    Ok(Shown {
        scheme: url.scheme().to_owned(),
        user: url.username().to_owned(),
        has_password: url.password().is_some(),
        host,
        port: url.port().or(default_port),
        path: url.path().to_owned(),
    })
}

impl RedactedUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> RedactedUrl {
        RedactedUrl(url.into())
    }

    /// The full URL, password included.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the URL parses as its scheme's client will read it (lapin for
    /// `amqp(s)://`, the redis crate for `redis(s)://` and `unix://`). Config
    /// validation refuses a URL that fails; the error never quotes it.
    pub fn check(&self) -> Result<(), UrlError> {
        parse(&self.0).map(drop)
    }

    /// The URL as it may be logged: scheme, user, host, port and path, the password
    /// replaced by `***`, the query left out. A URL that does not parse is hidden whole
    /// (`amqp://<unparseable URL redacted>`).
    pub fn redacted(&self) -> String {
        match parse(&self.0) {
            Ok(shown) => shown.to_string(),
            Err(_) => {
                let scheme =
                    KNOWN_SCHEMES.iter().find(|s| self.0.strip_prefix(**s).is_some_and(|rest| rest.starts_with("://")));
                match scheme {
                    Some(scheme) => format!("{scheme}://<unparseable URL redacted>"),
                    None => "<unparseable URL redacted>".to_owned(),
                }
            }
        }
    }
}

impl std::fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl std::fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `broker.url`: one AMQP URL, or several (the nodes of a cluster). Services connect to
/// the first that answers and, after losing a connection, try the next one first. Each
/// is redacted like a [`RedactedUrl`] wherever it is shown.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrls(Vec<RedactedUrl>);

impl BrokerUrls {
    /// One URL.
    pub fn new(url: impl Into<String>) -> BrokerUrls {
        BrokerUrls(vec![RedactedUrl::new(url)])
    }

    /// Several URLs (the nodes of a cluster), tried in this order.
    pub fn list<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> BrokerUrls {
        BrokerUrls(urls.into_iter().map(RedactedUrl::new).collect())
    }

    /// The first URL, password included (what single-node tools use).
    pub fn expose(&self) -> &str {
        self.0.first().map_or("", RedactedUrl::expose)
    }

    /// Every URL, in the configured order.
    pub fn all(&self) -> &[RedactedUrl] {
        &self.0
    }
}

impl From<RedactedUrl> for BrokerUrls {
    fn from(url: RedactedUrl) -> BrokerUrls {
        BrokerUrls(vec![url])
    }
}

impl std::fmt::Debug for BrokerUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [one] => one.fmt(f),
            many => f.debug_list().entries(many.iter()).finish(),
        }
    }
}

impl std::fmt::Display for BrokerUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<String> = self.0.iter().map(RedactedUrl::redacted).collect();
        f.write_str(&shown.join(", "))
    }
}

impl serde::Serialize for BrokerUrls {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(serializer),
            many => many.serialize(serializer),
        }
    }
}

impl<'de> serde::Deserialize<'de> for BrokerUrls {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<BrokerUrls, D::Error> {
        struct Urls;
        impl<'de> serde::de::Visitor<'de> for Urls {
            type Value = BrokerUrls;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a URL or an array of URLs")
            }
            fn visit_str<E: serde::de::Error>(self, url: &str) -> Result<BrokerUrls, E> {
                Ok(BrokerUrls::new(url))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<BrokerUrls, A::Error> {
                let mut urls = Vec::new();
                while let Some(url) = seq.next_element::<String>()? {
                    urls.push(RedactedUrl::new(url));
                }
                if urls.is_empty() {
                    return Err(serde::de::Error::invalid_length(0, &"at least one URL"));
                }
                Ok(BrokerUrls(urls))
            }
        }
        deserializer.deserialize_any(Urls)
    }
}

//! Broker and Redis URLs whose user name or password holds reserved characters: the
//! password never reaches Display, Debug or an error, whether it is percent-encoded (and
//! so usable) or not (and so refused at load, without echoing the URL).

use sendfleet_config::{Config, ConfigError, ConfigSource, RedactedUrl};

/// The characters that end or split a URL's authority when left unencoded.
const RESERVED: [char; 6] = ['/', '@', ':', '?', '#', '%'];

/// The two halves of every test password: neither may appear in any output.
const LEFT: &str = "Zq8k";
const RIGHT: &str = "Wx3v";

/// A password holding `c` between two recognisable halves.
fn password(c: char) -> String {
    format!("{LEFT}{c}{RIGHT}")
}

/// Percent-encodes every byte that is not unreserved (RFC 3986 §2.3).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Fails if `text` shows the password, in either half, raw or encoded.
fn assert_hidden(text: &str, what: &str) {
    assert!(!text.contains(LEFT) && !text.contains(RIGHT), "{what} shows the password: {text}");
}

/// Loads the default config with `key` overridden from the environment, as
/// `SENDFLEET_BROKER__URL=…` would.
fn load_with(key: &str, url: &str) -> Result<Config, ConfigError> {
    Config::from_source(ConfigSource {
        file: None,
        toml: String::new(),
        env_overrides: vec![(key.to_owned(), url.to_owned())],
        secret_lookup: &|_| None,
        vendors: &sendfleet_providers::VENDORS,
    })
    .map(|loaded| loaded.config)
}

/// Display, Debug, and the config error (Display and Debug) if loading fails.
fn every_output(key: &str, url: &str) -> (Vec<String>, Result<Config, ConfigError>) {
    let wrapped = RedactedUrl::new(url);
    let mut outputs = vec![wrapped.to_string(), format!("{wrapped:?}"), wrapped.redacted()];
    let loaded = load_with(key, url);
    match &loaded {
        Ok(config) => {
            outputs.push(format!("{config:?}"));
        }
        Err(err) => {
            outputs.push(err.to_string());
            outputs.push(format!("{err:?}"));
        }
    }
    (outputs, loaded)
}

#[test]
fn the_reported_broker_url_is_refused_without_echoing_it() {
    let (outputs, loaded) = every_output("SENDFLEET_BROKER__URL", "amqp://guest:s3cr/et@host/%2f");
    for output in &outputs {
        assert!(!output.contains("s3cr") && !output.contains("et@host"), "secret in: {output}");
    }
    let Err(ConfigError::Invalid(errors)) = loaded else { panic!("an unencoded '/' must be refused: {loaded:?}") };
    let error = errors.iter().find(|e| e.field == "broker.url").expect("broker.url is named");
    assert!(error.message.contains("percent-encode"), "{error}");
    assert!(error.message.contains("user name") && error.message.contains("password"), "{error}");
}

#[test]
fn a_percent_encoded_password_works_and_is_redacted() {
    let url = "amqp://guest:s3cr%2Fet@host/%2f";
    let config = load_with("SENDFLEET_BROKER__URL", url).unwrap();
    assert_eq!(config.broker.url.expose(), url, "the URL reaches the client unchanged");
    assert_eq!(config.broker.url.to_string(), "amqp://guest:***@host:5672/%2f");
    assert_eq!(format!("{:?}", config.broker.url), "\"amqp://guest:***@host:5672/%2f\"");
    // lapin's own parser reads the password the operator meant.
    let uri: amq_protocol_uri::AMQPUri = url.parse().unwrap();
    assert_eq!(uri.authority.userinfo.password, "s3cr/et");
}

#[test]
fn encoded_reserved_characters_in_user_and_password_are_accepted_and_hidden() {
    let user = "ops/a@b:c?d#e%f";
    let secret = format!("{LEFT}/@:?#%{RIGHT}");
    for (key, url, shown) in [
        (
            "SENDFLEET_BROKER__URL",
            format!("amqp://{}:{}@rabbit.internal:5673/prod", encode(user), encode(&secret)),
            format!("amqp://{}:***@rabbit.internal:5673/prod", encode(user)),
        ),
        (
            "SENDFLEET_REDIS__URL",
            format!("redis://{}:{}@redis.internal/2", encode(user), encode(&secret)),
            format!("redis://{}:***@redis.internal:6379/2", encode(user)),
        ),
    ] {
        let (outputs, loaded) = every_output(key, &url);
        for output in &outputs {
            assert_hidden(output, &url);
        }
        let config = loaded.unwrap_or_else(|e| panic!("{key}: an encoded URL must load: {e}"));
        let field = if key.contains("BROKER") { config.broker.url.to_string() } else { config.redis.url.to_string() };
        assert_eq!(field, shown);
    }
    let url = format!("amqp://{}:{}@rabbit/%2f", encode(user), encode(&secret));
    let uri: amq_protocol_uri::AMQPUri = url.parse().unwrap();
    assert_eq!((uri.authority.userinfo.username.as_str(), uri.authority.userinfo.password.as_str()), (user, &*secret));
}

#[test]
fn unencoded_reserved_characters_never_show_the_password() {
    for c in RESERVED {
        for (key, field, url) in [
            ("SENDFLEET_BROKER__URL", "broker.url", format!("amqp://guest:{}@rabbit:5672/%2f", password(c))),
            ("SENDFLEET_BROKER__URL", "broker.url", format!("amqp://gu{c}est:{LEFT}{RIGHT}@rabbit/%2f")),
            ("SENDFLEET_REDIS__URL", "redis.url", format!("redis://:{}@redis:6379/0", password(c))),
            ("SENDFLEET_REDIS__URL", "redis.url", format!("redis://app{c}user:{LEFT}{RIGHT}@redis/0")),
            // The port-shaped password: the part before the reserved character reads as a port.
            ("SENDFLEET_BROKER__URL", "broker.url", format!("amqp://guest:5672{c}{LEFT}{RIGHT}@rabbit/%2f")),
            ("SENDFLEET_REDIS__URL", "redis.url", format!("redis://:6379{c}{LEFT}{RIGHT}@redis/0")),
        ] {
            let (outputs, loaded) = every_output(key, &url);
            for output in &outputs {
                assert_hidden(output, &url);
            }
            if let Err(err) = &loaded {
                let ConfigError::Invalid(errors) = err else { panic!("{url}: {err}") };
                assert!(
                    errors.iter().any(|e| e.field == field && e.message.contains("percent-encode")),
                    "{url}: {err}"
                );
            }
        }
    }
}

#[test]
fn a_url_that_does_not_parse_is_redacted_whole() {
    for url in ["amqp://guest:Zq8kWx3v@rabbit:notaport/%2f", "amqp://[Zq8kWx3v/", "amqp:guest:Zq8kWx3v@rabbit"] {
        let wrapped = RedactedUrl::new(url);
        assert_hidden(&wrapped.to_string(), url);
        assert_hidden(&format!("{wrapped:?}"), url);
        let err = load_with("SENDFLEET_BROKER__URL", url).unwrap_err();
        assert_hidden(&err.to_string(), url);
        assert!(err.to_string().contains("broker.url"), "{err}");
    }
    assert_eq!(
        RedactedUrl::new("amqp://guest:Zq8kWx3v@rabbit:notaport/").to_string(),
        "amqp://<unparseable URL redacted>"
    );
    assert_eq!(RedactedUrl::new("Zq8kWx3v").to_string(), "<unparseable URL redacted>");
}

#[test]
fn urls_without_credentials_show_as_written() {
    assert_eq!(RedactedUrl::new("redis://127.0.0.1:6379").to_string(), "redis://127.0.0.1:6379");
    assert_eq!(RedactedUrl::new("amqps://rabbit.example/%2f").to_string(), "amqps://rabbit.example:5671/%2f");
    // Query parameters are not shown: a Unix-socket Redis URL carries its password there.
    assert_eq!(RedactedUrl::new("unix:///run/redis.sock?db=1&pass=Zq8kWx3v").to_string(), "unix:///run/redis.sock");
    Config::from_source(ConfigSource {
        file: None,
        toml: String::new(),
        env_overrides: vec![("SENDFLEET_REDIS__URL".into(), "unix:///run/redis.sock?db=1&pass=Zq8kWx3v".into())],
        secret_lookup: &|_| None,
        vendors: &sendfleet_providers::VENDORS,
    })
    .unwrap();
}

use super::*;

const GOOD: &str = r#"
[broker]
prefix = "t1"

[[providers]]
id = "ib-sms"
kind = "infobip_sms"
base_url = "https://abc.api.infobip.com"
api_key_env = "IB_KEY"
sender_ids = ["ACME"]
default_for_channel = true
rate_per_second = 4600
concurrency = 200
callback_token_env = "CB_TOKEN"
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "IB_KEY" => Some("super-secret-api-key".into()),
        "CB_TOKEN" => Some("0123456789abcdef0123".into()),
        _ => None,
    }
}

#[test]
fn a_good_file_loads_with_secrets_resolved() {
    let config = Config::from_toml(GOOD, &env).unwrap();
    let provider = config.provider("ib-sms").unwrap();
    assert_eq!(provider.api_key.expose(), "super-secret-api-key");
    assert_eq!(provider.effective_burst(), 46);
    assert_eq!(config.broker.prefix, "t1");
    assert_eq!(config.default_provider(sendfleet_protocol::Channel::Sms).map(|p| p.id.as_str()), Some("ib-sms"));
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let mut config = Config::from_toml(GOOD, &env).unwrap();
    config.broker.url = RedactedUrl::new("amqp://user:hunter2@rabbit:5672/%2f");
    let debug = format!("{config:?}");
    assert!(!debug.contains("super-secret-api-key"), "{debug}");
    assert!(!debug.contains("0123456789abcdef0123"));
    assert!(!debug.contains("hunter2"));
    assert!(debug.contains("amqp://user:***@rabbit:5672/%2f"));
}

#[test]
fn every_bad_field_is_named_at_once() {
    let bad = GOOD
        .replace("rate_per_second = 4600", "rate_per_second = 5000")
        .replace("concurrency = 200", "concurrency = 0")
        .replace("api_key_env = \"IB_KEY\"", "api_key_env = \"MISSING_KEY\"");
    let err = Config::from_toml(&bad, &env).unwrap_err();
    let ConfigError::Invalid(errors) = &err else { panic!("{err}") };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["providers[0].rate_per_second", "providers[0].concurrency", "providers[0].api_key_env"]);
    assert!(err.to_string().contains("MISSING_KEY is not set"));
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key() {
    let err = Config::from_toml(&GOOD.replace("sender_ids", "sender_idz"), &env).unwrap_err();
    assert!(err.to_string().contains("sender_idz"), "{err}");
    let err = Config::from_toml(&GOOD.replace("4600", "\"fast\""), &env).unwrap_err();
    assert!(err.to_string().contains("rate_per_second"), "{err}");
}

#[test]
fn environment_overrides_reach_nested_keys() {
    let config = Config::from_source(ConfigSource {
        toml: GOOD.into(),
        env_overrides: vec![
            ("SENDFLEET_BROKER__PREFIX".into(), "from-env".into()),
            ("SENDFLEET_WORKER__SHUTDOWN_GRACE_SECONDS".into(), "7".into()),
            ("SENDFLEET_BROKER__QUEUE_TYPE".into(), "quorum".into()),
            ("UNRELATED".into(), "x".into()),
        ],
        secret_lookup: &env,
    })
    .unwrap();
    assert_eq!(config.broker.prefix, "from-env");
    assert_eq!(config.worker.shutdown_grace_seconds, 7);
    assert_eq!(config.broker.queue_type, QueueType::Quorum);
}

#[test]
fn double_click_tracking_is_refused() {
    let toml = format!("{GOOD}own_click_tracking = true\nclick_tracking = {{ enabled = true }}\n");
    let err = Config::from_toml(&toml, &env).unwrap_err();
    assert!(err.to_string().contains("providers[0].click_tracking"), "{err}");
}

#[test]
fn two_defaults_for_one_channel_are_refused() {
    let second = GOOD.replace("[broker]\nprefix = \"t1\"\n", "").replace("ib-sms", "ib-sms-2");
    let err = Config::from_toml(&format!("{GOOD}{second}"), &env).unwrap_err();
    assert!(err.to_string().contains("providers[1].default_for_channel"), "{err}");
}

#[test]
fn the_shipped_example_is_valid() {
    let example = include_str!("../../../config/sendfleet.example.toml");
    let anything = |_: &str| Some("example-secret-value-0123456789".to_owned());
    Config::from_toml(example, &anything).unwrap();
}

const GENERIC: &str = r#"
[[providers]]
id = "gen-rcs"
kind = "generic_rcs"
sender_ids = ["AcmeAgent"]

[providers.generic]
endpoint = "https://rcs.vendor.example/v1/send"
method = "PUT"
auth = { type = "oauth2", token_url = "https://rcs.vendor.example/oauth/token", client_id = "acme", client_secret_env = "IB_KEY", client_auth = "basic" }
headers = { "X-Account" = "acme" }
secret_headers = { "X-Api-Key" = "CB_TOKEN" }
body_parameters = { account = "acme", campaign = "{{metadata.campaign}}", ref = "sf-{{ message_id }}" }
"#;

#[test]
fn a_generic_provider_loads_with_its_secrets_resolved() {
    let config = Config::from_toml(GENERIC, &env).unwrap();
    let generic = config.provider("gen-rcs").unwrap().generic.as_ref().unwrap();
    assert_eq!(generic.method, "PUT");
    assert_eq!(generic.secret_header_values["X-Api-Key"].expose(), "0123456789abcdef0123");
    let GenericAuthConfig::Oauth2 { client_secret, client_auth, .. } = &generic.auth else { panic!("oauth2") };
    assert_eq!(client_secret.expose(), "super-secret-api-key");
    assert_eq!(*client_auth, OAuthClientAuth::Basic);
    let debug = format!("{config:?}");
    assert!(!debug.contains("super-secret-api-key") && !debug.contains("0123456789abcdef0123"), "{debug}");
}

#[test]
fn bad_generic_headers_and_parameters_are_named() {
    let bad = GENERIC
        .replace("method = \"PUT\"", "method = \"PATCH\"")
        .replace(
            "\"X-Account\" = \"acme\"",
            "\"X Account\" = \"acme\", \"Authorization\" = \"Bearer x\", \"Content-Type\" = \"text/plain\"",
        )
        .replace("\"CB_TOKEN\"", "\"NOT_SET\"")
        .replace("account = \"acme\"", "message_id = \"x\", bad = \"{{recipient}}\"");
    let err = Config::from_toml(&bad, &env).unwrap_err();
    let ConfigError::Invalid(errors) = &err else { panic!("{err}") };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    for expected in [
        "providers[0].generic.method",
        "providers[0].generic.headers.X Account",
        "providers[0].generic.headers.Authorization",
        "providers[0].generic.headers.Content-Type",
        "providers[0].generic.secret_headers.X-Api-Key",
        "providers[0].generic.body_parameters.message_id",
        "providers[0].generic.body_parameters.bad",
    ] {
        assert!(fields.contains(&expected), "{expected} missing from {fields:?}");
    }
    let text = err.to_string();
    assert!(text.contains("unknown field {{recipient}}"), "{text}");
    assert!(text.contains("conflicts with generic.auth"), "{text}");
}

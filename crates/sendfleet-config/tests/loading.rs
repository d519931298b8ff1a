//! Loading whole configs: every bad field named at once, secrets resolved, each vendor's
//! section checked by its module through the registry.

use sendfleet_config::*;
use sendfleet_providers::{
    VENDORS,
    generic::{GenericAuthConfig, GenericConfig, OAuthClientAuth},
    twilio::TwilioConfig,
};

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
    let config = Config::from_toml(GOOD, &env, &VENDORS).unwrap();
    let provider = config.provider("ib-sms").unwrap();
    assert_eq!(provider.api_key.expose(), "super-secret-api-key");
    assert_eq!(provider.effective_burst(), 46);
    assert_eq!(config.broker.prefix, "t1");
    assert_eq!(config.default_provider(sendfleet_protocol::Channel::Sms).map(|p| p.id.as_str()), Some("ib-sms"));
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let mut config = Config::from_toml(GOOD, &env, &VENDORS).unwrap();
    config.broker.url = BrokerUrls::new("amqp://user:hunter2@rabbit:5672/%2f");
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
    let err = Config::from_toml(&bad, &env, &VENDORS).unwrap_err();
    let ConfigError::Invalid(errors) = &err else { panic!("{err}") };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["providers[0].rate_per_second", "providers[0].concurrency", "providers[0].api_key_env"]);
    assert!(err.to_string().contains("MISSING_KEY is not set"));
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key() {
    let err = Config::from_toml(&GOOD.replace("sender_ids", "sender_idz"), &env, &VENDORS).unwrap_err();
    assert!(err.to_string().contains("sender_idz"), "{err}");
    let err = Config::from_toml(&GOOD.replace("4600", "\"fast\""), &env, &VENDORS).unwrap_err();
    assert!(err.to_string().contains("rate_per_second"), "{err}");
}

#[test]
fn environment_overrides_reach_nested_keys() {
    let config = Config::from_source(ConfigSource {
        file: None,
        toml: GOOD.into(),
        env_overrides: vec![
            ("SENDFLEET_BROKER__PREFIX".into(), "from-env".into()),
            ("SENDFLEET_WORKER__SHUTDOWN_GRACE_SECONDS".into(), "7".into()),
            ("SENDFLEET_BROKER__QUEUE_TYPE".into(), "quorum".into()),
            ("UNRELATED".into(), "x".into()),
        ],
        secret_lookup: &env,
        vendors: &VENDORS,
    })
    .unwrap()
    .config;
    assert_eq!(config.broker.prefix, "from-env");
    assert_eq!(config.worker.shutdown_grace_seconds, 7);
    assert_eq!(config.broker.queue_type, QueueType::Quorum);
}

#[test]
fn double_click_tracking_is_refused() {
    let toml = format!("{GOOD}own_click_tracking = true\nclick_tracking = {{ enabled = true }}\n");
    let err = Config::from_toml(&toml, &env, &VENDORS).unwrap_err();
    assert!(err.to_string().contains("providers[0].click_tracking"), "{err}");
}

#[test]
fn two_defaults_for_one_channel_are_refused() {
    let second = GOOD.replace("[broker]\nprefix = \"t1\"\n", "").replace("ib-sms", "ib-sms-2");
    let err = Config::from_toml(&format!("{GOOD}{second}"), &env, &VENDORS).unwrap_err();
    assert!(err.to_string().contains("providers[1].default_for_channel"), "{err}");
}

#[test]
fn the_shipped_example_is_valid() {
    let example = include_str!("../../../config/sendfleet.example.toml");
    let anything = |_: &str| Some("example-secret-value-0123456789".to_owned());
    Config::from_toml(example, &anything, &VENDORS).unwrap();
}

#[test]
fn broker_url_may_list_the_nodes_of_a_cluster_and_each_is_checked() {
    let nodes = GOOD.replace(
        "[broker]\nprefix = \"t1\"\n",
        "[broker]\nprefix = \"t1\"\nurl = [\"amqp://u:secret-pw@rabbit-0:5672/%2f\", \"amqp://u:secret-pw@rabbit-1:5672/%2f\"]\n",
    );
    let config = Config::from_toml(&nodes, &env, &VENDORS).unwrap();
    assert_eq!(config.broker.url.all().len(), 2);
    assert_eq!(config.broker.url.expose(), "amqp://u:secret-pw@rabbit-0:5672/%2f");
    let shown = format!("{} {:?}", config.broker.url, config.broker.url);
    assert!(shown.contains("rabbit-1") && !shown.contains("secret-pw"), "{shown}");
    let bad = nodes.replace("amqp://u:secret-pw@rabbit-1", "http://u:secret-pw@rabbit-1");
    let text = Config::from_toml(&bad, &env, &VENDORS).unwrap_err().to_string();
    assert!(text.contains("broker.url[1]") && !text.contains("secret-pw"), "{text}");
    let empty = GOOD.replace("[broker]\nprefix = \"t1\"\n", "[broker]\nprefix = \"t1\"\nurl = []\n");
    assert!(Config::from_toml(&empty, &env, &VENDORS).unwrap_err().to_string().contains("broker.url"));
}

#[test]
fn jobs_per_worker_is_a_per_process_knob_defaulting_to_twice_the_concurrency() {
    let config = Config::from_toml(&format!("{GOOD}jobs_per_worker = 10\n"), &env, &VENDORS).unwrap();
    assert_eq!(config.providers[0].effective_jobs_per_worker(), 10);
    let default = Config::from_toml(GOOD, &env, &VENDORS).unwrap();
    assert_eq!(default.providers[0].effective_jobs_per_worker(), default.providers[0].concurrency * 2);
    let text = Config::from_toml(&format!("{GOOD}jobs_per_worker = 0\n"), &env, &VENDORS).unwrap_err().to_string();
    assert!(text.contains("providers[0].jobs_per_worker"), "{text}");
}

#[test]
fn the_commented_twilio_example_is_valid_once_uncommented() {
    let example = include_str!("../../../config/sendfleet.example.toml");
    let start = example.find("# [[providers]]\n# id = \"twilio-rcs\"").expect("the Twilio example");
    let twilio: String = example[start..]
        .lines()
        .filter(|line| !line.starts_with("# #") && *line != "#")
        .map(|line| line.strip_prefix("# ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    let anything = |_: &str| Some("example-secret-value-0123456789".to_owned());
    let config = Config::from_toml(&twilio, &anything, &VENDORS).unwrap();
    let provider = &config.providers[0];
    assert_eq!((provider.kind.as_str(), provider.base_url.as_str()), ("twilio_rcs", "https://api.twilio.com"));
    let twilio = provider.vendor.get::<TwilioConfig>().unwrap();
    assert_eq!(twilio.auth_token.expose(), "example-secret-value-0123456789");
}

#[test]
fn twilio_settings_are_checked_each_by_its_key_path() {
    let toml = r#"
[[providers]]
id = "tw"
kind = "twilio_rcs"
sender_ids = ["agent"]
api_key_env = "IB_KEY"
fallback_mode = "provider"
capability_check = true
[providers.twilio]
account_sid = "AC123"
auth_token_env = "NOT_SET"
api_key_sid = "SK0123456789abcdef0123456789abcdef"
"#;
    let text = Config::from_toml(toml, &env, &VENDORS).unwrap_err().to_string();
    for key in [
        "providers[0].api_key_env",
        "providers[0].capability_check",
        "providers[0].twilio.messaging_service_sid",
        "providers[0].twilio.account_sid",
        "providers[0].twilio.auth_token_env",
        "providers[0].twilio.api_key_secret_env",
    ] {
        assert!(text.contains(key), "{key} missing from: {text}");
    }
    let missing = "[[providers]]\nid = \"tw\"\nkind = \"twilio_sms\"\nsender_ids = [\"+14155550100\"]\n";
    let text = Config::from_toml(missing, &env, &VENDORS).unwrap_err().to_string();
    assert!(text.contains("providers[0].twilio: required"), "{text}");
    let misplaced = format!(
        "{GOOD}[providers.twilio]\naccount_sid = \"AC0123456789abcdef0123456789abcdef\"\nauth_token_env = \"IB_KEY\"\n"
    );
    let text = Config::from_toml(&misplaced, &env, &VENDORS).unwrap_err().to_string();
    assert!(text.contains("providers[0].twilio: not a setting of infobip_sms providers"), "{text}");
}

#[test]
fn provider_side_fallback_is_only_for_infobip_rcs_kinds() {
    let toml = format!("{GOOD}fallback_mode = \"provider\"\n");
    let err = Config::from_toml(&toml, &env, &VENDORS).unwrap_err();
    assert!(err.to_string().contains("providers[0].fallback_mode"), "{err}");
    let rcs = GOOD.replace("infobip_sms", "infobip_rcs");
    let config = Config::from_toml(&format!("{rcs}fallback_mode = \"provider\"\n"), &env, &VENDORS).unwrap();
    assert_eq!(config.providers[0].fallback_mode, FallbackMode::Provider);
    assert_eq!(Config::from_toml(GOOD, &env, &VENDORS).unwrap().providers[0].fallback_mode, FallbackMode::Fleet);
}

#[test]
fn a_callback_token_must_be_url_safe_and_is_not_echoed() {
    let lookup = |name: &str| match name {
        "CB_TOKEN" => Some("0123456789abcdef/0123".into()),
        other => env(other),
    };
    let err = Config::from_toml(GOOD, &lookup, &VENDORS).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("providers[0].callback_token_env") && text.contains("URL path"), "{text}");
    assert!(!text.contains("0123456789abcdef/0123"), "the token is a secret: {text}");
}

const RCS: &str = r#"
[[providers]]
id = "ib-rcs"
kind = "infobip_rcs"
base_url = "https://abc.api.infobip.com"
api_key_env = "IB_KEY"
sender_ids = ["Agent"]
"#;

fn field_errors(toml: &str) -> Vec<String> {
    match Config::from_toml(toml, &env, &VENDORS) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(errors)) => errors.iter().map(|e| e.field.clone()).collect(),
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn rate_and_concurrency_above_the_cap_name_the_field() {
    let toml = GOOD
        .replace("rate_per_second = 4600", "rate_per_second = 4601")
        .replace("concurrency = 200", "concurrency = 4601");
    assert_eq!(field_errors(&toml), ["providers[0].rate_per_second", "providers[0].concurrency"]);
    let err = Config::from_toml(&toml, &env, &VENDORS).unwrap_err().to_string();
    assert!(err.contains("4600"), "{err}");
}

#[test]
fn sms_fallback_without_a_sender_id_is_refused() {
    let toml = format!("{GOOD}{RCS}sms_fallback = {{ enabled = true }}\n");
    assert_eq!(field_errors(&toml), ["providers[1].sms_fallback.sender_id"]);
    let toml = format!("{GOOD}{RCS}sms_fallback = {{ enabled = true, sender_id = \" \" }}\n");
    assert_eq!(field_errors(&toml), ["providers[1].sms_fallback.sender_id"]);
    // Disabled: nothing required.
    let toml = format!("{GOOD}{RCS}sms_fallback = {{ enabled = false }}\n");
    assert!(field_errors(&toml).is_empty());
    let good = format!("{GOOD}{RCS}sms_fallback = {{ sender_id = \"ACME\", sms_provider = \"ib-sms\" }}\n");
    let config = Config::from_toml(&good, &env, &VENDORS).unwrap();
    assert_eq!(config.provider("ib-rcs").unwrap().sms_fallback.as_ref().unwrap().sender_id.as_deref(), Some("ACME"));
}

#[test]
fn sms_fallback_for_india_needs_a_principal_entity_id_and_a_real_sms_provider() {
    let toml = format!("{GOOD}{RCS}sms_fallback = {{ sender_id = \"ACME\", india = true, sms_provider = \"nope\" }}\n");
    assert_eq!(
        field_errors(&toml),
        ["providers[1].sms_fallback.principal_entity_id", "providers[1].sms_fallback.sms_provider"]
    );
    // An SMS provider has no SMS fallback of its own.
    let toml = format!("{GOOD}sms_fallback = {{ sender_id = \"ACME\" }}\n");
    assert_eq!(field_errors(&toml), ["providers[0].sms_fallback"]);
}

#[test]
fn turkey_recipient_type_must_be_an_iys_value() {
    let toml = format!("{GOOD}regional = {{ turkey_brand_code = 123456, turkey_recipient_type = \"BIREYCEL\" }}\n");
    assert_eq!(field_errors(&toml), ["providers[0].regional.turkey_recipient_type"]);
    let toml = format!(
        "{GOOD}regional = {{ turkey_brand_code = 123456, turkey_recipient_type = \"TACIR\", india_principal_entity_id = \"1201159\" }}\n"
    );
    assert!(field_errors(&toml).is_empty());
}

#[test]
fn own_click_tracking_alone_or_provider_tracking_alone_is_fine() {
    assert!(field_errors(&format!("{GOOD}own_click_tracking = true\n")).is_empty());
    assert!(field_errors(&format!("{GOOD}click_tracking = {{ custom_domain = \"go.acme.example\" }}\n")).is_empty());
    let both = format!("{GOOD}own_click_tracking = true\nclick_tracking = {{ custom_domain = \"go.acme.example\" }}\n");
    let err = Config::from_toml(&both, &env, &VENDORS).unwrap_err().to_string();
    assert!(err.contains("wrapped twice"), "{err}");
}

#[test]
fn templates_are_parsed_at_load_and_bad_ones_name_the_field() {
    let toml = format!(
        "{GOOD}\n[[templates]]\nid = \"t1\"\ncontent = {{ type = \"text\", text = \"Hi {{{{name}}}}\" }}\n\n[[templates]]\nid = \"t2\"\ncontent = {{ type = \"nonsense\" }}\n\n[[templates]]\nid = \"t3\"\n\n[[templates]]\nid = \"t4\"\nfile = \"/nonexistent/t4.json\"\n"
    );
    assert_eq!(field_errors(&toml), ["templates[1].content", "templates[2].content", "templates[3].file"]);
    let ok =
        format!("{GOOD}\n[[templates]]\nid = \"t1\"\ncontent = {{ type = \"text\", text = \"Hi {{{{name}}}}\" }}\n");
    let config = Config::from_toml(&ok, &env, &VENDORS).unwrap();
    assert_eq!(
        config.templates[0].parsed,
        Some(sendfleet_protocol::Content::Text { text: "Hi {{name}}".into(), suggestions: vec![] })
    );
}

#[test]
fn templates_load_from_json_and_toml_files() {
    let dir = std::env::temp_dir().join(format!("sendfleet-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("card.json");
    std::fs::write(
        &json,
        r#"{"type":"card","orientation":"vertical","alignment":"left","card":{"title":"Hi {{name}}","media":{"url":"https://x.example/a.png","height":"medium"}}}"#,
    )
    .unwrap();
    let toml_file = dir.join("text.toml");
    std::fs::write(&toml_file, "type = \"text\"\ntext = \"Order {{order}}\"\n").unwrap();
    let toml = format!(
        "{GOOD}\n[[templates]]\nid = \"card\"\nfile = \"{}\"\n\n[[templates]]\nid = \"text\"\nfile = \"{}\"\n",
        json.display(),
        toml_file.display()
    );
    let config = Config::from_toml(&toml, &env, &VENDORS);
    std::fs::remove_dir_all(&dir).ok();
    let config = config.unwrap();
    assert_eq!(config.templates[0].parsed.as_ref().map(|c| c.kind()), Some("card"));
    assert_eq!(config.templates[1].parsed.as_ref().map(|c| c.kind()), Some("text"));
}

#[test]
fn the_api_token_is_resolved_and_never_printed() {
    let toml = format!("[dispatcher]\napi_token_env = \"CB_TOKEN\"\n{GOOD}");
    let config = Config::from_toml(&toml, &env, &VENDORS).unwrap();
    assert_eq!(config.dispatcher.api_token.expose(), "0123456789abcdef0123");
    assert!(!format!("{config:?}").contains("0123456789abcdef0123"));
    let toml = format!("[dispatcher]\napi_token_env = \"UNSET\"\n{GOOD}");
    assert_eq!(field_errors(&toml), ["dispatcher.api_token_env"]);
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
    let config = Config::from_toml(GENERIC, &env, &VENDORS).unwrap();
    let generic = config.provider("gen-rcs").unwrap().vendor.get::<GenericConfig>().unwrap();
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
    let err = Config::from_toml(&bad, &env, &VENDORS).unwrap_err();
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

#[test]
fn the_events_queue_is_bounded_by_default_and_configurable() {
    let config = Config::from_toml(GOOD, &env, &VENDORS).unwrap();
    let events = &config.broker.events_queue;
    assert!(events.declare);
    assert!(events.max_length > 0 && events.max_length_bytes > 0 && events.message_ttl_seconds > 0);
    assert_eq!(events.overflow, Overflow::DropHead);

    let toml = format!(
        "{GOOD}\n[broker.events_queue]\ndeclare = false\nmax_length = 0\nmax_length_bytes = 5000\nmessage_ttl_seconds = 0\noverflow = \"reject-publish\"\n"
    );
    let events = Config::from_toml(&toml, &env, &VENDORS).unwrap().broker.events_queue;
    assert_eq!(
        events,
        EventsQueueConfig {
            declare: false,
            max_length: 0,
            max_length_bytes: 5000,
            message_ttl_seconds: 0,
            overflow: Overflow::RejectPublish
        }
    );
}

#[test]
fn events_queue_bounds_beyond_rabbitmq_limits_name_the_key() {
    let toml = format!("{GOOD}\n[broker.events_queue]\nmessage_ttl_seconds = 5000000\n");
    assert_eq!(field_errors(&toml), ["broker.events_queue.message_ttl_seconds"]);
    let toml = format!("{GOOD}\n[broker.events_queue]\nmessage_ttl_seconds = 4294967\n");
    assert!(field_errors(&toml).is_empty(), "the largest TTL RabbitMQ takes is accepted");
}

#[test]
fn the_status_store_is_on_for_a_week_by_default_and_its_bounds_are_checked() {
    let config = Config::from_toml(GOOD, &env, &VENDORS).unwrap();
    assert!(config.status.enabled);
    assert_eq!(config.status.ttl_seconds, 7 * 24 * 3_600);
    let off = Config::from_toml(&format!("[status]\nenabled = false\n{GOOD}"), &env, &VENDORS).unwrap();
    assert!(!off.status.enabled);
    let bad = format!("[status]\nttl_seconds = 0\nqueue_capacity = 0\n{GOOD}");
    let err = Config::from_toml(&bad, &env, &VENDORS).unwrap_err();
    let ConfigError::Invalid(errors) = &err else { panic!("{err}") };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["status.ttl_seconds", "status.queue_capacity"]);
}

#[test]
fn an_unknown_kind_names_the_kinds_of_the_build() {
    let text =
        Config::from_toml(&GOOD.replace("infobip_sms", "carrier_pigeon_sms"), &env, &VENDORS).unwrap_err().to_string();
    assert!(
        text.contains("providers[0].kind: unknown kind 'carrier_pigeon_sms'; this build knows infobip_rcs,"),
        "{text}"
    );
    assert!(text.contains("twilio_sms"), "{text}");
}

#[test]
fn common_and_vendor_problems_are_reported_together() {
    let toml = r#"
[[providers]]
id = "gen"
kind = "generic_sms"
sender_ids = ["S"]
rate_per_second = 0
[providers.generic]
endpoint = "ftp://vendor.example"
method = "PATCH"
auth = { type = "basic", username = "u", password_env = "NOT_SET" }
"#;
    let ConfigError::Invalid(errors) = Config::from_toml(toml, &env, &VENDORS).unwrap_err() else { panic!() };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "providers[0].rate_per_second",
            "providers[0].generic.endpoint",
            "providers[0].generic.method",
            "providers[0].generic.auth.password_env",
        ]
    );
    // A key the vendor's section does not have is named by its full path.
    let typo = toml.replace("method = \"PATCH\"", "methd = \"PUT\"");
    let text = Config::from_toml(&typo, &env, &VENDORS).unwrap_err().to_string();
    assert!(text.contains("providers[0].generic.methd: unknown field `methd`"), "{text}");
}

#[test]
fn lane_shares_name_the_bad_lane_and_the_bad_share() {
    let unknown = format!("{GOOD}lane_min_share = {{ urgent = 0.1 }}\n");
    let text = Config::from_toml(&unknown, &env, &VENDORS).unwrap_err().to_string();
    assert!(text.contains("providers[0].lane_min_share.urgent: unknown field `urgent`"), "{text}");
    let too_much = format!("{GOOD}lane_min_share = {{ normal = 0.6, bulk = 0.3 }}\n");
    let ConfigError::Invalid(errors) = Config::from_toml(&too_much, &env, &VENDORS).unwrap_err() else { panic!() };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["providers[0].lane_min_share.normal", "providers[0].lane_min_share"]);
    let config = Config::from_toml(GOOD, &env, &VENDORS).unwrap();
    assert_eq!(config.providers[0].lane_min_share, LaneShares { normal: 0.10, bulk: 0.05 });
}

#[test]
fn sender_rates_above_the_providers_are_named() {
    let toml = format!("{GOOD}sender_rates = {{ ACME = 5000, OTHER = 0, FINE = 10 }}\n");
    let ConfigError::Invalid(errors) = Config::from_toml(&toml, &env, &VENDORS).unwrap_err() else { panic!() };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["providers[0].sender_rates.ACME", "providers[0].sender_rates.OTHER"]);
    assert!(errors[0].message.contains("rate_per_second (4600)"), "{}", errors[0].message);
    let fine = format!("{GOOD}sender_rates = {{ ACME = 10 }}\n");
    assert_eq!(Config::from_toml(&fine, &env, &VENDORS).unwrap().providers[0].sender_rates["ACME"], 10);
}

#[test]
fn sentinels_are_checked_each_by_its_index() {
    let toml =
        format!("[redis]\nsentinels = [\"redis://127.0.0.1:26391\", \"http://nope\"]\nmaster_name = \" \"\n{GOOD}");
    let ConfigError::Invalid(errors) = Config::from_toml(&toml, &env, &VENDORS).unwrap_err() else { panic!() };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["redis.sentinels[1]", "redis.master_name"]);
    let fine = format!("[redis]\nsentinels = [\"redis://127.0.0.1:26391\"]\n{GOOD}");
    let config = Config::from_toml(&fine, &env, &VENDORS).unwrap();
    assert_eq!((config.redis.sentinels.len(), config.redis.master_name.as_str()), (1, "sendfleet"));
}

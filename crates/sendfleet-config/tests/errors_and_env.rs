//! Config that never trips: the environment sets only keys the config has (any other
//! `SENDFLEET_*` variable is a warning), and every error speaks config — the file and
//! line or the variable, the key path, what was expected — never Rust.

use std::path::Path;

use sendfleet_config::{Config, ConfigError, ConfigSource, ConfigWarning, Loaded};

const EXAMPLE: &str = include_str!("../../../config/sendfleet.example.toml");

/// A token long enough for `api_token_env`.
const TOKEN: &str = "example-api-token-0123456789";

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Loads `toml` from `file` as a binary would with `env` as its whole environment
/// (secrets are read from it too).
fn load(file: &str, toml: &str, env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let env = vars(env);
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    Config::from_source(ConfigSource {
        file: Some(Path::new(file)),
        toml: toml.to_owned(),
        env_overrides: env.clone(),
        secret_lookup: &lookup,
        vendors: &sendfleet_providers::VENDORS,
    })
}

/// The secrets the example config names, as a deployment would set them.
const EXAMPLE_SECRETS: [(&str, &str); 7] = [
    ("INFOBIP_API_KEY", "infobip-key"),
    ("JIOCX_API_KEY", "jiocx-key"),
    ("VENDOR_CLIENT_SECRET", "vendor-secret"),
    ("INFOBIP_RCS_CALLBACK_TOKEN", "rcs-callback-token-0123"),
    ("INFOBIP_SMS_CALLBACK_TOKEN", "sms-callback-token-0123"),
    ("JIOCX_CALLBACK_TOKEN", "jio-callback-token-0123"),
    ("GENERIC_CALLBACK_TOKEN", "gen-callback-token-0123"),
];

fn example_env(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    EXAMPLE_SECRETS.iter().chain(extra).copied().collect()
}

#[test]
fn the_example_with_its_api_token_variable_set_loads_without_warnings() {
    // What the example's comment suggests, with the variable set: this used to stop every
    // binary ("unknown field: found api_token").
    let toml = EXAMPLE.replace("# api_token_env = \"SENDFLEET_API_TOKEN\"", "api_token_env = \"SENDFLEET_API_TOKEN\"");
    assert_ne!(toml, EXAMPLE, "the example still suggests api_token_env = \"SENDFLEET_API_TOKEN\"");
    let loaded = load("sendfleet.toml", &toml, &example_env(&[("SENDFLEET_API_TOKEN", TOKEN)])).unwrap();
    assert_eq!(loaded.config.dispatcher.api_token.expose(), TOKEN);
    assert_eq!(loaded.warnings, [], "a variable the config reads as a secret is no stray");
}

#[test]
fn unknown_sendfleet_variables_warn_and_known_ones_apply() {
    let env = example_env(&[
        // A secret under the prefix that the config does not read (envFrom of a Secret).
        ("SENDFLEET_API_TOKEN", TOKEN),
        ("SENDFLEET_DB_PASSWORD", "hunter2-not-shown"),
        ("SENDFLEET_DISPATCHER__CONCURENCY", "8"),
        ("SENDFLEET_PROVIDERS__0__RATE_PER_SECOND", "10"),
        ("SENDFLEET_DISPATCHER__CONCURRENCY", "8"),
        ("SENDFLEET_CONFIG", "/etc/sendfleet/sendfleet.toml"),
    ]);
    let loaded = load("sendfleet.toml", EXAMPLE, &env).unwrap();
    assert_eq!(loaded.config.dispatcher.concurrency, 8);
    assert_eq!(loaded.config.providers[0].rate_per_second, 4600, "per-provider variables are not read");
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        loaded.warnings,
        [
            ConfigWarning::UnknownVariable { variable: "SENDFLEET_API_TOKEN".into() },
            ConfigWarning::UnknownVariable { variable: "SENDFLEET_DB_PASSWORD".into() },
            ConfigWarning::UnknownVariable { variable: "SENDFLEET_DISPATCHER__CONCURENCY".into() },
            ConfigWarning::InsideKey {
                variable: "SENDFLEET_PROVIDERS__0__RATE_PER_SECOND".into(),
                key: "providers".into()
            },
        ],
        "{warnings:#?}"
    );
    assert_eq!(
        warnings[1],
        "environment variable SENDFLEET_DB_PASSWORD matches no config key and is ignored \
         (overrides are named SENDFLEET_<SECTION>__<KEY>, e.g. SENDFLEET_BROKER__URL)"
    );
    assert!(warnings.iter().all(|w| !w.contains("hunter2")), "values are never shown: {warnings:?}");
}

/// Rust-isms an operator must never read in a config error: source locations, paths,
/// type names.
fn assert_speaks_config(message: &str) {
    assert!(!message.contains(".rs"), "a source file: {message}");
    assert!(!message.contains("::"), "a Rust path: {message}");
    for word in message.split(|c: char| !c.is_alphanumeric() && c != '_') {
        let rusty = matches!(
            word,
            "u8" | "u16"
                | "u32"
                | "u64"
                | "usize"
                | "i8"
                | "i16"
                | "i32"
                | "i64"
                | "isize"
                | "f32"
                | "f64"
                | "struct"
                | "enum"
                | "Option"
                | "Vec"
                | "String"
                | "BTreeMap"
                | "Value"
                | "map"
                | "sequence"
        ) || (word.len() > 6 && word.ends_with("Config"))
            || word == "RedactedUrl";
        assert!(!rusty, "'{word}' is Rust, not config: {message}");
    }
}

#[test]
fn errors_quote_the_file_line_and_key_path_in_config_words() {
    let base = "[broker]\nprefix = \"t\"\n\n[[providers]]\nid = \"sms\"\nkind = \"infobip_sms\"\nbase_url = \"https://x.api.infobip.com\"\napi_key_env = \"K\"\nsender_ids = [\"S\"]\n";
    let second = base.replace("[broker]\nprefix = \"t\"\n\n", "").replace("\"sms\"", "\"sms2\"");
    let third = base.replace("[broker]\nprefix = \"t\"\n\n", "").replace("\"sms\"", "\"sms3\"");
    let generic = "[[providers]]\nid = \"gen\"\nkind = \"generic_sms\"\nsender_ids = [\"S\"]\n\
                   [providers.generic]\nendpoint = \"https://vendor.example/send\"\n";
    let cases: [(String, &str); 9] = [
        (
            // The vendor's section is read by its module: the line is still the bad value's.
            format!("{base}{generic}[[providers]]\nid = \"b\"\nkind = \"generic_sms\"\nconcurrency = \"x\"\n"),
            "sendfleet.toml, line 19: providers[2].concurrency: invalid type: string \"x\", expected a whole number from 0 to 4294967295",
        ),
        (
            base.replace("kind = \"infobip_sms\"", "kind = \"infobip\""),
            "sendfleet.toml, line 6: providers[0].kind: 'infobip' is not a provider kind: a kind ends in its channel, _rcs or _sms",
        ),
        (
            format!("{base}{second}{third}rate_per_second = \"fast\"\n"),
            "sendfleet.toml, line 22: providers[2].rate_per_second: invalid type: string \"fast\", expected a whole number from 0 to 4294967295",
        ),
        (
            format!("{base}rate_per_second = -1\n"),
            "sendfleet.toml, line 10: providers[0].rate_per_second: invalid value: integer `-1`, expected a whole number from 0 to 4294967295",
        ),
        (
            base.replace("prefix = \"t\"", "prefx = \"t\""),
            "sendfleet.toml, line 2: broker.prefx: unknown field `prefx`, expected one of `url`, `prefix`, `queue_type`, `quorum_replicas`, `delivery_limit`, `events_queue`",
        ),
        (
            format!("{base}[providers.retry]\nmax_attempts = true\n"),
            "sendfleet.toml, line 11: providers[0].retry.max_attempts: invalid type: boolean `true`, expected a whole number from 0 to 4294967295",
        ),
        (
            base.replace("prefix = \"t\"", "queue_type = \"quorom\""),
            "sendfleet.toml, line 2: broker.queue_type: unknown variant `quorom`, expected `classic` or `quorum`",
        ),
        (
            format!("[dispatcher]\nconcurrency = {{ a = 1 }}\n{base}"),
            "sendfleet.toml, line 2: dispatcher.concurrency: invalid type: a table, expected a whole number from 0 to 65535",
        ),
        (format!("redis = 5\n{base}"), "sendfleet.toml, line 1: redis: invalid type: integer `5`, expected a table"),
    ];
    let env = [("K", "key")];
    for (toml, expected) in &cases {
        let err = load("sendfleet.toml", toml, &env).err().unwrap_or_else(|| panic!("loads: {toml}"));
        let message = err.to_string();
        assert_eq!(&message, expected);
        assert_speaks_config(&message);
    }
    // TOML syntax: the file, line and column, and the line itself.
    for (toml, expected) in [
        (
            "[broker]\nprefix = \"t\nurl = 1\n",
            "sendfleet.toml, line 2, column 12: not valid TOML: invalid basic string, expected `\"` (the line reads: prefix = \"t)",
        ),
        (
            "[broker]\nprefix = \"t\"\n[broker]\n",
            "sendfleet.toml, line 3, column 2: not valid TOML: duplicate key (the line reads: [broker])",
        ),
    ] {
        let message = load("sendfleet.toml", toml, &env).err().unwrap().to_string();
        assert_eq!(message, expected);
        assert_speaks_config(&message);
    }
}

#[test]
fn a_bad_environment_override_names_the_variable_and_key() {
    let err = load("sendfleet.toml", "", &[("SENDFLEET_DISPATCHER__CONCURRENCY", "lots")]).err().unwrap();
    assert_eq!(
        err.to_string(),
        "environment variable SENDFLEET_DISPATCHER__CONCURRENCY (key dispatcher.concurrency): \
         invalid type: string \"lots\", expected a whole number from 0 to 65535"
    );
    let err = load("sendfleet.toml", "", &[("SENDFLEET_WORKER__PROVIDERS", "[1]")]).err().unwrap();
    assert_eq!(
        err.to_string(),
        "environment variable SENDFLEET_WORKER__PROVIDERS (key worker.providers): \
         invalid type: integer `1`, expected a string"
    );
    // An override fixes a file value, as before.
    let loaded = load("f.toml", "[worker]\nlisten = \"127.0.0.1:1\"\n", &[("SENDFLEET_WORKER__LISTEN", "127.0.0.1:2")]);
    assert_eq!(loaded.unwrap().config.worker.listen, "127.0.0.1:2");
}

/// Every key of every section, given a value of the wrong shape: each error names the
/// key and reads as config. Derived from the serialized defaults, so new keys are
/// covered without touching this test.
#[test]
fn a_wrong_type_anywhere_names_its_key_in_config_words() {
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let mut checked = 0;
    for (section, keys) in defaults.as_object().unwrap() {
        let Some(keys) = keys.as_object() else { continue };
        for (key, default) in keys {
            // A value of a shape the key does not take: a table for scalars and arrays,
            // a number for a table-shaped key.
            let wrong = if default.is_object() { "7" } else { "{ x = 1 }" };
            let toml = format!("[{section}]\n{key} = {wrong}\n");
            let err = load("f.toml", &toml, &[]).err().unwrap_or_else(|| panic!("{section}.{key} = {wrong} loads"));
            let message = err.to_string();
            assert!(message.starts_with(&format!("f.toml, line 2: {section}.{key}: ")), "{message}");
            println!("{message}");
            assert_speaks_config(&message);
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} keys checked");
    // And every key of a provider, on its own line of a file.
    let provider = "[[providers]]\nid = \"p\"\nkind = \"infobip_sms\"\nbase_url = \"https://x.api.infobip.com\"\napi_key_env = \"K\"\nsender_ids = [\"S\"]\n";
    let loaded = Config::from_toml(provider, &|_| Some("key".into()), &sendfleet_providers::VENDORS).unwrap();
    let keys = serde_json::to_value(&loaded.providers[0]).unwrap();
    let keys = keys.as_object().unwrap();
    assert!(keys.len() > 20, "{keys:?}");
    for (key, value) in keys {
        // A table is wrong for a scalar; for a table-valued key, an unknown key inside (a
        // section) or a text value (a map of numbers, like `sender_rates`).
        let wrong = if value.is_object() { "{ nonsense = \"x\" }" } else { "{ x = 1 }" };
        let others: String =
            provider.lines().filter(|l| !l.starts_with(&format!("{key} = "))).map(|l| format!("{l}\n")).collect();
        let toml = format!("[broker]\nprefix = \"t\"\n\n{others}{key} = {wrong}\n");
        let err = load("f.toml", &toml, &[("K", "key")]).err().unwrap_or_else(|| panic!("{key} = {wrong} loads"));
        let message = err.to_string();
        println!("{message}");
        let line = toml.lines().count();
        assert!(message.starts_with(&format!("f.toml, line {line}: providers[0].{key}")), "{message}");
        assert_speaks_config(&message);
    }
}

#[test]
fn an_api_beyond_loopback_needs_a_token() {
    let err = load("f.toml", "[dispatcher]\nlisten = \"0.0.0.0:9101\"\n", &[]).err().unwrap();
    let ConfigError::Invalid(errors) = &err else { panic!("{err}") };
    assert_eq!(errors.len(), 1, "{err}");
    assert_eq!(errors[0].field, "dispatcher.api_token_env");
    assert!(errors[0].message.contains("0.0.0.0:9101"), "{err}");
    // Through an override too, and fixed by naming a token.
    let err = load("f.toml", "", &[("SENDFLEET_DISPATCHER__LISTEN", "[::]:9101")]).err().unwrap();
    assert!(err.to_string().contains("dispatcher.api_token_env: required"), "{err}");
    let toml = "[dispatcher]\nlisten = \"0.0.0.0:9101\"\napi_token_env = \"SENDFLEET_API_TOKEN\"\n";
    let loaded = load("f.toml", toml, &[("SENDFLEET_API_TOKEN", TOKEN)]).unwrap();
    assert_eq!(loaded.config.dispatcher.api_token.expose(), TOKEN);
    // Loopback needs none.
    for listen in ["127.0.0.1:9101", "[::1]:9101"] {
        load("f.toml", &format!("[dispatcher]\nlisten = \"{listen}\"\n"), &[]).unwrap();
    }
}

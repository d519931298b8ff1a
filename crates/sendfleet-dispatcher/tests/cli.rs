//! The `dispatcher` binary's command line as an operator meets it: the example config
//! with its API token variable set starts, a stray `SENDFLEET_*` variable is only a
//! warning, `--config` goes before or after the subcommand, and the exit codes tell a
//! usage or config error (64) from a provider that did not accept the message (2).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

const EXAMPLE: &str = include_str!("../../../config/sendfleet.example.toml");

/// The secrets the example names, and the API token its comment suggests.
const ENV: [(&str, &str); 8] = [
    ("INFOBIP_API_KEY", "infobip-key"),
    ("JIOCX_API_KEY", "jiocx-key"),
    ("VENDOR_CLIENT_SECRET", "vendor-secret"),
    ("INFOBIP_RCS_CALLBACK_TOKEN", "rcs-callback-token-0123"),
    ("INFOBIP_SMS_CALLBACK_TOKEN", "sms-callback-token-0123"),
    ("JIOCX_CALLBACK_TOKEN", "jio-callback-token-0123"),
    ("GENERIC_CALLBACK_TOKEN", "gen-callback-token-0123"),
    ("SENDFLEET_API_TOKEN", "example-api-token-0123456789"),
];

/// A config file for this test, removed on drop.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(name: &str, text: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!("sendfleet-cli-{name}-{}.toml", std::process::id()));
        std::fs::write(&path, text).expect("write config");
        ConfigFile(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        drop(std::fs::remove_file(&self.0));
    }
}

/// Runs the dispatcher with exactly `ENV` plus `extra` as its environment.
fn dispatcher(args: &[&str], extra: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dispatcher"))
        .args(args)
        .env_clear()
        .envs(ENV.iter().chain(extra).copied())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run dispatcher")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn example_with_token() -> ConfigFile {
    let text = EXAMPLE.replace("# api_token_env = \"SENDFLEET_API_TOKEN\"", "api_token_env = \"SENDFLEET_API_TOKEN\"");
    assert_ne!(text, EXAMPLE, "the example no longer suggests api_token_env = \"SENDFLEET_API_TOKEN\"");
    ConfigFile::new("example", &text)
}

#[test]
fn the_example_with_its_api_token_set_passes_and_a_stray_variable_only_warns() {
    let config = example_with_token();
    let path = config.path().to_str().unwrap();
    let run = dispatcher(&["--config", path, "--check-config"], &[]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert!(!stderr(&run).contains("warning"), "{}", stderr(&run));
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "config OK: 4 provider(s)");

    let run = dispatcher(&["--check-config", "--config", path], &[("SENDFLEET_DB_PASSWORD", "not-shown-4711")]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let err = stderr(&run);
    assert!(err.contains("warning: environment variable SENDFLEET_DB_PASSWORD matches no config key"), "{err}");
    assert!(!err.contains("not-shown-4711"), "{err}");
}

#[test]
fn a_bad_config_exits_64_naming_the_file_line_and_key() {
    let config = ConfigFile::new("bad", "[dispatcher]\nconcurrency = \"lots\"\n");
    let run = dispatcher(&["--config", config.path().to_str().unwrap(), "--check-config"], &[]);
    assert_eq!(run.status.code(), Some(64));
    assert_eq!(
        stderr(&run).trim(),
        format!(
            "{}, line 2: dispatcher.concurrency: invalid type: string \"lots\", expected a whole number from 0 to 65535",
            config.path().display()
        )
    );
}

/// A provider nothing listens for: the send fails, so the provider did not accept it.
const UNREACHABLE: &str = r#"
[[providers]]
id = "sms"
kind = "infobip_sms"
base_url = "http://127.0.0.1:9"
api_key_env = "INFOBIP_API_KEY"
sender_ids = ["ACME"]
request_timeout_ms = 2000
"#;

#[test]
fn send_test_exit_codes_tell_usage_errors_from_refusals_and_config_may_follow_the_subcommand() {
    let config = ConfigFile::new("send-test", UNREACHABLE);
    let path = config.path().to_str().unwrap();
    let send = |extra: &[&str]| {
        let mut args = vec!["send-test", "--provider", "sms", "--country-code", "44", "--text", "hi"];
        args.extend_from_slice(extra);
        dispatcher(&args, &[])
    };
    // --config after the subcommand; the provider did not accept it: 2, answer printed.
    let run = send(&["--number", "020 7183 8750", "--config", path]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    let answer: serde_json::Value = serde_json::from_slice(&run.stdout).expect("the answer as JSON");
    assert_eq!(answer["answer"]["outcome"], "transient");
    // A usage error (flag missing) and a bad form (unknown provider, bad number): 64.
    let run = dispatcher(&["send-test", "--config", path, "--provider", "sms"], &[]);
    assert_eq!(run.status.code(), Some(64), "{}", stderr(&run));
    let run = dispatcher(
        &["send-test", "--config", path, "--provider", "nope", "--country-code", "44", "--number", "7700900123"],
        &[],
    );
    assert_eq!(run.status.code(), Some(64), "{}", stderr(&run));
    assert!(stderr(&run).contains("unknown_provider"), "{}", stderr(&run));
    let run = send(&["--number", "12", "--config", path]);
    assert_eq!(run.status.code(), Some(64), "{}", stderr(&run));
    assert!(stderr(&run).contains("invalid_destination"), "{}", stderr(&run));
}

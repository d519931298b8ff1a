//! Running the real `sendfleet` binary against a test's fleet.

use std::{path::PathBuf, process::Output};

use sendfleet_config::Config;
use sendfleet_test_support::{TEST_API_KEY, TEST_CALLBACK_TOKEN};
use tokio::process::{Child, Command};

/// The binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_sendfleet");

/// Writes `config` as a TOML file (the services' own config, secrets still by env name).
pub fn write_config(config: &Config, name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&path, toml::to_string(config).expect("config as TOML")).expect("write config");
    path
}

/// The command with the test secrets in its environment.
pub fn command(config: &PathBuf, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env("TEST_API_KEY", TEST_API_KEY)
        .env("TEST_CALLBACK_TOKEN", TEST_CALLBACK_TOKEN)
        .env("TEST_JIOCX_API_KEY", TEST_API_KEY)
        .env_remove("SENDFLEET_CONFIG")
        .kill_on_drop(true);
    command
}

/// Runs it to the end.
pub async fn run(config: &PathBuf, args: &[&str]) -> Output {
    command(config, args).output().await.expect("run sendfleet")
}

/// Starts it, output captured.
#[allow(dead_code)] // tests/replay.rs kills it; tests/cli.rs does not start one
pub fn spawn(config: &PathBuf, args: &[&str]) -> Child {
    command(config, args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sendfleet")
}

/// Standard output as JSON (panics with both streams when it is not).
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): status {:?}\nstdout: {}\nstderr: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

//! Start-up against a broker whose queues were declared with other arguments: every
//! binary stops (instead of reconnecting forever, never ready) and its error names the
//! config key that differs.

use std::{collections::BTreeMap, process::Stdio, time::Duration};

use sendfleet_test_support::{Namespace, TEST_API_KEY};
use tokio::process::Command;

use crate::metrics::{BINARIES, binary, free_port, services_toml};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_stops_naming_the_key_when_the_events_queue_has_other_bounds() {
    let ns = Namespace::new("startup", &["s-sms"]);
    // The fleet's queues exist with the default bounds (250,000 events) ...
    let connection = ns.connect().await;
    let channel = connection.create_channel().await.unwrap();
    ns.topology().declare(&channel, &ns.providers).await.unwrap();
    drop(connection.close(200, "".into()).await);
    // ... and this config asks for 1,000.
    let ports: BTreeMap<&str, u16> = BINARIES.iter().map(|b| (*b, free_port())).collect();
    let toml = format!(
        r#"{services}
[broker.events_queue]
max_length = 1000
[[providers]]
id = "s-sms"
kind = "infobip_sms"
base_url = "http://127.0.0.1:9"
api_key_env = "TEST_API_KEY"
sender_ids = ["ACME"]
"#,
        services = services_toml(&ns.prefix, &ports),
    );
    let config = std::env::temp_dir().join(format!("{}.toml", ns.prefix));
    std::fs::write(&config, toml).unwrap();

    for name in BINARIES {
        let child = Command::new(binary(name))
            .env("SENDFLEET_CONFIG", &config)
            .env("TEST_API_KEY", TEST_API_KEY)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{name} kept running against a mismatching queue"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name} exits with an error: {stderr}");
        assert!(
            stderr.contains("broker.events_queue.max_length") && stderr.contains(&ns.topology().events_queue()),
            "{name}'s error names the key and the queue: {stderr}"
        );
    }
    drop(std::fs::remove_file(&config));
    ns.cleanup().await;
}

//! `scripts/cluster.sh`'s local cluster, started by the test that needs it and stopped
//! (its state deleted) when dropped: three RabbitMQ nodes (AMQP 5681-5683) and Redis as a
//! primary (6391), a replica (6392) and three Sentinels (26391-26393, master name
//! `sendfleet`). The tests that use it run one at a time (the `local-cluster` test group
//! in `.config/nextest.toml`): the ports are fixed.

use std::{path::PathBuf, process::Command};

/// The running local cluster.
pub struct LocalCluster {
    dir: PathBuf,
}

impl LocalCluster {
    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster.sh")
    }

    /// Runs `scripts/cluster.sh <args>`; panics with its output unless it succeeds.
    pub fn run(&self, args: &[&str]) -> String {
        let output = Command::new("bash")
            .arg(Self::script())
            .args(args)
            .env("SENDFLEET_CLUSTER_DIR", &self.dir)
            .output()
            .expect("run scripts/cluster.sh");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "cluster.sh {args:?} failed: {text}");
        text
    }

    fn new() -> LocalCluster {
        LocalCluster { dir: std::env::temp_dir().join("sendfleet-cluster-it") }
    }

    /// Only the Redis primary, replica and Sentinels (about a second).
    pub fn start_redis() -> LocalCluster {
        let cluster = LocalCluster::new();
        cluster.run(&["start-redis"]);
        cluster
    }

    /// Everything: the three RabbitMQ nodes joined into one cluster, and Redis.
    pub fn start() -> LocalCluster {
        let cluster = LocalCluster::new();
        cluster.run(&["start"]);
        cluster
    }

    /// The AMQP URLs of the three RabbitMQ nodes.
    pub fn amqp_urls() -> Vec<String> {
        (5681..=5683).map(|port| format!("amqp://guest:guest@127.0.0.1:{port}/%2f")).collect()
    }

    /// The Sentinels' URLs.
    pub fn sentinel_urls() -> Vec<String> {
        (26391..=26393).map(|port| format!("redis://127.0.0.1:{port}")).collect()
    }

    /// The node (1-3) leading quorum queue `queue`.
    pub fn leader(&self, queue: &str) -> u8 {
        let said = self.run(&["leader", queue]);
        said.trim().parse().unwrap_or_else(|_| panic!("cluster.sh leader {queue}: {said}"))
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(Self::script()).arg("stop").env("SENDFLEET_CLUSTER_DIR", &self.dir).output();
    }
}

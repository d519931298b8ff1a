//! Running the real binaries as child processes against one broker prefix.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail};
use sendfleet_broker::{Topology, lapin::options::QueueDeleteOptions};
use sendfleet_config::{BrokerConfig, QueueType, RedactedUrl};
use tokio::process::{Child, Command};

/// API key the mock accepts and the providers send.
pub const API_KEY: &str = "bench-api-key-0123456789";
/// Callback token of the providers.
pub const CALLBACK_TOKEN: &str = "bench-callback-token-0123456789";

/// Where the binaries are: next to this executable (`cargo build --release --bins`).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable has no directory")?.to_path_buf();
    for name in ["dispatcher", "sender-worker", "callback-ingest", "mock-provider"] {
        if !dir.join(name).exists() {
            bail!("{} not found next to sendfleet-bench; build all binaries first: cargo build --release --bins", name);
        }
    }
    Ok(dir)
}

/// A free loopback port (bound then released; fine for a local run).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process with its name, stopped with SIGTERM.
pub struct Proc {
    /// Name for logs.
    pub name: String,
    /// The child.
    pub child: Child,
    /// Its ops port (`/metrics`, `/health`).
    pub port: u16,
}

impl Proc {
    /// Starts `bin` with `args` and `env`, output appended to `<log_dir>/<name>.log`.
    pub fn spawn(
        bin: &Path,
        name: &str,
        args: &[&str],
        env: &[(&str, String)],
        log_dir: &Path,
        port: u16,
    ) -> anyhow::Result<Proc> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log_dir.join(format!("{name}.log")))?;
        let mut command = Command::new(bin);
        command.args(args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().with_context(|| format!("starting {}", bin.display()))?;
        Ok(Proc { name: name.to_owned(), child, port })
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL, then waits for the process to be gone.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns the exit code.
    pub async fn terminate(&mut self, wait: Duration) -> Option<i32> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        match tokio::time::timeout(wait, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                let _ = self.child.start_kill();
                None
            }
        }
    }

    /// Waits until `GET http://127.0.0.1:<port>/health` answers 200 (bounded).
    pub async fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}/health", self.port);
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("{} exited with {status}; see its log", self.name);
            }
            if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{} not healthy after {timeout:?}; see its log", self.name)
    }
}

/// Checks that the broker answers; the error says how to start it.
pub async fn check_broker(url: &str) -> anyhow::Result<()> {
    let config = BrokerConfig { url: RedactedUrl::new(url).into(), ..BrokerConfig::default() };
    match tokio::time::timeout(Duration::from_secs(5), sendfleet_broker::connect_once(&config, "bench-check")).await {
        Ok(Ok(connection)) => {
            let _ = connection.close(200, "".into()).await;
            Ok(())
        }
        _ => bail!(
            "cannot reach RabbitMQ at {}.\nStart it with:  rabbitmq-server -detached\n(or: docker compose up -d rabbitmq), then run this again.",
            config.url
        ),
    }
}

static QUEUE_TYPE: std::sync::OnceLock<QueueType> = std::sync::OnceLock::new();

/// Sets the queue type every bench and demo run declares (once, from the command line).
pub fn set_queue_type(queue_type: QueueType) {
    // Set once from the command line; a second call keeps the first value.
    let _ = QUEUE_TYPE.set(queue_type);
}

/// The queue type runs declare: quorum unless set otherwise.
pub fn queue_type() -> QueueType {
    QUEUE_TYPE.get().copied().unwrap_or(QueueType::Quorum)
}

/// [`queue_type`] as the config file spells it.
pub fn queue_type_name() -> &'static str {
    match queue_type() {
        QueueType::Classic => "classic",
        QueueType::Quorum => "quorum",
    }
}

/// Deletes every queue and exchange under `prefix`.
pub async fn delete_prefix(url: &str, prefix: &str, providers: &[String]) {
    let config =
        BrokerConfig { url: RedactedUrl::new(url).into(), prefix: prefix.to_owned(), ..BrokerConfig::default() };
    let Ok(connection) = sendfleet_broker::connect_once(&config, "bench-cleanup").await else { return };
    let topology = Topology::new(&config);
    if let Ok(channel) = connection.create_channel().await {
        for queue in topology.all_queues(providers.iter().map(String::as_str)) {
            let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
        }
        for exchange in topology.all_exchanges() {
            let _ = channel.exchange_delete(exchange.as_str().into(), Default::default()).await;
        }
    }
    let _ = connection.close(200, "".into()).await;
}

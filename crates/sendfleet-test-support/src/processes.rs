//! The fleet as real processes: the `dispatcher`, `sender-worker` and `callback-ingest`
//! binaries of this build, spawned against one namespace and an in-process mock
//! provider, each with its own environment (`FAILPOINTS`), killed with `kill -9` and
//! restarted at will. For crash tests, which in-process services cannot give.
//!
//! The binaries are looked up next to the test executable (`target/debug/`), so the
//! workspace must be built first (`cargo build --workspace --all-targets`, as
//! `scripts/test.sh` does): that build compiles the failpoints in.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use sendfleet_broker::{Outgoing, Publisher};
use sendfleet_mock_provider::{Behaviour, MockConfig, MockHandle};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::{EventCollector, Namespace, TEST_API_KEY, TEST_CALLBACK_TOKEN};

/// A process of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// `dispatcher`.
    Dispatcher,
    /// `sender-worker` number n.
    Worker(usize),
    /// `callback-ingest`.
    Ingest,
}

impl Role {
    fn file_name(self) -> String {
        match self {
            Role::Worker(n) => format!("sender-worker-{n}"),
            other => other.binary().to_owned(),
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Role::Dispatcher => "dispatcher",
            Role::Worker(_) => "sender-worker",
            Role::Ingest => "callback-ingest",
        }
    }
}

/// What to start.
#[derive(Clone)]
pub struct ProcessFleetOptions {
    /// Test name (part of the prefix).
    pub name: &'static str,
    /// `[[providers]]` tables; `{mock}` is replaced by the mock's base URL.
    pub providers_toml: String,
    /// Provider ids (for queue clean-up).
    pub provider_ids: Vec<&'static str>,
    /// Extra top-level TOML (`[worker]`, `[dispatcher]` … sections; their `listen` is set here).
    pub extra_toml: String,
    /// The mock's initial behaviour.
    pub behaviour: Behaviour,
}

struct Proc {
    child: Child,
    failpoints: Option<String>,
}

/// A running fleet of processes.
pub struct ProcessFleet {
    /// The namespace.
    pub ns: Namespace,
    /// The mock provider.
    pub mock: MockHandle,
    /// Every event published.
    pub events: EventCollector,
    mock_shutdown: CancellationToken,
    config_path: PathBuf,
    ports: BTreeMap<Role, u16>,
    procs: BTreeMap<Role, Proc>,
    publisher: Publisher,
    _connection: sendfleet_broker::lapin::Connection,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/debug/deps/<test> → target/debug
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

impl ProcessFleet {
    /// Starts the mock, declares the topology and writes the config; no process yet.
    pub async fn new(options: ProcessFleetOptions) -> ProcessFleet {
        crate::init_tracing();
        let ns = Namespace::new(options.name, &options.provider_ids);
        let mock_shutdown = CancellationToken::new();
        let mock = sendfleet_mock_provider::start(
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind mock"),
            MockConfig {
                twilio_auth_token: None,
                api_keys: vec![TEST_API_KEY.into()],
                default_dlr_url: None,
                behaviour: options.behaviour,
            },
            mock_shutdown.clone(),
        )
        .await
        .expect("start mock");
        let ports: BTreeMap<Role, u16> =
            [Role::Dispatcher, Role::Ingest].into_iter().map(|role| (role, free_port())).collect();
        let ingest_port = ports[&Role::Ingest];
        let toml = format!(
            "{extra}\n[broker]\nurl = \"{amqp}\"\nprefix = \"{prefix}\"\n\n[redis]\nurl = \"{redis}\"\nkey_prefix = \"{prefix}\"\n\n[dispatcher]\nlisten = \"127.0.0.1:{dispatcher}\"\n# Fictional test numbers (+1 555 …).\ncheck_numbering_plan = false\n\n[callback_ingest]\nlisten = \"127.0.0.1:{ingest_port}\"\npublic_base_url = \"http://127.0.0.1:{ingest_port}\"\n{providers}",
            extra = options.extra_toml,
            amqp = crate::amqp_url(),
            prefix = ns.prefix,
            redis = crate::redis_url(),
            dispatcher = ports[&Role::Dispatcher],
            providers = options.providers_toml.replace("{mock}", &mock.base_url()),
        );
        let config_path = std::env::temp_dir().join(format!("{}.toml", ns.prefix));
        std::fs::write(&config_path, toml).expect("write config");

        let connection = ns.connect().await;
        let channel = connection.create_channel().await.expect("channel");
        let providers: Vec<String> = options.provider_ids.iter().map(|p| (*p).to_owned()).collect();
        ns.topology().declare(&channel, &providers).await.expect("declare");
        let publisher = Publisher::open(&connection).await.expect("publisher");
        let events = EventCollector::start(&ns.topology().events_queue()).await;
        ProcessFleet {
            ns,
            mock,
            events,
            mock_shutdown,
            config_path,
            ports,
            procs: BTreeMap::new(),
            publisher,
            _connection: connection,
        }
    }

    /// The config file every process reads.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Spawns `role` (with `FAILPOINTS` when given) and waits until it is ready.
    pub async fn spawn(&mut self, role: Role, failpoints: Option<&str>) {
        let port = *self.ports.entry(role).or_insert_with(free_port);
        let path = binary_dir().join(role.binary());
        assert!(path.exists(), "{} is not built: run `cargo build --workspace --all-targets` first", path.display());
        let mut command = Command::new(&path);
        command
            .env("SENDFLEET_CONFIG", &self.config_path)
            .env("TEST_API_KEY", TEST_API_KEY)
            .env("TEST_CALLBACK_TOKEN", TEST_CALLBACK_TOKEN)
            .env("RUST_LOG", "warn")
            .env_remove("FAILPOINTS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log_file(role))
            .kill_on_drop(true);
        match role {
            Role::Worker(_) => command.env("SENDFLEET_WORKER__LISTEN", format!("127.0.0.1:{port}")),
            Role::Dispatcher => command.env("SENDFLEET_DISPATCHER__LISTEN", format!("127.0.0.1:{port}")),
            Role::Ingest => &mut command,
        };
        if let Some(failpoints) = failpoints {
            command.env("FAILPOINTS", failpoints);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
        self.procs.insert(role, Proc { child, failpoints: failpoints.map(str::to_owned) });
        self.wait_ready(role, port).await;
    }

    async fn wait_ready(&mut self, role: Role, port: u16) {
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/health");
        for _ in 0..1_500 {
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return;
            }
            if let Some(proc) = self.procs.get_mut(&role)
                && let Ok(Some(status)) = proc.child.try_wait()
            {
                panic!("{role:?} exited during start-up: {status}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{role:?} never became ready on port {port}");
    }

    fn log_path(&self, role: Role) -> PathBuf {
        std::env::temp_dir().join(format!("{}-{}.log", self.ns.prefix, role.file_name()))
    }

    fn log_file(&self, role: Role) -> Stdio {
        match std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(role)) {
            Ok(file) => Stdio::from(file),
            Err(_) => Stdio::inherit(),
        }
    }

    /// Everything `role` wrote to standard error (logs, failpoints that fired), over all
    /// its restarts.
    pub fn log(&self, role: Role) -> String {
        std::fs::read_to_string(self.log_path(role)).unwrap_or_default()
    }

    /// `kill -9` of `role`, reaped.
    pub async fn kill(&mut self, role: Role) {
        if let Some(mut proc) = self.procs.remove(&role) {
            drop(proc.child.start_kill());
            drop(proc.child.wait().await);
        }
    }

    /// Whether `role` is running (a failpoint abort ends it).
    pub fn is_running(&mut self, role: Role) -> bool {
        self.procs.get_mut(&role).is_some_and(|proc| matches!(proc.child.try_wait(), Ok(None)))
    }

    /// Restarts every process that died, without its failpoints; returns the roles restarted.
    pub async fn restart_dead(&mut self) -> Vec<Role> {
        let mut dead = Vec::new();
        for (role, proc) in self.procs.iter_mut() {
            if !matches!(proc.child.try_wait(), Ok(None)) {
                dead.push(*role);
            }
        }
        for role in &dead {
            self.procs.remove(role);
            // A fresh port: the old one may have been taken meanwhile by another test's
            // process, whose /health would answer for ours while ours fails to bind
            // (seen once: a dispatcher restarted hundreds of times). Callback-ingest
            // keeps its port, which is in the providers' callback URLs.
            if *role != Role::Ingest {
                self.ports.insert(*role, free_port());
            }
            self.spawn(*role, None).await;
        }
        dead
    }

    /// The failpoints `role` was started with.
    pub fn failpoints(&self, role: Role) -> Option<&str> {
        self.procs.get(&role).and_then(|p| p.failpoints.as_deref())
    }

    /// callback-ingest's base URL.
    pub fn ingest_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[&Role::Ingest])
    }

    /// Publishes raw bytes to the requests exchange (confirmed).
    pub async fn publish_request_bytes(&self, bytes: &[u8]) {
        let exchange = self.ns.topology().requests_exchange();
        self.publisher.publish(Outgoing::new(&exchange, "", bytes)).await.expect("publish request");
    }

    /// The publisher of the test (for preloading many requests concurrently).
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// SIGTERM to `role`, as an orchestrator stops it; waits up to 20 s for it to exit
    /// and returns how it exited (`None`: it had not, and was killed).
    pub async fn terminate(&mut self, role: Role) -> Option<std::process::ExitStatus> {
        let mut proc = self.procs.remove(&role)?;
        if let Some(pid) = proc.child.id() {
            drop(std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status());
        }
        match tokio::time::timeout(Duration::from_secs(20), proc.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                drop(proc.child.start_kill());
                drop(proc.child.wait().await);
                None
            }
        }
    }

    /// SIGTERM to every process, then the mock and the namespace.
    pub async fn stop(mut self) {
        for role in self.procs.keys().copied().collect::<Vec<_>>() {
            self.terminate(role).await;
        }
        self.mock_shutdown.cancel();
        drop(std::fs::remove_file(&self.config_path));
        for role in self.ports.keys().copied().collect::<Vec<_>>() {
            drop(std::fs::remove_file(self.log_path(role)));
        }
        crate::delete_redis_keys(&self.ns.prefix).await;
        self.ns.cleanup().await;
    }
}

//! The Python example producer (`examples/python/producer.py`) against the real broker:
//! what upstream teams copy must actually produce requests the fleet delivers.

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

use sendfleet_protocol::EventKind;
use sendfleet_test_support::{Fleet, FleetOptions, wait_until};
use tokio::process::Command;

/// Creating the venv and installing pika and msgpack from PyPI.
const SETUP_TIMEOUT: Duration = Duration::from_secs(300);
/// The producer's own wait (`--wait-delivered`) plus interpreter start-up.
const PRODUCER_TIMEOUT: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// Runs `command` to completion within `timeout` (killing it otherwise) and returns its output.
async fn run_bounded(mut command: Command, timeout: Duration, what: &str) -> Output {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    match tokio::time::timeout(timeout, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(err)) => panic!("cannot run {what}: {err}"),
        Err(_) => panic!("{what} did not finish within {timeout:?}"),
    }
}

/// The venv's interpreter, creating the venv with `setup.sh` when it does not exist yet.
async fn example_python(root: &Path) -> PathBuf {
    let python = root.join("examples/python/.venv/bin/python");
    if python.exists() {
        return python;
    }
    let mut setup = Command::new("bash");
    setup.arg(root.join("examples/python/setup.sh")).current_dir(root);
    let output = run_bounded(setup, SETUP_TIMEOUT, "examples/python/setup.sh").await;
    assert!(
        output.status.success() && python.exists(),
        "examples/python/setup.sh failed ({}): this test needs python3 with venv and pip, and PyPI access.\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_producer_request_is_delivered() {
    let fleet = Fleet::start(FleetOptions::infobip("python")).await;
    let root = repo_root();
    let python = example_python(&root).await;
    let text = "Hello from the Python example, café";

    let mut producer = Command::new(&python);
    producer.current_dir(&root).arg(root.join("examples/python/producer.py")).args([
        "--amqp-url",
        &sendfleet_test_support::amqp_url(),
        "--prefix",
        &fleet.ns.prefix,
        "--to",
        "+15551230000",
        "--text",
        text,
        "--message-id",
        "py-test-1",
        "--wait-delivered",
        "30",
    ]);
    let output = run_bounded(producer, PRODUCER_TIMEOUT, "producer.py").await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("producer.py stdout:\n{stdout}producer.py stderr:\n{stderr}");
    assert!(output.status.success(), "producer.py failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("delivered"), "producer.py did not report the delivery:\n{stdout}");

    // The producer saw the event on its own queue; the collector reads the default events
    // queue, which may lag slightly behind.
    let is_ours =
        |e: &sendfleet_protocol::Event| e.kind == EventKind::Delivered && e.message_id.as_deref() == Some("py-test-1");
    assert!(
        wait_until(Duration::from_secs(10), || fleet.events.events().iter().any(is_ours)).await,
        "no delivered event for py-test-1 on the events queue: {:?}",
        fleet.events.events()
    );
    let events = fleet.events.events();
    let delivered = events.iter().find(|e| is_ours(e)).expect("delivered event");
    assert_eq!(
        delivered.metadata.get("source").map(String::as_str),
        Some("python-example"),
        "the request's metadata travels into the events"
    );
    assert_eq!(delivered.to.as_deref(), Some("+15551230000"));
    assert_eq!(fleet.events.undecodable(), 0);

    let received = fleet.mock.received();
    assert_eq!(received.len(), 1, "the mock received exactly one request: {received:?}");
    assert_eq!(received[0].message_ids, ["py-test-1"]);
    let body = received[0].body.as_ref().expect("body recorded");
    assert_eq!(body["messages"][0]["content"]["text"], text);
    fleet.stop().await;
}

//! A clean SIGTERM logs nothing at ERROR level: operators page on ERROR, so a fleet that
//! shuts down as asked must not look like a failure (lapin used to log "Connection error:
//! invalid channel state: Closing" from every service).

use std::time::Duration;

use sendfleet_mock_provider::Behaviour;
use sendfleet_protocol::EventKind;
use sendfleet_test_support::{ProcessFleet, ProcessFleetOptions, Role, wait_until};

use crate::common::{PROVIDER_IDS, providers, publish_all, rcs_request, sms_request};

/// Start → send SMS and RCS messages with delivery reports → SIGTERM each service:
/// every service exits 0 and no log line is at ERROR level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_sigterm_logs_no_error_in_any_service() {
    let mut fleet = ProcessFleet::new(ProcessFleetOptions {
        name: "clean-stop",
        providers_toml: providers(),
        provider_ids: PROVIDER_IDS.to_vec(),
        // JSON lines, so each line's level is read, not guessed from its text.
        extra_toml: "[telemetry]\nlog_format = \"json\"\n".into(),
        behaviour: Behaviour { latency_ms: 1, record_bodies: false, ..Behaviour::default() },
    })
    .await;
    let roles = [Role::Ingest, Role::Worker(0), Role::Dispatcher];
    for role in roles {
        fleet.spawn(role, None).await;
    }
    const N: usize = 200;
    let requests: Vec<_> = (0..N).map(|i| if i % 2 == 0 { sms_request(i) } else { rcs_request(i) }).collect();
    publish_all(&fleet, &requests).await;
    let sent = wait_until(Duration::from_secs(120), || {
        fleet.events.count(EventKind::Accepted) >= N && fleet.events.count(EventKind::Delivered) >= N
    })
    .await;
    assert!(
        sent,
        "{} of {N} accepted, {} delivered",
        fleet.events.count(EventKind::Accepted),
        fleet.events.count(EventKind::Delivered)
    );

    // Stopped in the order a rollout might: producers' side first.
    for role in [Role::Dispatcher, Role::Worker(0), Role::Ingest] {
        let status = fleet.terminate(role).await;
        assert!(status.is_some_and(|s| s.success()), "{role:?} exited {status:?}:\n{}", fleet.log(role));
    }
    let mut errors = Vec::new();
    for role in roles {
        for line in fleet.log(role).lines() {
            // A line that is not a JSON log line (a panic, say) counts as an error too.
            if serde_json::from_str::<serde_json::Value>(line).map_or(true, |l| l["level"] == "ERROR") {
                errors.push(format!("{role:?}: {line}"));
            }
        }
    }
    fleet.stop().await;
    assert!(errors.is_empty(), "logged at ERROR on a clean SIGTERM:\n{}", errors.join("\n"));
}

//! The other subcommands of the real `sendfleet` binary on the real broker and Redis:
//! rejected requests (list without removal, filters, show, replay), queues, status,
//! callback URLs, the config check and the exit codes.

mod common;

use std::path::PathBuf;

use sendfleet_broker::lapin::{
    Channel, Connection,
    options::{BasicAckOptions, BasicGetOptions},
};
use sendfleet_broker::{Outgoing, Publisher, REASON_CODE_HEADER, REASON_HEADER};
use sendfleet_config::Config;
use sendfleet_dispatcher::RejectedRequest;
use sendfleet_protocol::encode;
use sendfleet_test_support::{Namespace, TEST_API_KEY, TEST_CALLBACK_TOKEN};

const PROVIDERS: &str = r#"
[callback_ingest]
public_base_url = "https://hooks.example.com"

[[providers]]
id = "ib-sms"
kind = "infobip_sms"
base_url = "http://127.0.0.1:9"
api_key_env = "TEST_API_KEY"
sender_ids = ["ACMEIN"]
default_for_channel = true
callback_token_env = "TEST_CALLBACK_TOKEN"
"#;

fn config(ns: &Namespace) -> Config {
    let toml = format!(
        "[broker]\nurl = \"{}\"\nprefix = \"{prefix}\"\n[redis]\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\n{PROVIDERS}",
        sendfleet_test_support::amqp_url(),
        sendfleet_test_support::redis_url(),
        prefix = ns.prefix,
    );
    let lookup = |name: &str| match name {
        "TEST_API_KEY" => Some(TEST_API_KEY.to_owned()),
        _ => Some(TEST_CALLBACK_TOKEN.to_owned()),
    };
    Config::from_toml(&toml, &lookup, &sendfleet_providers::VENDORS).expect("config")
}

/// A request as an upstream producer would publish it (JSON → MessagePack map).
fn request(to: &str, provider: &str) -> Vec<u8> {
    let request = serde_json::json!({
        "schema_version": 1, "channel": "sms", "provider": provider, "to": to,
        "content": { "type": "text", "text": "hi" }
    });
    encode(&serde_json::from_value::<sendfleet_protocol::SendRequest>(request).expect("a request"))
}

/// The namespace's config file, topology, a channel and a publisher.
async fn setup(ns: &Namespace) -> (PathBuf, Connection, Channel, Publisher) {
    let config = config(ns);
    let path = common::write_config(&config, &ns.prefix);
    let connection = ns.connect().await;
    let channel = connection.create_channel().await.expect("channel");
    ns.topology().declare(&channel, &config.provider_ids()).await.expect("declare");
    let publisher = Publisher::open(&connection).await.expect("publisher");
    (path, connection, channel, publisher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_requests_are_listed_without_removal_filtered_shown_and_replayed_as_received() {
    let ns = Namespace::new("cli-rejected", &["ib-sms"]);
    let (path, connection, channel, publisher) = setup(&ns).await;
    // As the dispatcher rejects: two for a provider not configured yet, one bad number.
    let rejections = [
        ("unknown_provider", request("+15550000001", "ib-new")),
        ("invalid_destination", request("12345", "ib-sms")),
        ("unknown_provider", request("+15550000002", "ib-new")),
    ];
    let (dead, key) = (ns.topology().dead_exchange(), sendfleet_broker::Topology::rejected_key());
    for (code, original) in &rejections {
        let body = encode(&RejectedRequest {
            schema_version: 1,
            reason_code: (*code).into(),
            reason: format!("{code}: test"),
            original: original.clone(),
        });
        let outgoing = Outgoing::new(&dead, key, &body)
            .header(REASON_CODE_HEADER, *code)
            .header(REASON_HEADER, "test")
            .timestamp(1_700_000_000);
        publisher.publish(outgoing).await.expect("publish rejection");
    }
    let rejected = ns.topology().rejected_queue();

    let all = common::json(&common::run(&path, &["rejected", "list", "--json"]).await);
    assert_eq!(all.as_array().map(Vec::len), Some(3), "{all}");
    let new_provider = common::json(
        &common::run(&path, &["rejected", "list", "--reason", "unknown_provider", "--provider", "ib-new", "--json"])
            .await,
    );
    let listed = new_provider.as_array().expect("a list");
    assert_eq!(listed.len(), 2, "{new_provider}");
    assert!(listed.iter().all(|e| e["age_seconds"].as_u64() > Some(86_400)), "age from the rejection's timestamp");
    let recent = common::json(&common::run(&path, &["rejected", "list", "--newer-than", "1h", "--json"]).await);
    assert_eq!(recent.as_array().map(Vec::len), Some(0));
    let id = listed[0]["id"].as_str().expect("an id").to_owned();
    let shown = common::json(&common::run(&path, &["rejected", "show", &id]).await);
    assert_eq!(
        (shown["body"]["to"].as_str(), shown["reason_code"].as_str()),
        (Some("+15550000001"), Some("unknown_provider"))
    );
    let missing = common::run(&path, &["rejected", "show", "r-000000000000"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(ns.queue_depth(&rejected).await, 3, "nothing taken out by looking");

    // The provider was added: replay those two. The requests queue has no dispatcher
    // consuming here, so the copies wait there to be compared.
    let output = common::run(&path, &["rejected", "replay", "--reason", "unknown_provider", "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(common::json(&output)["replayed"], 2);
    assert_eq!(ns.queue_depth(&rejected).await, 1, "the bad number stays");
    let requests = ns.topology().requests_queue();
    let mut replayed = Vec::new();
    while let Ok(Some(message)) = channel.basic_get(requests.as_str().into(), BasicGetOptions::default()).await {
        replayed.push((message.delivery.data.clone(), *message.delivery.properties.timestamp()));
        drop(message.delivery.acker.ack(BasicAckOptions::default()).await);
    }
    let mut expected: Vec<(Vec<u8>, Option<u64>)> =
        [&rejections[0].1, &rejections[2].1].into_iter().map(|r| (r.clone(), Some(1_700_000_000))).collect();
    // Replay publishes on a pool of confirm channels, so the copies' order is not theirs
    // in the rejected queue (nor promised): compare them as a set.
    replayed.sort();
    expected.sort();
    assert_eq!(replayed, expected, "the bytes as received, with the rejection's timestamp (stable request ids)");
    drop(connection.close(200, "".into()).await);
    drop(std::fs::remove_file(&path));
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_status_callback_urls_and_exit_codes() {
    let ns = Namespace::new("cli-misc", &["ib-sms"]);
    let (path, connection, _channel, publisher) = setup(&ns).await;
    for _ in 0..3 {
        publisher.publish(Outgoing::new(&ns.topology().jobs_exchange(), "ib-sms", b"x")).await.expect("publish");
    }

    let depths = common::json(&common::run(&path, &["queues", "--json"]).await);
    let jobs = depths
        .as_array()
        .expect("a list")
        .iter()
        .find(|q| q["provider"] == "ib-sms" && q["lane"] == "normal")
        .expect("the jobs queue");
    assert_eq!((jobs["ready"].as_u64(), jobs["consumers"].as_u64()), (Some(3), Some(0)), "{depths}");
    let tiers = depths.as_array().expect("a list").iter().filter(|q| q["kind"] == "retry").count();
    assert_eq!(tiers, sendfleet_broker::RETRY_TIERS.len());

    let unknown = common::run(&path, &["status", "no-such-message"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no status record"));

    let urls = common::run(&path, &["callback-urls"]).await;
    assert_eq!(
        String::from_utf8_lossy(&urls.stdout).lines().next(),
        Some(
            format!(
                "ib-sms\tdelivery reports\thttps://hooks.example.com/callbacks/ib-sms/{TEST_CALLBACK_TOKEN}/delivery"
            )
            .as_str()
        )
    );
    let checked = common::run(&path, &["check-config"]).await;
    assert_eq!(checked.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&checked.stdout).contains("config OK: 1 provider(s) (ib-sms)"));

    // A bad config names the field and exits 64, as do bad arguments.
    let bad = std::env::temp_dir().join(format!("{}-bad.toml", ns.prefix));
    std::fs::write(&bad, "[status]\nttl_seconds = 0\n").expect("write");
    let refused = common::run(&bad, &["check-config"]).await;
    assert_eq!(refused.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("status.ttl_seconds"));
    assert_eq!(common::run(&path, &["dead-letters", "list", "--older-than", "soon"]).await.status.code(), Some(64));
    assert_eq!(common::run(&path, &["no-such-command"]).await.status.code(), Some(64));
    assert_eq!(common::run(&path, &["dead-letters", "replay", "--rate", "0"]).await.status.code(), Some(64));
    assert_eq!(common::run(&path, &["--help"]).await.status.code(), Some(0));
    drop(std::fs::remove_file(&bad));
    drop(std::fs::remove_file(&path));
    drop(connection.close(200, "".into()).await);
    ns.cleanup().await;
}

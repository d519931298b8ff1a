//! The status store on the real Redis: monotonic records whatever the order updates
//! arrive in, the SMS leg, replays, expiry, and a Redis that comes back empty.

use std::time::Duration;

use sendfleet_config::Config;
use sendfleet_protocol::{Channel, Event, EventKind, ProviderStatus};
use sendfleet_status::{State, StatusStore, StatusUpdate, StatusWriter};

const FLUSH: Duration = Duration::from_secs(10);

fn config(redis_url: &str, prefix: &str) -> Config {
    let toml = format!("[redis]\nurl = \"{redis_url}\"\nkey_prefix = \"{prefix}\"\n[status]\nttl_seconds = 600\n");
    Config::from_toml(&toml, &|_| None, &sendfleet_providers::VENDORS).expect("config")
}

fn prefix() -> String {
    format!("sft-status-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

fn update(id: &str, state: State, at_ms: i64) -> StatusUpdate {
    let mut update = StatusUpdate::new(id, state, at_ms);
    update.channel = Some(Channel::Sms);
    update.provider = Some("ib-sms".into());
    update
}

fn delivered_event(id: &str, at_ms: i64) -> Event {
    let mut event = Event::new(EventKind::Delivered, "ib-sms", Channel::Sms);
    event.message_id = Some(id.into());
    event.at_ms = at_ms;
    event.status = Some(ProviderStatus {
        group_id: 3,
        group_name: Some("DELIVERED".into()),
        id: 5,
        name: Some("DELIVERED_TO_HANDSET".into()),
        description: None,
    });
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_message_stays_delivered_after_a_late_accepted_and_a_repeated_report() {
    let prefix = prefix();
    let config = config(&sendfleet_test_support::redis_url(), &prefix);
    let (writer, store) =
        (StatusWriter::start(&config).expect("writer"), StatusStore::connect(&config).expect("store"));

    let mut accepted = update("m-1", State::Accepted, 1_000);
    accepted.attempts = 1;
    writer.record(accepted.clone());
    assert!(writer.flush(FLUSH).await);
    let record = store.get("m-1").await.expect("read").expect("a record");
    assert_eq!((record.state, record.is_final, record.attempts), (State::Accepted, false, 1));

    writer.record_event(&delivered_event("m-1", 2_000));
    // Late: an accepted written again (a redelivered job found already sent) and the
    // same report posted twice by the provider.
    let mut late = accepted;
    late.at_ms = 3_000;
    writer.record(late);
    writer.record_event(&delivered_event("m-1", 2_000));
    assert!(writer.flush(FLUSH).await);

    let record = store.get("m-1").await.expect("read").expect("a record");
    assert_eq!(record.state, State::Delivered);
    assert!(record.is_final);
    let walked: Vec<(State, i64)> = record.transitions.iter().map(|t| (t.state, t.at_ms)).collect();
    assert_eq!(walked, [(State::Accepted, 1_000), (State::Delivered, 2_000)], "first time of each state");
    assert_eq!(record.stale_updates, 2, "both late updates reached Redis and were refused");
    assert_eq!(record.provider_status.as_ref().map(|s| s.id), Some(5));
    assert_eq!((record.channel, record.provider.as_deref()), (Some(Channel::Sms), Some("ib-sms")));
    let ttl = record.expires_in_seconds.expect("a TTL");
    assert!((590..=600).contains(&ttl), "status.ttl_seconds from its last change: {ttl}");
    assert_eq!(store.get("no-such-message").await.expect("read"), None);
    sendfleet_test_support::delete_redis_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_in_any_order_end_at_the_highest_state() {
    let prefix = prefix();
    let config = config(&sendfleet_test_support::redis_url(), &prefix);
    let writers = [StatusWriter::start(&config).expect("writer"), StatusWriter::start(&config).expect("writer")];
    let store = StatusStore::connect(&config).expect("store");
    let walk = [State::Retrying, State::Accepted, State::Delivered, State::Seen];
    // 200 messages, each one's four updates in a different order, split over two
    // writers (two processes racing).
    for n in 0..200usize {
        for k in 0..walk.len() {
            let state = walk[(k + n) % walk.len()];
            writers[(n + k) % 2].record(update(&format!("m-{n}"), state, 1_000 + state.rank() as i64));
        }
    }
    for writer in &writers {
        assert!(writer.flush(FLUSH).await);
    }
    for n in 0..200 {
        let record = store.get(&format!("m-{n}")).await.expect("read").expect("a record");
        assert_eq!(record.state, State::Seen, "m-{n}: {record:?}");
        assert_eq!(record.transitions.len(), 4, "every state's time kept: {record:?}");
        assert!(record.stale_updates <= 3, "m-{n}: {record:?}");
    }
    sendfleet_test_support::delete_redis_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rcs_record_shows_its_sms_leg_and_a_replay_starts_a_new_life() {
    let prefix = prefix();
    let config = config(&sendfleet_test_support::redis_url(), &prefix);
    let (writer, store) =
        (StatusWriter::start(&config).expect("writer"), StatusStore::connect(&config).expect("store"));
    let mut rcs = update("r-1", State::FallbackTriggered, 1_000);
    rcs.channel = Some(Channel::Rcs);
    rcs.sms_leg = Some("r-1.sms".into());
    rcs.reason_code = Some("not_capable".into());
    writer.record(rcs);
    let mut sms = update("r-1.sms", State::Accepted, 1_100);
    sms.fallback_for = Some("r-1".into());
    writer.record(sms);
    // A message of its own whose id happens to end in ".sms" is not a leg.
    writer.record(update("x-1", State::Accepted, 1_000));
    writer.record(update("x-1.sms", State::Accepted, 1_000));
    assert!(writer.flush(FLUSH).await);

    let record = store.get("r-1").await.expect("read").expect("a record");
    assert_eq!((record.state, record.reason_code.as_deref()), (State::FallbackTriggered, Some("not_capable")));
    let leg = record.sms_leg.as_ref().expect("the SMS leg");
    assert_eq!(
        (leg.message_id.as_str(), leg.state, leg.fallback_for.as_deref()),
        ("r-1.sms", State::Accepted, Some("r-1"))
    );
    assert_eq!(store.get("x-1").await.expect("read").expect("a record").sms_leg, None);

    // Dead-lettered, then replayed: the record starts again from `replayed`.
    let mut failed = update("d-1", State::Failed, 1_000);
    failed.attempts = 3;
    failed.reason_code = Some("retries_exhausted".into());
    writer.record(failed);
    assert!(writer.flush(FLUSH).await);
    store.reset_for_replay(&["d-1"], 5_000).await.expect("reset");
    let record = store.get("d-1").await.expect("read").expect("a record");
    assert_eq!((record.state, record.attempts, record.replays), (State::Replayed, 0, 1));
    assert_eq!((record.replayed_from, record.reason_code.as_deref()), (Some(State::Failed), None));
    assert_eq!(record.provider.as_deref(), Some("ib-sms"), "what identifies the message stays");
    let mut accepted = update("d-1", State::Accepted, 6_000);
    accepted.attempts = 1;
    writer.record(accepted);
    assert!(writer.flush(FLUSH).await);
    let record = store.get("d-1").await.expect("read").expect("a record");
    assert_eq!((record.state, record.attempts), (State::Accepted, 1));
    let walked: Vec<State> = record.transitions.iter().map(|t| t.state).collect();
    assert_eq!(walked, [State::Replayed, State::Accepted]);
    sendfleet_test_support::delete_redis_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_comes_back_empty_gets_the_script_again_and_a_switched_off_store_writes_nothing() {
    let mut redis = sendfleet_test_support::RedisServer::start();
    let config = config(&redis.url(), "sft-status-own");
    let (writer, store) =
        (StatusWriter::start(&config).expect("writer"), StatusStore::connect(&config).expect("store"));
    writer.record(update("m-1", State::Accepted, 1_000));
    assert!(writer.flush(FLUSH).await);
    assert_eq!(store.get("m-1").await.expect("read").map(|r| r.state), Some(State::Accepted));
    // Restarted without persistence: no records, no cached script.
    redis.stop();
    redis.resume();
    writer.record(update("m-2", State::Accepted, 1_000));
    assert!(writer.flush(FLUSH).await);
    assert_eq!(store.get("m-2").await.expect("read").map(|r| r.state), Some(State::Accepted), "NOSCRIPT handled");

    let off = Config { status: sendfleet_config::StatusConfig { enabled: false, ..config.status.clone() }, ..config };
    let (writer, store) = (StatusWriter::start(&off).expect("writer"), StatusStore::connect(&off).expect("store"));
    assert!(!writer.is_enabled());
    writer.record(update("m-3", State::Accepted, 1_000));
    assert!(writer.flush(FLUSH).await);
    assert!(matches!(store.get("m-1").await, Err(sendfleet_status::StatusError::Disabled)));
}

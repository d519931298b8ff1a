//! Firing against the real RabbitMQ and Redis: one SMS job however many triggers race,
//! and a job that was not confirmed is restored for the next trigger.

use std::time::Duration;

use sendfleet_broker::{
    Publisher, Topology,
    lapin::{Connection, options::BasicGetOptions},
};
use sendfleet_config::Config;
use sendfleet_fallback::{FallbackReason, Fallbacks, FireOutcome, fallback_job};
use sendfleet_protocol::{
    Channel, Content, Event, EventKind, ProviderErrorInfo, ProviderStatus, SendJob, SendOptions, SmsFallback, decode,
};

use sendfleet_test_support::{Namespace, amqp_url, redis_url};

struct Env {
    config: Config,
    connection: Connection,
    ns: Namespace,
}

impl Env {
    async fn new(name: &str) -> Env {
        let ns = Namespace::new(name, &["rcs", "sms"]);
        let prefix = &ns.prefix;
        let toml = format!(
            r#"
[broker]
url = "{}"
prefix = "{prefix}"
[redis]
url = "{}"
key_prefix = "{prefix}"
[[providers]]
id = "rcs"
kind = "infobip_rcs"
base_url = "http://127.0.0.1:9"
api_key_env = "K"
sender_ids = ["Agent"]
default_for_channel = true
[[providers]]
id = "sms"
kind = "infobip_sms"
base_url = "http://127.0.0.1:9"
api_key_env = "K"
sender_ids = ["ACME"]
default_for_channel = true
"#,
            amqp_url(),
            redis_url()
        );
        let config = Config::from_toml(&toml, &|_| Some("key".into())).expect("config");
        let connection = ns.connect().await;
        Env { config, connection, ns }
    }

    fn topology(&self) -> Topology {
        Topology::new(&self.config.broker)
    }

    async fn declare(&self, providers: &[&str]) {
        let channel = self.connection.create_channel().await.unwrap();
        let providers: Vec<String> = providers.iter().map(|p| (*p).to_owned()).collect();
        self.topology().declare(&channel, &providers).await.unwrap();
    }

    async fn drain(&self, queue: &str) -> Vec<Vec<u8>> {
        let channel = self.connection.create_channel().await.unwrap();
        let mut bodies = Vec::new();
        while let Ok(Some(message)) = channel.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await {
            bodies.push(message.delivery.data.clone());
        }
        bodies
    }

    async fn cleanup(self) {
        drop(self.connection.close(200, "".into()).await);
        self.ns.cleanup().await;
    }
}

fn rcs_job(id: &str) -> SendJob {
    SendJob {
        schema_version: 1,
        message_id: id.into(),
        provider: "rcs".into(),
        channel: Channel::Rcs,
        to: "+919876543210".into(),
        sender: "Agent".into(),
        content: Content::Text { text: "rich".into(), suggestions: vec![] },
        options: SendOptions::default(),
        fallback: Some(SmsFallback {
            text: "plain".into(),
            sender: None,
            provider: None,
            regional: None,
            validity_period_seconds: None,
        }),
        metadata: [("k".to_owned(), "v".to_owned())].into(),
        trace_id: "trace-9".into(),
        attempts: 0,
        first_attempt_at_ms: None,
        created_at_ms: 1,
        fallback_for: None,
    }
}

fn not_capable_report(id: &str) -> Event {
    let mut event = Event::new(EventKind::Undelivered, "rcs", Channel::Rcs);
    event.message_id = Some(id.into());
    event.status = Some(ProviderStatus {
        group_id: 2,
        group_name: Some("UNDELIVERABLE".into()),
        id: 4,
        name: Some("UNDELIVERABLE_REJECTED_OPERATOR".into()),
        description: None,
    });
    event.error = Some(ProviderErrorInfo {
        group_id: 1,
        id: 7002,
        name: Some("EC_UNKNOWN_USER".into()),
        description: None,
        permanent: true,
    });
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_reports_on_two_instances_publish_one_sms() {
    let env = Env::new("fb-once").await;
    env.declare(&["rcs", "sms"]).await;
    // Two callback-ingest instances: separate pools, separate broker channels.
    let (a, b) = (Fallbacks::connect(&env.config).unwrap(), Fallbacks::connect(&env.config).unwrap());
    let (pa, pb) = (Publisher::open(&env.connection).await.unwrap(), Publisher::open(&env.connection).await.unwrap());
    const MESSAGES: usize = 50;
    for i in 0..MESSAGES {
        let rcs = rcs_job(&format!("m-{i}"));
        let sms = fallback_job(&env.config, &rcs).unwrap().unwrap();
        a.arm(&rcs.message_id, &sms, Duration::from_secs(600)).await.unwrap();
    }
    let mut calls = Vec::new();
    for i in 0..MESSAGES {
        for copy in 0..4 {
            let (fallbacks, publisher) = if copy % 2 == 0 { (a.clone(), pa.clone()) } else { (b.clone(), pb.clone()) };
            let report = not_capable_report(&format!("m-{i}"));
            calls.push(tokio::spawn(async move { fallbacks.on_report(Some(&publisher), &report).await }));
        }
    }
    for call in calls {
        call.await.unwrap().expect("every duplicate is answered without error");
    }
    let jobs: Vec<SendJob> =
        env.drain(&env.topology().jobs_queue("sms")).await.iter().map(|b| decode(b).unwrap()).collect();
    assert_eq!(jobs.len(), MESSAGES, "one SMS per RCS message");
    let mut originals: Vec<String> = jobs.iter().filter_map(|j| j.fallback_for.clone()).collect();
    originals.sort();
    originals.dedup();
    assert_eq!(originals.len(), MESSAGES);
    let job = jobs.iter().find(|j| j.fallback_for.as_deref() == Some("m-7")).unwrap();
    assert_eq!((job.channel, job.provider.as_str(), job.message_id.as_str()), (Channel::Sms, "sms", "m-7.sms"));

    let events: Vec<Event> =
        env.drain(&env.topology().events_queue()).await.iter().map(|b| decode(b).unwrap()).collect();
    assert_eq!(events.len(), MESSAGES, "one fallback_triggered event per message");
    let event = events.iter().find(|e| e.message_id.as_deref() == Some("m-7")).unwrap();
    assert_eq!(event.kind, EventKind::FallbackTriggered);
    assert_eq!(event.details.get("reason_code").map(String::as_str), Some("not_capable"));
    assert_eq!(event.details.get("fallback_message_id").map(String::as_str), Some("m-7.sms"));
    assert!(event.reason.as_deref().unwrap().contains("7002"), "{:?}", event.reason);
    assert_eq!(event.trace_id.as_deref(), Some("trace-9"));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_fallback_is_restored_and_the_caller_fails() {
    let env = Env::new("fb-restore").await;
    // Exchanges exist, but no SMS queue: the mandatory job publish is returned unroutable.
    env.declare(&[]).await;
    let fallbacks = Fallbacks::connect(&env.config).unwrap();
    let publisher = Publisher::open(&env.connection).await.unwrap();
    let rcs = rcs_job("r-1");
    let sms = fallback_job(&env.config, &rcs).unwrap().unwrap();
    fallbacks.arm("r-1", &sms, Duration::from_secs(600)).await.unwrap();
    let err = fallbacks.on_report(Some(&publisher), &not_capable_report("r-1")).await.unwrap_err();
    assert!(err.to_string().contains("not published"), "{err}");
    let err = fallbacks.on_report(None, &not_capable_report("r-1")).await.unwrap_err();
    assert!(err.to_string().contains("not connected"), "still armed, so it needs a broker: {err}");

    // The provider retries the callback once the broker can take the job.
    env.declare(&["sms"]).await;
    let outcome =
        fallbacks.fire(&publisher, "r-1", "rcs", FallbackReason::NotCapable, "retried callback").await.unwrap();
    assert!(matches!(&outcome, FireOutcome::Published(job) if job.message_id == "r-1.sms"), "{outcome:?}");
    let again = fallbacks.fire(&publisher, "r-1", "rcs", FallbackReason::NotCapable, "again").await.unwrap();
    assert_eq!(again, FireOutcome::AlreadyFired);
    assert_eq!(env.drain(&env.topology().jobs_queue("sms")).await.len(), 1);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_and_seen_reports_disarm() {
    let env = Env::new("fb-disarm").await;
    env.declare(&["rcs", "sms"]).await;
    let fallbacks = Fallbacks::connect(&env.config).unwrap();
    let publisher = Publisher::open(&env.connection).await.unwrap();
    for id in ["d-1", "s-1"] {
        let sms = fallback_job(&env.config, &rcs_job(id)).unwrap().unwrap();
        fallbacks.arm(id, &sms, Duration::from_secs(600)).await.unwrap();
    }
    let mut delivered = Event::new(EventKind::Delivered, "rcs", Channel::Rcs);
    delivered.message_id = Some("d-1".into());
    let mut seen = Event::new(EventKind::Seen, "rcs", Channel::Rcs);
    seen.message_id = Some("s-1".into());
    // No publisher needed to disarm.
    fallbacks.on_reports(None, &[delivered, seen]).await.unwrap();
    for id in ["d-1", "s-1"] {
        fallbacks.on_report(Some(&publisher), &not_capable_report(id)).await.unwrap();
    }
    assert!(env.drain(&env.topology().jobs_queue("sms")).await.is_empty(), "a late failure sends nothing");
    env.cleanup().await;
}

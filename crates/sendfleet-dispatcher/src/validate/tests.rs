use std::collections::BTreeMap;

use sendfleet_config::Config;
use sendfleet_protocol::{Channel, Content, IndiaDlt, Recipient, Regional, SendOptions, SendRequest};

use super::*;

fn config() -> Config {
    let toml = r#"
[[providers]]
id = "sms"
kind = "infobip_sms"
base_url = "https://x.api.infobip.com"
api_key_env = "K"
sender_ids = ["ACME", "ACME2"]
default_for_channel = true
require_india_dlt = true

[[providers]]
id = "rcs"
kind = "infobip_rcs"
base_url = "https://x.api.infobip.com"
api_key_env = "K"
sender_ids = ["Agent"]
"#;
    Config::from_toml(toml, &|_| Some("k".into())).unwrap()
}

fn sms(to: &str) -> SendRequest {
    SendRequest {
        schema_version: 1,
        message_id: None,
        channel: Channel::Sms,
        provider: None,
        to: Some(to.into()),
        recipients: vec![],
        sender: None,
        content: Some(Content::Text { text: "hello".into(), suggestions: vec![] }),
        template: None,
        options: SendOptions::default(),
        fallback: None,
        metadata: BTreeMap::from([("k".into(), "v".into())]),
        trace_id: None,
    }
}

#[test]
fn a_good_request_becomes_one_job_on_the_default_provider() {
    let jobs = plan(sms("+15551234567"), &config()).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].provider, "sms");
    assert_eq!(jobs[0].sender, "ACME");
    assert_eq!(jobs[0].metadata.get("k").map(String::as_str), Some("v"));
    assert!(!jobs[0].message_id.is_empty() && !jobs[0].trace_id.is_empty());
}

#[test]
fn bad_destinations_are_rejected_with_the_number() {
    for bad in ["15551234567", "+1555", "+0123456789", "+1555123456a", "+1234567890123456"] {
        let err = plan(sms(bad), &config()).unwrap_err();
        assert_eq!(err.code, "invalid_destination", "{bad}");
        assert!(err.reason.contains(bad));
    }
}

#[test]
fn provider_resolution_errors_are_explicit() {
    let mut request = sms("+15551234567");
    request.provider = Some("nope".into());
    assert_eq!(plan(request.clone(), &config()).unwrap_err().code, "unknown_provider");
    request.provider = Some("rcs".into());
    assert_eq!(plan(request.clone(), &config()).unwrap_err().code, "channel_mismatch");
    request.provider = None;
    request.channel = Channel::Rcs;
    assert_eq!(plan(request, &config()).unwrap_err().code, "no_default_provider");
}

#[test]
fn india_needs_dlt_ids_where_the_provider_requires_them() {
    let err = plan(sms("+919876543210"), &config()).unwrap_err();
    assert_eq!(err.code, "missing_india_dlt");
    let mut request = sms("+919876543210");
    request.options.regional = Some(Regional {
        india_dlt: Some(IndiaDlt {
            principal_entity_id: "1101".into(),
            content_template_id: None,
            telemarketer_id: None,
        }),
        turkey_iys: None,
    });
    assert!(plan(request, &config()).is_ok());
}

#[test]
fn content_must_fit_the_channel() {
    let mut request = sms("+15551234567");
    request.content = None;
    assert_eq!(plan(request.clone(), &config()).unwrap_err().code, "missing_content");
    request.content = Some(Content::File { url: "https://x".into(), thumbnail_url: None, suggestions: vec![] });
    assert_eq!(plan(request.clone(), &config()).unwrap_err().code, "content_not_for_channel");
    request.channel = Channel::Rcs;
    request.provider = Some("rcs".into());
    request.content = Some(Content::Text { text: "x".repeat(MAX_RCS_TEXT + 1), suggestions: vec![] });
    assert_eq!(plan(request, &config()).unwrap_err().code, "content_too_long");
}

#[test]
fn recipients_expand_with_their_own_ids_and_metadata() {
    let mut request = sms("+15551234567");
    request.to = None;
    request.recipients = (0..3)
        .map(|i| Recipient {
            to: format!("+1555123456{i}"),
            message_id: Some(format!("m{i}")),
            variables: BTreeMap::new(),
            metadata: BTreeMap::from([("i".into(), i.to_string())]),
        })
        .collect();
    let jobs = plan(request, &config()).unwrap();
    assert_eq!(jobs.iter().map(|j| j.message_id.as_str()).collect::<Vec<_>>(), ["m0", "m1", "m2"]);
    assert_eq!(jobs[2].metadata.get("i").map(String::as_str), Some("2"));
    assert_eq!(jobs[2].metadata.get("k").map(String::as_str), Some("v"));
    assert!(jobs.iter().all(|j| j.trace_id == jobs[0].trace_id));
}

#[test]
fn unknown_senders_are_rejected() {
    let mut request = sms("+15551234567");
    request.sender = Some("OTHER".into());
    assert_eq!(plan(request.clone(), &config()).unwrap_err().code, "unknown_sender");
    request.sender = Some("ACME2".into());
    assert_eq!(plan(request, &config()).unwrap()[0].sender, "ACME2");
}

use std::collections::BTreeMap;

use sendfleet_config::Config;
use sendfleet_protocol::{
    Channel, Content, IndiaDlt, Recipient, Regional, SendOptions, SendRequest, SmsFallback, TurkeyIys,
};

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
    Config::from_toml(toml, &|_| Some("k".into()), &sendfleet_providers::VENDORS).unwrap()
}

fn sms(to: &str) -> SendRequest {
    SendRequest {
        priority: Default::default(),
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
    let jobs = plan(sms("+14155551237"), &config()).unwrap();
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
fn a_number_outside_its_countrys_plan_is_rejected_unless_the_check_is_off() {
    let err = plan(sms("+15551234567"), &config()).unwrap_err();
    assert_eq!(err.code, "invalid_destination");
    assert!(err.reason.contains("numbering plan"), "{}", err.reason);
    let mut config = config();
    config.dispatcher.check_numbering_plan = false;
    assert_eq!(plan(sms("+15551234567"), &config).unwrap()[0].to, "+15551234567");
}

#[test]
fn provider_resolution_errors_are_explicit() {
    let mut request = sms("+14155551237");
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
    let mut request = sms("+14155551237");
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
    let mut request = sms("+14155551237");
    request.to = None;
    request.recipients = (0..3)
        .map(|i| Recipient {
            to: format!("+1415555123{i}"),
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
    let mut request = sms("+14155551237");
    request.sender = Some("OTHER".into());
    assert_eq!(plan(request.clone(), &config()).unwrap_err().code, "unknown_sender");
    request.sender = Some("ACME2".into());
    assert_eq!(plan(request, &config()).unwrap()[0].sender, "ACME2");
}

fn rich_config() -> Config {
    let toml = r#"
[[providers]]
id = "sms"
kind = "infobip_sms"
base_url = "https://x.api.infobip.com"
api_key_env = "K"
sender_ids = ["ACME", "ACMEFB"]
default_for_channel = true
require_india_dlt = true
regional = { turkey_brand_code = 777, turkey_recipient_type = "TACIR" }

[[providers]]
id = "rcs"
kind = "infobip_rcs"
base_url = "https://x.api.infobip.com"
api_key_env = "K"
sender_ids = ["Agent"]
default_for_channel = true
sms_fallback = { sender_id = "ACMEFB", india = true, principal_entity_id = "PE-1" }

[[providers]]
id = "rcs-plain"
kind = "jiocx_rcs"
base_url = "https://x.example.com"
api_key_env = "K"
sender_ids = ["JioAgent"]

[[providers]]
id = "rcs-off"
kind = "infobip_rcs"
base_url = "https://x.api.infobip.com"
api_key_env = "K"
sender_ids = ["Agent"]
sms_fallback = { enabled = false }

[[templates]]
id = "shipped"
content = { type = "text", text = "Hi {{name}}, order {{order}} shipped" }

[[templates]]
id = "card"
content = { type = "card", orientation = "horizontal", alignment = "right", card = { title = "{{title}}", media = { url = "https://img.example/{{sku}}.png", height = "short" } } }
"#;
    Config::from_toml(toml, &|_| Some("k".into()), &sendfleet_providers::VENDORS).unwrap()
}

fn rcs(to: &str) -> SendRequest {
    SendRequest {
        priority: Default::default(),
        channel: Channel::Rcs,
        content: Some(Content::Text { text: "rich".into(), suggestions: vec![] }),
        metadata: BTreeMap::new(),
        ..sms(to)
    }
}

fn recipient(to: &str, vars: &[(&str, &str)]) -> Recipient {
    Recipient {
        to: to.into(),
        message_id: None,
        variables: vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        metadata: BTreeMap::new(),
    }
}

#[test]
fn templates_render_per_recipient_and_a_missing_variable_names_it() {
    let config = rich_config();
    let mut request = sms("+14155551237");
    request.content = None;
    request.to = None;
    request.template = Some(sendfleet_protocol::TemplateRef {
        id: "shipped".into(),
        variables: BTreeMap::from([("order".to_owned(), "A-1".to_owned())]),
    });
    request.recipients = vec![
        recipient("+14155551237", &[("name", "Asha")]),
        recipient("+14155551238", &[("name", "Ravi"), ("order", "B-2")]),
    ];
    let jobs = plan(request.clone(), &config).unwrap();
    assert_eq!(jobs[0].content, Content::Text { text: "Hi Asha, order A-1 shipped".into(), suggestions: vec![] });
    assert_eq!(jobs[1].content, Content::Text { text: "Hi Ravi, order B-2 shipped".into(), suggestions: vec![] });

    request.recipients.push(recipient("+14155551239", &[]));
    let err = plan(request.clone(), &config).unwrap_err();
    assert_eq!(err.code, "missing_variable");
    assert!(err.reason.contains("'name'") && err.reason.contains("'shipped'"), "{}", err.reason);

    // The planner reports it per recipient, as bulk does per line.
    request.recipients.clear();
    let planner = Planner::new(request.clone(), &config).unwrap();
    assert!(planner.job(recipient("+14155551237", &[("name", "A")])).is_ok());
    assert_eq!(planner.job(recipient("+14155551237", &[])).unwrap_err().code, "missing_variable");

    request.template.as_mut().unwrap().id = "nope".into();
    let err = Planner::new(request, &config).err().unwrap();
    assert_eq!(err.code, "unknown_template");
    assert!(err.reason.contains("'nope'"));
}

#[test]
fn rich_card_templates_render_and_are_checked_for_the_channel() {
    let config = rich_config();
    let mut request = rcs("+14155551237");
    request.content = None;
    request.template = Some(sendfleet_protocol::TemplateRef {
        id: "card".into(),
        variables: BTreeMap::from([("title".to_owned(), "Sale".to_owned()), ("sku".to_owned(), "X1".to_owned())]),
    });
    let jobs = plan(request.clone(), &config).unwrap();
    let Content::Card { card, .. } = &jobs[0].content else { panic!("a card") };
    assert_eq!(card.title.as_deref(), Some("Sale"));
    assert_eq!(card.media.as_ref().unwrap().url, "https://img.example/X1.png");
    // The same card template on SMS is refused: SMS carries text only.
    request.channel = Channel::Sms;
    assert_eq!(plan(request, &config).unwrap_err().code, "content_not_for_channel");
}

#[test]
fn the_fallback_takes_sender_and_india_dlt_from_the_provider_settings() {
    let config = rich_config();
    let mut request = rcs("+919876543210");
    request.fallback = Some(SmsFallback {
        text: "plain".into(),
        sender: None,
        provider: None,
        regional: None,
        validity_period_seconds: None,
    });
    let job = plan(request.clone(), &config).unwrap().remove(0);
    let fallback = job.fallback.unwrap();
    assert_eq!(fallback.sender.as_deref(), Some("ACMEFB"));
    assert_eq!(fallback.regional.unwrap().india_dlt.unwrap().principal_entity_id, "PE-1");
    // Without India settings, a +91 fallback through a DLT-requiring SMS provider is refused.
    request.provider = Some("rcs-plain".into());
    let err = plan(request.clone(), &config).unwrap_err();
    assert_eq!(err.code, "missing_india_dlt");
    assert!(err.reason.contains("fallback"), "{}", err.reason);
    // Outside India it passes.
    request.to = Some("+14155551237".into());
    assert!(plan(request.clone(), &config).is_ok());
    // A fallback naming an SMS provider that does not exist, or a sender that provider
    // does not have, is refused at the door rather than failing the RCS job later.
    let fallback = request.fallback.clone();
    request.fallback.as_mut().unwrap().provider = Some("nope".into());
    assert_eq!(plan(request.clone(), &config).unwrap_err().code, "unknown_provider");
    request.fallback.as_mut().unwrap().provider = Some("rcs".into());
    assert_eq!(plan(request.clone(), &config).unwrap_err().code, "unknown_provider");
    request.fallback.as_mut().unwrap().provider = None;
    request.fallback.as_mut().unwrap().sender = Some("OTHER".into());
    let err = plan(request.clone(), &config).unwrap_err();
    assert_eq!(err.code, "unknown_sender");
    assert!(err.reason.starts_with("fallback.sender 'OTHER'"), "{}", err.reason);
    request.fallback = fallback;
    // A provider with its fallback disabled refuses requests that carry one.
    request.provider = Some("rcs-off".into());
    assert_eq!(plan(request.clone(), &config).unwrap_err().code, "fallback_disabled");
    // SMS requests have no fallback.
    request.provider = None;
    request.channel = Channel::Sms;
    request.content = Some(Content::Text { text: "x".into(), suggestions: vec![] });
    assert_eq!(plan(request, &config).unwrap_err().code, "fallback_not_for_channel");
}

#[test]
fn sms_regional_defaults_fill_turkey_iys() {
    let config = rich_config();
    let job = plan(sms("+905321234567"), &config).unwrap().remove(0);
    let iys = job.options.regional.unwrap().turkey_iys.unwrap();
    assert_eq!((iys.recipient_type.as_str(), iys.brand_code), ("TACIR", Some(777)));
    // Other countries are untouched.
    let job = plan(sms("+14155551237"), &config).unwrap().remove(0);
    assert!(job.options.regional.is_none());
}

#[test]
fn an_unknown_turkey_iys_recipient_type_is_refused_at_the_door() {
    let iys = |kind: &str| Regional {
        india_dlt: None,
        turkey_iys: Some(TurkeyIys { recipient_type: kind.into(), brand_code: Some(1) }),
    };
    let mut request = sms("+905321234567");
    request.options.regional = Some(iys("bireysel"));
    let err = plan(request.clone(), &config()).unwrap_err();
    assert_eq!(err.code, "invalid_turkey_iys");
    assert!(err.reason.contains("options.regional.turkey_iys.recipient_type 'bireysel'"), "{}", err.reason);
    for good in TurkeyIys::RECIPIENT_TYPES {
        request.options.regional = Some(iys(good));
        assert!(plan(request.clone(), &config()).is_ok(), "{good}");
    }
    // The SMS fallback of an RCS request is checked too.
    let config = rich_config();
    let mut request = rcs("+905321234567");
    request.fallback = Some(SmsFallback {
        text: "hi".into(),
        sender: None,
        provider: None,
        regional: Some(iys("MERCHANT")),
        validity_period_seconds: None,
    });
    let err = plan(request, &config).unwrap_err();
    assert_eq!(err.code, "invalid_turkey_iys");
    assert!(err.reason.starts_with("fallback.regional.turkey_iys.recipient_type 'MERCHANT'"), "{}", err.reason);
}

#[test]
fn send_at_must_be_rfc_3339_at_the_door() {
    let mut request = sms("+14155551237");
    for bad in ["tomorrow", "2030-01-02 03:04:05", "2030-01-02T03:04:05"] {
        request.options.send_at = Some(bad.into());
        let err = plan(request.clone(), &config()).unwrap_err();
        assert_eq!(err.code, "invalid_send_at", "{bad}");
        assert!(err.reason.contains(bad), "{}", err.reason);
    }
    for good in ["2030-01-02T03:04:05Z", "2030-03-04T05:06:07.250+05:30"] {
        request.options.send_at = Some(good.into());
        assert!(plan(request.clone(), &config()).is_ok(), "{good}");
    }
}

fn bulk(count: usize) -> SendRequest {
    let recipients = (0..count)
        .map(|i| Recipient {
            to: format!("+1415555{i:04}"),
            message_id: (i == 1).then(|| "given-id".to_owned()),
            variables: BTreeMap::new(),
            metadata: BTreeMap::new(),
        })
        .collect();
    SendRequest { to: None, recipients, ..sms("+14155551237") }
}

#[test]
fn a_redelivered_request_plans_the_same_ids() {
    let identity = RequestIdentity::new(b"the bytes", None, None);
    let first = plan_derived(bulk(3), &config(), identity).unwrap();
    let again = plan_derived(bulk(3), &config(), RequestIdentity::new(b"the bytes", None, None)).unwrap();
    let ids = |jobs: &[SendJob]| jobs.iter().map(|j| (j.message_id.clone(), j.trace_id.clone())).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&again), "same request, same ids");
    assert_eq!(first[1].message_id, "given-id", "a given id is kept");
    assert_ne!(first[0].message_id, first[2].message_id, "each recipient its own id");
    // Other bytes, or the same bytes with another AMQP message id or timestamp, are
    // another request.
    for other in [
        RequestIdentity::new(b"other bytes", None, None),
        RequestIdentity::new(b"the bytes", Some("amqp-id"), None),
        RequestIdentity::new(b"the bytes", None, Some(1_700_000_000)),
    ] {
        let jobs = plan_derived(bulk(3), &config(), other).unwrap();
        assert_ne!(jobs[0].message_id, first[0].message_id);
        assert_ne!(jobs[0].trace_id, first[0].trace_id);
    }
    // The HTTP API's plan keeps fresh ids.
    assert_ne!(plan(bulk(3), &config()).unwrap()[0].message_id, plan(bulk(3), &config()).unwrap()[0].message_id);
}

#[test]
fn a_queued_request_with_too_many_recipients_is_rejected() {
    let mut config = config();
    config.dispatcher.max_recipients_per_request = 2;
    let err = plan_derived(bulk(3), &config, RequestIdentity::new(b"x", None, None)).unwrap_err();
    assert_eq!(err.code, "too_many_recipients", "{err}");
    assert!(err.reason.contains("max_recipients_per_request"), "{err}");
    assert_eq!(plan_derived(bulk(2), &config, RequestIdentity::new(b"x", None, None)).unwrap().len(), 2);
}

#[test]
fn what_the_providers_api_cannot_carry_is_refused_at_the_door() {
    let toml = r#"
[[providers]]
id = "tw-rcs"
kind = "twilio_rcs"
sender_ids = ["acme_agent"]
default_for_channel = true
[providers.twilio]
account_sid = "AC0123456789abcdef0123456789abcdef"
auth_token_env = "TW"
messaging_service_sid = "MG0123456789abcdef0123456789abcdef"
"#;
    let mut config = Config::from_toml(toml, &|_| Some("k".into()), &sendfleet_providers::VENDORS).unwrap();
    config.dispatcher.check_numbering_plan = false;
    let mut request = sms("+14155550123");
    request.channel = Channel::Rcs;
    request.content = Some(Content::Card {
        orientation: sendfleet_protocol::CardOrientation::Vertical,
        alignment: sendfleet_protocol::CardAlignment::Left,
        card: sendfleet_protocol::Card { title: Some("Sale".into()), ..Default::default() },
        suggestions: vec![],
    });
    let err = plan(request.clone(), &config).unwrap_err();
    assert_eq!(err.code, "unsupported_by_provider");
    assert!(err.reason.contains("Content template"), "{}", err.reason);
    request.content = Some(Content::Text { text: "hello".into(), suggestions: vec![] });
    assert_eq!(plan(request, &config).unwrap().len(), 1, "text goes through");
}

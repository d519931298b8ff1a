use reqwest::header::{HeaderMap, HeaderValue};
use sendfleet_config::Config;
use sendfleet_protocol::{Channel, Content, EventKind, SendJob, SmsFallback, Suggestion};

use super::*;
use crate::TransientCode;

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const SERVICE: &str = "MG0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token-0001";

fn config(kind: &str, extra: &str) -> ProviderConfig {
    let toml = format!(
        "[[providers]]\nid = \"tw\"\nkind = \"{kind}\"\nsender_ids = [\"+14155550100\"]\n\
         callback_token_env = \"CB\"\n{extra}\n[providers.twilio]\naccount_sid = \"{ACCOUNT}\"\n\
         auth_token_env = \"TW_TOKEN\"\nmessaging_service_sid = \"{SERVICE}\"\n"
    );
    let lookup = |name: &str| match name {
        "TW_TOKEN" => Some(TOKEN.to_owned()),
        "CB" => Some("callback-token-0123456789".to_owned()),
        _ => None,
    };
    Config::from_toml(&toml, &lookup, &crate::VENDORS).unwrap().providers.remove(0)
}

fn adapter(kind: &str, extra: &str) -> TwilioAdapter {
    let settings = AdapterSettings { callback_base_url: "https://hooks.example.com".into() };
    TwilioAdapter::new(config(kind, extra), &settings).unwrap()
}

fn job(channel: Channel, content: Content) -> SendJob {
    SendJob {
        priority: Default::default(),
        schema_version: 1,
        message_id: "m-1".into(),
        provider: "tw".into(),
        channel,
        to: "+447700900123".into(),
        sender: "+14155550100".into(),
        content,
        options: Default::default(),
        fallback: None,
        metadata: Default::default(),
        trace_id: "t-1".into(),
        attempts: 0,
        first_attempt_at_ms: None,
        created_at_ms: 0,
        fallback_for: None,
    }
}

fn text(text: &str) -> Content {
    Content::Text { text: text.into(), suggestions: vec![] }
}

fn pairs(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

#[test]
fn signatures_match_twilios_published_examples() {
    // Twilio's webhook-security page.
    let params: Vec<(String, String)> = [
        ("Digits", "1234"),
        ("To", "+18005551212"),
        ("From", "+14158675310"),
        ("Caller", "+14158675310"),
        ("CallSid", "CA1234567890ABCDE"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(
        signature("https://example.com/myapp.php?foo=1&bar=2", &params, "12345"),
        "L/OH5YylLD5NRKLltdqwSvS0BnU="
    );
    // twilio-python's validator tests: repeated keys contribute each distinct value, sorted.
    let repeated: Vec<(String, String)> =
        [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    assert_eq!(
        signature("https://mycompany.com/myapp.php?foo=1&bar=2", &repeated, "12345"),
        "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    );
}

#[test]
fn sms_is_form_encoded_through_the_messaging_service_with_our_ids_in_the_status_callback() {
    let adapter = adapter("twilio_sms", "");
    let body = adapter.body(&job(Channel::Sms, text("Your code is 123456 & more"))).unwrap();
    let form = pairs(&body);
    assert_eq!(form[0], ("To".into(), "+447700900123".into()));
    assert_eq!(form[1], ("MessagingServiceSid".into(), SERVICE.into()));
    assert_eq!(form[2], ("Body".into(), "Your code is 123456 & more".into()));
    let callback = &form.iter().find(|(k, _)| k == "StatusCallback").unwrap().1;
    assert_eq!(
        callback,
        "https://hooks.example.com/callbacks/tw/callback-token-0123456789/delivery?message_id=m-1&trace_id=t-1"
    );
    assert!(form.contains(&("Attempt".into(), "1".into())));
    assert_eq!(adapter.send_url.path(), format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json"));
}

#[test]
fn rcs_stays_on_rcs_unless_twilio_is_to_fall_back() {
    let mut rcs = job(Channel::Rcs, text("Hi"));
    rcs.fallback = Some(SmsFallback {
        text: "Hi by SMS".into(),
        sender: Some("+14155550199".into()),
        provider: None,
        regional: None,
        validity_period_seconds: None,
    });
    let fleet = pairs(&adapter("twilio_rcs", "").body(&rcs).unwrap());
    assert_eq!(fleet[0], ("To".into(), "rcs:+447700900123".into()), "the fleet's own fallback decides");
    assert!(!fleet.iter().any(|(k, _)| k == "FallbackFrom"));
    let provider = pairs(&adapter("twilio_rcs", "fallback_mode = \"provider\"").body(&rcs).unwrap());
    assert_eq!(provider[0], ("To".into(), "+447700900123".into()), "Twilio falls back by itself");
    assert!(provider.contains(&("FallbackFrom".into(), "+14155550199".into())));
}

#[test]
fn content_twilio_cannot_take_is_refused_before_sending() {
    let adapter = adapter("twilio_rcs", "");
    let suggestions = Content::Text {
        text: "Pick".into(),
        suggestions: vec![Suggestion::Reply { text: "Yes".into(), postback_data: "y".into() }],
    };
    let (code, reason) = adapter.body(&job(Channel::Rcs, suggestions)).unwrap_err();
    assert_eq!(code, RejectCode::UnsupportedContent);
    assert!(reason.contains("ContentSid"), "{reason}");
    let template = Content::Template {
        template_id: "HX0123456789abcdef0123456789abcdef".into(),
        parameters: [("1".to_owned(), "Ana".to_owned())].into(),
    };
    let form = pairs(&adapter.body(&job(Channel::Rcs, template)).unwrap());
    assert!(form.contains(&("ContentSid".into(), "HX0123456789abcdef0123456789abcdef".into())));
    assert!(form.contains(&("ContentVariables".into(), "{\"1\":\"Ana\"}".into())));
    let mut windowed = job(Channel::Sms, text("x"));
    windowed.options.delivery_time_window =
        Some(sendfleet_protocol::DeliveryTimeWindow { days: vec!["MONDAY".into()], from: None, to: None });
    assert_eq!(adapter.body(&windowed).unwrap_err().0, RejectCode::UnsupportedOption);
}

#[test]
fn answers_are_classified() {
    let accepted = classify(201, None, br#"{"sid": "SM0123", "status": "accepted"}"#);
    let SendOutcome::Accepted { status: Some(status) } = accepted else { panic!("{accepted:?}") };
    assert_eq!((status.group_id, status.name.as_deref()), (1, Some("accepted")));
    let bad = classify(400, None, br#"{"code": 21211, "message": "The 'To' number is not valid.", "status": 400}"#);
    let SendOutcome::Rejected { code, reason, error, .. } = bad else { panic!("{bad:?}") };
    assert_eq!(code, RejectCode::BadRequest);
    assert_eq!(reason, "HTTP 400: 21211: The 'To' number is not valid.");
    assert_eq!(error.map(|e| e.id), Some(21211));
    assert!(matches!(classify(401, None, br#"{"code": 20003}"#), SendOutcome::AuthFailure { http_status: 401, .. }));
    let throttled = classify(429, Some(std::time::Duration::from_secs(2)), br#"{"code": 20429}"#);
    assert!(matches!(throttled, SendOutcome::Transient { code: TransientCode::Throttled, retry_after: Some(_), .. }));
    assert!(matches!(classify(503, None, b""), SendOutcome::Transient { code: TransientCode::ServerError, .. }));
}

fn signed(path: &str, body: &str) -> HeaderMap {
    let url = format!("https://hooks.example.com{path}");
    let mut headers = HeaderMap::new();
    headers.insert("x-twilio-signature", HeaderValue::from_str(&signature(&url, &pairs(body), TOKEN)).unwrap());
    headers
}

const PATH: &str = "/callbacks/tw/callback-token-0123456789/delivery?message_id=m-1&trace_id=t-1";

#[test]
fn signed_status_callbacks_become_events_and_forged_ones_are_refused() {
    let adapter = adapter("twilio_rcs", "fallback_mode = \"provider\"");
    let body = "MessageSid=SM1&MessageStatus=delivered&From=rcs%3Aacme_agent&To=%2B447700900123&AccountSid=AC0";
    let headers = signed(PATH, body);
    let request = CallbackRequest { path_and_query: PATH, headers: &headers, body: body.as_bytes() };
    let parsed = adapter.parse_callback(&request).unwrap();
    let event = &parsed.events[0];
    assert_eq!(event.kind, EventKind::Delivered);
    assert_eq!(event.channel, Channel::Rcs);
    assert_eq!(event.message_id.as_deref(), Some("m-1"));
    assert_eq!(event.trace_id.as_deref(), Some("t-1"));
    assert_eq!(event.to.as_deref(), Some("+447700900123"));
    assert_eq!(event.details["vendor_message_id"], "SM1");

    // Twilio's own SMS fallback delivered it: From is a number, not rcs:.
    let fell_back = "MessageSid=SM1&MessageStatus=delivered&From=%2B14155550199&To=%2B447700900123";
    let headers = signed(PATH, fell_back);
    let request = CallbackRequest { path_and_query: PATH, headers: &headers, body: fell_back.as_bytes() };
    assert_eq!(adapter.parse_callback(&request).unwrap().events[0].channel, Channel::Sms);

    // Any change to a parameter, or a signature over another URL, is refused.
    let forged = body.replace("delivered", "undelivered");
    let headers = signed(PATH, body);
    let request = CallbackRequest { path_and_query: PATH, headers: &headers, body: forged.as_bytes() };
    assert!(matches!(adapter.parse_callback(&request), Err(CallbackError::Unauthenticated(_))));
    let request = CallbackRequest { path_and_query: PATH, headers: &HeaderMap::new(), body: body.as_bytes() };
    let Err(CallbackError::Unauthenticated(reason)) = adapter.parse_callback(&request) else { panic!("unsigned") };
    assert!(reason.contains("no X-Twilio-Signature"), "{reason}");
}

#[test]
fn failures_keep_twilios_error_code_and_intermediate_statuses_make_no_event() {
    let config = config("twilio_rcs", "");
    let parse = |body: &str| {
        parse_callback(
            &config,
            &CallbackRequest { path_and_query: PATH, headers: &HeaderMap::new(), body: body.as_bytes() },
        )
    };
    let failed = parse("MessageSid=SM1&MessageStatus=undelivered&ErrorCode=63106&To=rcs%3A%2B447700900123").unwrap();
    let event = &failed.events[0];
    assert_eq!((event.kind, event.channel), (EventKind::Undelivered, Channel::Rcs));
    assert_eq!(event.error.as_ref().map(|e| e.id), Some(63106));
    assert_eq!(event.status.as_ref().map(|s| s.group_id), Some(2));
    let sent = parse("MessageSid=SM1&MessageStatus=sent").unwrap();
    assert_eq!((sent.events.len(), sent.reports, sent.rejected.len()), (0, 1, 0));
    let unknown = parse("MessageSid=SM1&MessageStatus=teleported").unwrap();
    assert!(matches!(unknown.rejected[0].error, CallbackError::Unrecognised(_)));
    let no_id = parse_callback(
        &config,
        &CallbackRequest {
            path_and_query: "/callbacks/tw/x",
            headers: &HeaderMap::new(),
            body: b"MessageStatus=delivered",
        },
    )
    .unwrap();
    assert!(matches!(no_id.rejected[0].error, CallbackError::Malformed(_)));
    let inbound = parse("MessageSid=SM9&From=%2B447700900123&To=%2B14155550100&Body=STOP&NumMedia=0").unwrap();
    let event = &inbound.events[0];
    assert_eq!(event.kind, EventKind::Inbound);
    assert_eq!(event.inbound.as_ref().and_then(|i| i.text.as_deref()), Some("STOP"));
    assert_eq!(event.to.as_deref(), Some("+447700900123"));
}

#[test]
fn requests_authenticate_with_the_api_key_when_one_is_given() {
    let with_key = TwilioAdapter::new(
        {
            let mut config = config("twilio_sms", "");
            let mut twilio = config.vendor.get::<TwilioConfig>().unwrap().clone();
            twilio.api_key_sid = Some("SK0123456789abcdef0123456789abcdef".into());
            twilio.api_key_secret = sendfleet_config::Secret::new("key-secret");
            config.vendor = sendfleet_config::VendorSettings::new(twilio);
            config
        },
        &AdapterSettings::default(),
    )
    .unwrap();
    let expected = base64::engine::general_purpose::STANDARD.encode("SK0123456789abcdef0123456789abcdef:key-secret");
    assert_eq!(with_key.authorization.to_str().unwrap(), format!("Basic {expected}"));
    assert!(with_key.authorization.is_sensitive());
    let with_token = adapter("twilio_sms", "");
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"));
    assert_eq!(with_token.authorization.to_str().unwrap(), format!("Basic {expected}"));
}

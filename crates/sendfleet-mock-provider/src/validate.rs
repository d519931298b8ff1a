//! Validation of request bodies against JSON Schemas extracted from Infobip's OpenAPI
//! spec (`tools/extract_infobip_schemas.py` writes them into `schemas/`).

use serde_json::Value;

use crate::MockError;

/// The endpoints the mock validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    SmsSend,
    RcsSend,
    CapabilityQuery,
    RcsEvents,
    /// Our Generic API, RCS endpoint.
    GenericRcs,
    /// Our Generic API, SMS endpoint.
    GenericSms,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::SmsSend => "/sms/3/messages",
            Endpoint::RcsSend => "/rcs/2/messages",
            Endpoint::CapabilityQuery => "/rcs/2/capability-check/query",
            Endpoint::RcsEvents => "/rcs/1/events",
            Endpoint::GenericRcs => "/generic/rcs",
            Endpoint::GenericSms => "/generic/sms",
        }
    }
}

pub(crate) struct Validators {
    sms_send: jsonschema::Validator,
    rcs_send: jsonschema::Validator,
    capability_query: jsonschema::Validator,
    rcs_events: jsonschema::Validator,
    generic_send: jsonschema::Validator,
    twilio_create_message: jsonschema::Validator,
}

fn compile(name: &'static str, text: &str) -> Result<jsonschema::Validator, MockError> {
    let schema: Value = serde_json::from_str(text).map_err(|e| MockError::Schema(name, e.to_string()))?;
    jsonschema::validator_for(&schema).map_err(|e| MockError::Schema(name, e.to_string()))
}

impl Validators {
    pub fn load() -> Result<Validators, MockError> {
        Ok(Validators {
            // The strict variants also refuse undeclared properties, so a misspelled
            // field name fails here as it would be silently ignored by the provider.
            sms_send: compile("sms-send-strict.json", include_str!("../schemas/sms-send-strict.json"))?,
            rcs_send: compile("rcs-send-strict.json", include_str!("../schemas/rcs-send-strict.json"))?,
            capability_query: compile(
                "rcs-capability-query-strict.json",
                include_str!("../schemas/rcs-capability-query-strict.json"),
            )?,
            rcs_events: compile("rcs-events-strict.json", include_str!("../schemas/rcs-events-strict.json"))?,
            generic_send: compile("generic-send-strict.json", include_str!("../schemas/generic-send-strict.json"))?,
            twilio_create_message: compile(
                "twilio-create-message-strict.json",
                include_str!("../schemas/twilio-create-message-strict.json"),
            )?,
        })
    }

    /// Every violation as (`messages[0].content.text`, what is wrong); empty when valid.
    pub fn violations(&self, endpoint: Endpoint, body: &Value) -> Vec<(String, String)> {
        let validator = match endpoint {
            Endpoint::SmsSend => &self.sms_send,
            Endpoint::RcsSend => &self.rcs_send,
            Endpoint::CapabilityQuery => &self.capability_query,
            Endpoint::RcsEvents => &self.rcs_events,
            Endpoint::GenericRcs | Endpoint::GenericSms => &self.generic_send,
        };
        check(validator, body)
    }

    /// The violations of a Twilio `CreateMessageRequest` (the form as a JSON object).
    pub fn twilio_violations(&self, form: &Value) -> Vec<(String, String)> {
        check(&self.twilio_create_message, form)
    }
}

fn check(validator: &jsonschema::Validator, body: &Value) -> Vec<(String, String)> {
    {
        // Most requests are valid: checking is cheaper than collecting errors.
        if validator.is_valid(body) {
            return Vec::new();
        }
        let errors: Vec<(String, String, bool)> = validator
            .iter_errors(body)
            .take(40)
            .map(|error| {
                let unexpected =
                    matches!(error.kind(), jsonschema::error::ValidationErrorKind::UnevaluatedProperties { .. });
                (property_path(&error.instance_path().to_string()), error.to_string(), unexpected)
            })
            .collect();
        // When a subtype fails, strict mode also reports that subtype's valid fields as
        // unexpected; show the real problems alone when there are any.
        let real = errors.iter().any(|(_, _, unexpected)| !unexpected);
        errors.into_iter().filter(|(_, _, unexpected)| !real || !unexpected).take(20).map(|(p, m, _)| (p, m)).collect()
    }
}

/// What our Generic API requires beyond the schema: the channel matches the endpoint,
/// and SMS carries plain text only.
pub(crate) fn generic_channel_violations(endpoint: Endpoint, body: &Value) -> Vec<(String, String)> {
    let mut violations = Vec::new();
    let expected = if endpoint == Endpoint::GenericSms { "sms" } else { "rcs" };
    if body["channel"].as_str().is_some_and(|c| c != expected) {
        violations.push(("channel".to_owned(), format!("must be \"{expected}\" on {}", endpoint.path())));
    }
    if endpoint == Endpoint::GenericSms {
        if body["content"]["type"].as_str().is_some_and(|t| t != "text") {
            violations.push(("content.type".to_owned(), "SMS carries text content only".to_owned()));
        }
        if body["content"].get("suggestions").is_some() {
            violations.push(("content.suggestions".to_owned(), "SMS cannot carry suggestions".to_owned()));
        }
    }
    violations
}

/// `/messages/0/content/text` → `messages[0].content.text` (Infobip's `property` style).
fn property_path(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/../../fixtures/infobip/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn reference_fixtures_are_valid() {
        let validators = Validators::load().unwrap();
        assert_eq!(validators.violations(Endpoint::SmsSend, &fixture("sms-send-request.json")), vec![]);
        for name in ["rcs-send-text-request.json", "rcs-send-card-request.json", "rcs-send-carousel-request.json"] {
            assert_eq!(validators.violations(Endpoint::RcsSend, &fixture(name)), vec![], "{name}");
        }
    }

    #[test]
    fn what_infobip_refuses_is_refused_with_the_field_named() {
        let validators = Validators::load().unwrap();
        let mut text = fixture("rcs-send-text-request.json");
        text["messages"][0]["content"]["text"] = Value::String("x".repeat(3_073));
        let violations = validators.violations(Endpoint::RcsSend, &text);
        assert!(violations.iter().any(|(p, _)| p == "messages[0].content.text"), "{violations:?}");

        let mut carousel = fixture("rcs-send-carousel-request.json");
        carousel["messages"][0]["content"]["contents"].as_array_mut().unwrap().truncate(1);
        assert!(!validators.violations(Endpoint::RcsSend, &carousel).is_empty());

        let mut bad_type = fixture("rcs-send-text-request.json");
        bad_type["messages"][0]["content"]["type"] = Value::String("BOGUS".into());
        assert!(!validators.violations(Endpoint::RcsSend, &bad_type).is_empty());

        assert_eq!(validators.violations(Endpoint::CapabilityQuery, &fixture("rcs-capability-request.json")), vec![]);
        let mut too_many = fixture("rcs-capability-request.json");
        too_many["phoneNumbers"] = Value::Array(vec![Value::String("15550000001".into()); 501]);
        let violations = validators.violations(Endpoint::CapabilityQuery, &too_many);
        assert!(violations.iter().any(|(p, _)| p == "phoneNumbers"), "{violations:?}");

        let mut sms = fixture("sms-send-request.json");
        sms["messages"][0].as_object_mut().unwrap().remove("destinations");
        assert!(!validators.violations(Endpoint::SmsSend, &sms).is_empty());

        let mut misspelled = fixture("rcs-send-text-request.json");
        let content = misspelled["messages"][0]["content"].as_object_mut().unwrap();
        let suggestions = content.remove("suggestions").unwrap();
        content.insert("sugestions".into(), suggestions);
        let violations = validators.violations(Endpoint::RcsSend, &misspelled);
        assert!(violations.iter().any(|(_, m)| m.contains("sugestions")), "{violations:?}");
    }

    fn generic(content: Value) -> Value {
        serde_json::json!({
            "message_id": "m-1", "channel": "rcs", "to": "+919876543210", "sender": "Acme", "attempt": 1,
            "content": content, "callback_url": "http://127.0.0.1:1/cb", "account": "acme"
        })
    }

    #[test]
    fn generic_requests_are_checked_strictly() {
        let validators = Validators::load().unwrap();
        let ok = generic(serde_json::json!({"type": "text", "text": "hi", "suggestions": [
            {"type": "reply", "text": "Yes", "postback_data": "y"},
            {"type": "dial_phone", "text": "Call", "postback_data": "c", "phone_number": "+14155550100"}
        ]}));
        assert_eq!(validators.violations(Endpoint::GenericRcs, &ok), vec![]);
        let carousel = generic(serde_json::json!({"type": "carousel", "card_width": "medium", "cards": [
            {"title": "A", "media": {"url": "https://x/a.png", "height": "short"}}, {"description": "B"}
        ]}));
        assert_eq!(validators.violations(Endpoint::GenericRcs, &carousel), vec![]);

        let mut misspelled = ok.clone();
        misspelled["content"]["sugestions"] = serde_json::json!([]);
        assert!(!validators.violations(Endpoint::GenericRcs, &misspelled).is_empty());
        let mut bad_number = ok.clone();
        bad_number["to"] = Value::String("919876543210".into());
        let violations = validators.violations(Endpoint::GenericRcs, &bad_number);
        assert!(violations.iter().any(|(p, _)| p == "to"), "{violations:?}");
        let mut no_id = ok.clone();
        no_id.as_object_mut().unwrap().remove("message_id");
        assert!(!validators.violations(Endpoint::GenericRcs, &no_id).is_empty());
        let mut non_string_parameter = ok.clone();
        non_string_parameter["account"] = serde_json::json!(7);
        assert!(!validators.violations(Endpoint::GenericRcs, &non_string_parameter).is_empty());

        assert_eq!(generic_channel_violations(Endpoint::GenericRcs, &ok), vec![]);
        let sms = generic_channel_violations(Endpoint::GenericSms, &ok);
        let fields: Vec<&str> = sms.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(fields, ["channel", "content.suggestions"]);
    }

    #[test]
    fn infobip_limits_and_enums_are_enforced() {
        let validators = Validators::load().unwrap();
        let rcs = |edit: &dyn Fn(&mut Value)| {
            let mut body = fixture("rcs-send-carousel-request.json");
            edit(&mut body);
            validators.violations(Endpoint::RcsSend, &body)
        };
        assert_eq!(rcs(&|_| {}), vec![]);
        // 2-10 cards: eleven are refused.
        let violations = rcs(&|b| {
            let cards = b["messages"][0]["content"]["contents"].as_array_mut().unwrap();
            let first = cards[0].clone();
            cards.resize(11, first);
        });
        assert!(violations.iter().any(|(p, _)| p == "messages[0].content.contents"), "{violations:?}");
        // At most 11 suggestions.
        let violations = rcs(&|b| {
            let reply = serde_json::json!({"type": "REPLY", "text": "Hi", "postbackData": "hi"});
            b["messages"][0]["content"]["suggestions"] = Value::Array(vec![reply; 12]);
        });
        assert!(violations.iter().any(|(p, _)| p == "messages[0].content.suggestions"), "{violations:?}");
        // Enum values: card width, suggestion type.
        let violations = rcs(&|b| b["messages"][0]["content"]["cardWidth"] = Value::String("LARGE".into()));
        assert!(violations.iter().any(|(p, _)| p == "messages[0].content.cardWidth"), "{violations:?}");
        let mut card = fixture("rcs-send-card-request.json");
        card["messages"][0]["content"]["orientation"] = Value::String("DIAGONAL".into());
        let violations = validators.violations(Endpoint::RcsSend, &card);
        assert!(violations.iter().any(|(p, _)| p == "messages[0].content.orientation"), "{violations:?}");
        // Turkey IYS recipient type: the seed's "BIREYCEL" is not Infobip's value.
        let mut sms = fixture("sms-send-request.json");
        sms["messages"][0]["options"]["regional"] = serde_json::json!({"turkeyIys": {"recipientType": "BIREYCEL"}});
        let violations = validators.violations(Endpoint::SmsSend, &sms);
        assert!(violations.iter().any(|(p, _)| p.ends_with("turkeyIys.recipientType")), "{violations:?}");
        sms["messages"][0]["options"]["regional"] =
            serde_json::json!({"turkeyIys": {"recipientType": "BIREYSEL", "brandCode": 1}});
        assert_eq!(validators.violations(Endpoint::SmsSend, &sms), vec![]);
    }

    #[test]
    fn outbound_events_are_checked_against_the_events_schema() {
        let validators = Validators::load().unwrap();
        let typing = serde_json::json!({"events": [{"sender": "Agent", "destinations": [{"to": "447700900000"}], "content": {"type": "TYPING_INDICATOR"}}]});
        assert_eq!(validators.violations(Endpoint::RcsEvents, &typing), vec![]);
        let seen = serde_json::json!({"events": [{"sender": "Agent", "destinations": [{"to": "447700900000"}], "content": {"type": "SEEN", "messageId": "mo-1"}}]});
        assert_eq!(validators.violations(Endpoint::RcsEvents, &seen), vec![]);
        let seen_without_id = serde_json::json!({"events": [{"sender": "Agent", "destinations": [{"to": "447700900000"}], "content": {"type": "SEEN"}}]});
        assert!(!validators.violations(Endpoint::RcsEvents, &seen_without_id).is_empty());
        let bogus = serde_json::json!({"events": [{"sender": "Agent", "destinations": [{"to": "447700900000"}], "content": {"type": "WAVING"}}]});
        assert!(!validators.violations(Endpoint::RcsEvents, &bogus).is_empty());
    }

    #[test]
    fn pointers_become_infobip_property_paths() {
        assert_eq!(property_path("/messages/0/content/text"), "messages[0].content.text");
        assert_eq!(property_path(""), "");
    }
}

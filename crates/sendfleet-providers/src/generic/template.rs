//! Generic RCS/SMS vendor settings that need more than a type check: body-parameter
//! templates (`{{to}}`, `{{metadata.campaign}}`, …) and the body keys parameters may
//! not replace. Parsed here so a bad template is a start-up error naming its field,
//! and the adapter renders exactly what validation accepted.

/// Top-level keys of the Generic API request body (`docs/generic-api.md`). Body
/// parameters may not use them: replacing `message_id` or `to` would break delivery
/// reports and duplicate suppression silently.
pub const GENERIC_RESERVED_BODY_KEYS: &[&str] = &[
    "message_id",
    "channel",
    "to",
    "sender",
    "content",
    "attempt",
    "callback_url",
    "callback_data",
    "validity_period_seconds",
    "send_at",
    "delivery_time_window",
    "campaign_reference_id",
    "regional",
    "fallback_for",
];

/// A message field a body-parameter value can reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageField {
    /// `{{to}}`: the destination in E.164 with `+`.
    To,
    /// `{{to_digits}}`: the destination without `+` (many SMS gateways want digits).
    ToDigits,
    /// `{{message_id}}`: our message id.
    MessageId,
    /// `{{sender}}`: the sender id / RCS agent.
    Sender,
    /// `{{text}}`: the text of text content (empty for rich content).
    Text,
    /// `{{channel}}`: `rcs` or `sms`.
    Channel,
    /// `{{metadata.<key>}}`: a metadata value of the request (empty when absent).
    Metadata(String),
}

/// One piece of a body-parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Copied as is.
    Literal(String),
    /// Replaced by the message's field.
    Field(MessageField),
}

/// Names accepted inside `{{…}}`, for error messages and docs.
pub const MESSAGE_FIELD_NAMES: &str = "to, to_digits, message_id, sender, text, channel, metadata.<key>";

/// Parses a body-parameter value into literal text and field references.
/// `{{ name }}` (spaces allowed) references a field; anything else is literal.
pub fn parse_parameter_template(value: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(TemplatePart::Literal(rest[..start].to_owned()));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| format!("'{{{{' without closing '}}}}' in '{value}'"))?;
        let name = after[..end].trim();
        let field = match name {
            "to" => MessageField::To,
            "to_digits" => MessageField::ToDigits,
            "message_id" => MessageField::MessageId,
            "sender" => MessageField::Sender,
            "text" => MessageField::Text,
            "channel" => MessageField::Channel,
            other => match other.strip_prefix("metadata.") {
                Some(key) if !key.is_empty() => MessageField::Metadata(key.to_owned()),
                _ => {
                    return Err(format!("unknown field {{{{{other}}}}}; known fields: {MESSAGE_FIELD_NAMES}"));
                }
            },
        };
        parts.push(TemplatePart::Field(field));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_owned()));
    }
    Ok(parts)
}

/// True for an HTTP header name (RFC 9110 token).
pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// True for a header value that can be sent as is (visible ASCII, spaces, tabs).
pub(crate) fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_into_literals_and_fields() {
        assert_eq!(parse_parameter_template("acme").unwrap(), vec![TemplatePart::Literal("acme".into())]);
        assert_eq!(
            parse_parameter_template("id-{{ message_id }}/{{metadata.campaign}}").unwrap(),
            vec![
                TemplatePart::Literal("id-".into()),
                TemplatePart::Field(MessageField::MessageId),
                TemplatePart::Literal("/".into()),
                TemplatePart::Field(MessageField::Metadata("campaign".into())),
            ]
        );
        assert_eq!(parse_parameter_template("").unwrap(), vec![]);
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        assert!(parse_parameter_template("{{recipient}}").unwrap_err().contains("unknown field {{recipient}}"));
        assert!(parse_parameter_template("{{metadata.}}").unwrap_err().contains("unknown field"));
        assert!(parse_parameter_template("x {{to").unwrap_err().contains("without closing"));
    }

    #[test]
    fn header_names_and_values_are_checked() {
        assert!(is_header_name("X-Api-Key"));
        assert!(!is_header_name("X Api"));
        assert!(!is_header_name(""));
        assert!(is_header_value("abc 123"));
        assert!(!is_header_value("a\r\nb"));
    }
}

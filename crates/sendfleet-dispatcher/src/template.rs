//! Dispatcher-side templates: `{{variable}}` placeholders in any string of a content
//! (text, card titles and descriptions, media and suggestion URLs, suggestion labels,
//! provider-template parameters), rendered per recipient. Pure.
//!
//! A placeholder whose variable is missing is an error naming the variable, never an
//! empty string: a message saying "Hi , your order" is worse than no message.

use std::collections::BTreeMap;

use sendfleet_protocol::Content;
use serde_json::Value;

/// Why a template cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A placeholder names a variable the request does not give.
    #[error("variable '{0}' is missing")]
    Missing(String),
    /// A placeholder is not a valid variable name.
    #[error("placeholder '{{{{{0}}}}}' is not a variable name (letters, digits, '_', '-', '.')")]
    BadName(String),
    /// The rendered content no longer has the content's shape (cannot happen for
    /// string substitutions; kept so nothing panics).
    #[error("rendered content is invalid: {0}")]
    Shape(String),
}

/// Variables of one recipient: its own over the request's shared ones.
pub struct Variables<'a> {
    /// The recipient's variables (win).
    pub own: &'a BTreeMap<String, String>,
    /// The request's shared variables.
    pub shared: &'a BTreeMap<String, String>,
}

impl Variables<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.own.get(name).or_else(|| self.shared.get(name)).map(String::as_str)
    }
}

/// Renders every string of `content`.
pub fn render_content(content: &Content, variables: &Variables<'_>) -> Result<Content, RenderError> {
    let mut value = serde_json::to_value(content).map_err(|e| RenderError::Shape(e.to_string()))?;
    render_value(&mut value, variables)?;
    serde_json::from_value(value).map_err(|e| RenderError::Shape(e.to_string()))
}

fn render_value(value: &mut Value, variables: &Variables<'_>) -> Result<(), RenderError> {
    match value {
        Value::String(text) if text.contains("{{") => {
            *text = render_text(text, variables)?;
        }
        Value::Array(items) => {
            for item in items {
                render_value(item, variables)?;
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                // The `type` tags select the variant; they are never templated.
                if key != "type" {
                    render_value(item, variables)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Replaces `{{ name }}` placeholders in one string. An unclosed `{{` is kept as is.
pub fn render_text(text: &str, variables: &Variables<'_>) -> Result<String, RenderError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else { break };
        out.push_str(&rest[..start]);
        let name = rest[start + 2..start + 2 + len].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            return Err(RenderError::BadName(name.to_owned()));
        }
        let value = variables.get(name).ok_or_else(|| RenderError::Missing(name.to_owned()))?;
        out.push_str(value);
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;

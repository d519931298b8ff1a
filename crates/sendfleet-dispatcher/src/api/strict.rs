//! JSON bodies read exactly as the OpenAPI document describes them.
//!
//! serde's derived structs also accept a JSON *array* in place of an object (fields by
//! position), so `"options": [null, null]` was read as empty options and answered 202
//! although the document (and `docs/protocol.md`: maps with field names, never
//! positional arrays) says an object. After serde has read a body, it is also checked
//! against the schema the OpenAPI document publishes for it; a body serde reads but the
//! schema refuses is `400 malformed`, naming the place.

use std::sync::LazyLock;

use jsonschema::Validator;
use schemars::JsonSchema;
use sendfleet_protocol::{Recipient, SendRequest};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::EventRequest;
use crate::SendTestRequest;

fn validator<T: JsonSchema>() -> Validator {
    let schema = schemars::schema_for!(T).to_value();
    // The schema is generated from our own types at start-up; one that does not compile
    // is a bug of this build, caught by every API test.
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("the generated schema does not compile: {e}"))
}

static SEND_REQUEST: LazyLock<Validator> = LazyLock::new(validator::<SendRequest>);
static RECIPIENT: LazyLock<Validator> = LazyLock::new(validator::<Recipient>);
static SEND_TEST: LazyLock<Validator> = LazyLock::new(validator::<SendTestRequest>);
static EVENT: LazyLock<Validator> = LazyLock::new(validator::<EventRequest>);

/// A body type and the validator of its published schema.
pub(crate) trait Strict: DeserializeOwned {
    /// The validator of this type's schema.
    fn validator() -> &'static Validator;
}

impl Strict for SendRequest {
    fn validator() -> &'static Validator {
        &SEND_REQUEST
    }
}

impl Strict for Recipient {
    fn validator() -> &'static Validator {
        &RECIPIENT
    }
}

impl Strict for SendTestRequest {
    fn validator() -> &'static Validator {
        &SEND_TEST
    }
}

impl Strict for EventRequest {
    fn validator() -> &'static Validator {
        &EVENT
    }
}

/// The body read by serde, and whether its schema accepts it (`Err` names the first
/// place it does not). Serde's own error comes first, unchanged: it names the field.
pub(crate) fn read<T: Strict>(bytes: &[u8]) -> Result<(T, Result<(), String>), String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let parsed = T::deserialize(&value).map_err(|e| e.to_string())?;
    let conforms = match T::validator().iter_errors(&value).next() {
        None => Ok(()),
        Some(error) => {
            let at = error.instance_path().to_string();
            Err(format!("{error} at '{}'", if at.is_empty() { "/" } else { &at }))
        }
    };
    Ok((parsed, conforms))
}

/// [`read`] for bodies without a version to check first: both refusals are one error.
pub(crate) fn read_conforming<T: Strict>(bytes: &[u8]) -> Result<T, String> {
    let (parsed, conforms) = read::<T>(bytes)?;
    conforms.map(|()| parsed)
}

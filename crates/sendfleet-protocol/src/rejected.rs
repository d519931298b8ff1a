//! The rejected queue's message: a request the dispatcher refused, with why.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Versioned;

/// The body of a message in the rejected queue: why, and the original bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RejectedRequest {
    /// Schema version of this document (currently 1).
    #[schemars(extend("const" = 1))]
    pub schema_version: u16,
    /// Bounded reason code (`invalid_destination`, `malformed`, …); equal to the
    /// `x-sendfleet-reason-code` header.
    pub reason_code: String,
    /// What is wrong, for a human; equal to the `x-sendfleet-reason` header.
    pub reason: String,
    /// The request exactly as received: a MessagePack bin (byte string), shown in the
    /// JSON view as an array of integers 0-255.
    #[serde(with = "serde_bytes")]
    #[schemars(with = "Vec<u8>")]
    pub original: Vec<u8>,
}

impl Versioned for RejectedRequest {
    fn schema_version(&self) -> u16 {
        self.schema_version
    }
}

//! MessagePack encoding with named fields, and decoding that says what went wrong.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{SUPPORTED_SCHEMA_VERSIONS, Versioned};

/// Why bytes could not be turned into a document. The `Display` text is the reason
/// written into dead-letter and rejection headers, so it names the problem plainly.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes are not a MessagePack map of the expected shape (bad bytes, missing or
    /// mistyped field). The message comes from the decoder and names the field.
    #[error("malformed document: {0}")]
    Malformed(String),
    /// The document decoded but declares a schema version this build cannot read.
    #[error("unsupported schema_version {found} (this build reads {min}..={max})")]
    UnsupportedVersion {
        /// The version found in the document.
        found: u16,
        /// Oldest readable version.
        min: u16,
        /// Newest readable version.
        max: u16,
    },
}

impl DecodeError {
    /// A short, bounded label for metrics (`malformed`, `unsupported_version`).
    pub fn label(&self) -> &'static str {
        match self {
            DecodeError::Malformed(_) => "malformed",
            DecodeError::UnsupportedVersion { .. } => "unsupported_version",
        }
    }
}

/// Encodes a document as a MessagePack map with field names.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain structs into a Vec cannot fail: no maps with
    // non-string keys, no I/O.
    rmp_serde::to_vec_named(value).unwrap_or_default()
}

/// Decodes a document and checks its schema version.
pub fn decode<T: DeserializeOwned + Versioned>(bytes: &[u8]) -> Result<T, DecodeError> {
    match rmp_serde::from_slice::<T>(bytes) {
        Ok(doc) => check_version(doc.schema_version()).map(|()| doc),
        Err(err) => {
            // A future version may fail to decode for reasons that are really "too new";
            // say so rather than reporting the first field that changed.
            if let Ok(probe) = rmp_serde::from_slice::<VersionProbe>(bytes) {
                check_version(probe.schema_version)?;
            }
            Err(DecodeError::Malformed(err.to_string()))
        }
    }
}

fn check_version(found: u16) -> Result<(), DecodeError> {
    if SUPPORTED_SCHEMA_VERSIONS.contains(&found) {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedVersion {
            found,
            min: *SUPPORTED_SCHEMA_VERSIONS.start(),
            max: *SUPPORTED_SCHEMA_VERSIONS.end(),
        })
    }
}

#[derive(Deserialize)]
struct VersionProbe {
    schema_version: u16,
}

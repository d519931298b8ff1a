//! sendfleet configuration.
//!
//! One TOML file (see `config/sendfleet.example.toml`, every key commented) plus
//! environment overrides: `SENDFLEET_BROKER__URL=amqp://…` sets `broker.url`
//! (double underscore separates levels). Secrets are never in the file: each provider
//! names the environment variables that hold its API key, passwords and callback token.
//!
//! Loading validates everything and reports **every** bad field at once, each named by
//! its path (`providers[1].rate_per_second: …`).

pub mod cli;
mod generic;
mod model;
mod secret;
mod validate;

use std::path::Path;

use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
};

pub use generic::{
    GENERIC_RESERVED_BODY_KEYS, MESSAGE_FIELD_NAMES, MessageField, TemplatePart, parse_parameter_template,
};
pub use model::*;
pub use secret::{RedactedUrl, Secret, UrlError};

/// The highest rate any provider may be given, requests per second for the whole fleet.
pub const MAX_RATE_PER_SECOND: u32 = 4_600;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "SENDFLEET_";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax or a value of the wrong type / an unknown key. figment names the key.
    #[error("config: {0}")]
    Parse(String),
    /// One or more fields failed validation.
    #[error("invalid config:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

/// One bad field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Path of the field, e.g. `providers[0].api_key_env`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Where configuration comes from. Kept injectable so tests never touch the process
/// environment.
pub struct ConfigSource<'a> {
    /// TOML text (empty means all defaults).
    pub toml: String,
    /// Overrides as (`SENDFLEET_A__B`, value) pairs; others are ignored.
    pub env_overrides: Vec<(String, String)>,
    /// Looks up the environment variables named by `*_env` keys (secrets).
    pub secret_lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Config {
    /// Loads the file at `path` (if any) with overrides and secrets from the process
    /// environment. This is what binaries call.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let toml = match path {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?,
            None => String::new(),
        };
        let lookup = |name: &str| std::env::var(name).ok();
        Config::from_source(ConfigSource { toml, env_overrides: std::env::vars().collect(), secret_lookup: &lookup })
    }

    /// Builds and validates a config from an explicit source.
    pub fn from_source(source: ConfigSource<'_>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(&source.toml));
        for (key, value) in &source.env_overrides {
            if let Some(path) = env_key_to_path(key) {
                figment = figment.merge(Serialized::global(&path, parse_env_value(value)));
            }
        }
        let mut config: Config = figment.extract().map_err(|e| ConfigError::Parse(e.to_string()))?;
        let errors = validate::validate_and_resolve(&mut config, source.secret_lookup);
        if errors.is_empty() { Ok(config) } else { Err(ConfigError::Invalid(errors)) }
    }

    /// Convenience for tests and tools: TOML text plus a secret lookup, no overrides.
    pub fn from_toml(toml: &str, secret_lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::from_source(ConfigSource { toml: toml.to_owned(), env_overrides: Vec::new(), secret_lookup })
    }

    /// The provider with this id.
    pub fn provider(&self, id: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// Every provider id, in config order.
    pub fn provider_ids(&self) -> Vec<String> {
        self.providers.iter().map(|p| p.id.clone()).collect()
    }

    /// The default provider of a channel, if one is marked.
    pub fn default_provider(&self, channel: sendfleet_protocol::Channel) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.default_for_channel && p.kind.channel() == channel)
    }
}

/// `SENDFLEET_BROKER__URL` → `broker.url`; keys without the prefix → `None`.
fn env_key_to_path(key: &str) -> Option<String> {
    let rest = key.strip_prefix(ENV_PREFIX)?;
    // SENDFLEET_CONFIG names the file itself and is not a key.
    if rest.is_empty() || rest == "CONFIG" {
        return None;
    }
    Some(rest.split("__").map(str::to_ascii_lowercase).collect::<Vec<_>>().join("."))
}

/// Environment values are strings; read them as TOML scalars so `8` is a number and
/// `true` a bool, falling back to the raw string.
fn parse_env_value(value: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()))
}

#[cfg(test)]
mod tests;

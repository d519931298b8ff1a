//! sendfleet configuration.
//!
//! One TOML file (see `config/sendfleet.example.toml`, every key commented) plus
//! environment overrides: `SENDFLEET_BROKER__URL=amqp://…` sets `broker.url`
//! (double underscore separates levels). Only variables that name a config key are
//! read; any other `SENDFLEET_*` variable is a [`ConfigWarning`], never an error (a
//! Kubernetes `envFrom` puts every key of a Secret in every container). Secrets are
//! never in the file: each provider names the environment variables that hold its API
//! key, passwords and callback token.
//!
//! Loading validates everything and reports **every** bad field at once, each named by
//! its path (`providers[1].rate_per_second: …`). Errors speak config — the file and
//! line, or the environment variable, the key path and what was expected — never Rust.

pub mod cli;
mod env;
mod generic;
mod model;
mod plain;
mod secret;
mod validate;

use std::{cell::RefCell, collections::BTreeSet, path::Path};

pub use env::ConfigWarning;
pub use generic::{
    GENERIC_RESERVED_BODY_KEYS, MESSAGE_FIELD_NAMES, MessageField, TemplatePart, parse_parameter_template,
};
pub use model::*;
pub use secret::{BrokerUrls, RedactedUrl, Secret, UrlError};

/// The highest rate any provider may be given, requests per second for the whole fleet.
pub const MAX_RATE_PER_SECOND: u32 = 4_600;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "SENDFLEET_";

/// Why the configuration cannot be used. Every message names where the bad value came
/// from (file and line, or environment variable) and its key path.
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
    /// The file is not TOML.
    #[error("{file}, line {line}, column {column}: not valid TOML: {message} (the line reads: {text})")]
    Syntax {
        /// The file (`<config>` for text that came from no file).
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the TOML parser expected.
        message: String,
        /// The line as written, trimmed.
        text: String,
    },
    /// A key of the file is unknown, or its value has the wrong type.
    #[error("{file}{}: {key}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    File {
        /// The file.
        file: String,
        /// 1-based line of the value, when known.
        line: Option<usize>,
        /// Key path, e.g. `providers[2].rate_per_second`.
        key: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// An environment override does not fit its key.
    #[error("environment variable {variable} (key {key}): {message}")]
    Env {
        /// The variable, e.g. `SENDFLEET_DISPATCHER__CONCURRENCY`.
        variable: String,
        /// Key path the variable sets.
        key: String,
        /// What is wrong and what was expected.
        message: String,
    },
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
    /// The file `toml` was read from, named in error messages (`None`: `<config>`).
    pub file: Option<&'a Path>,
    /// TOML text (empty means all defaults).
    pub toml: String,
    /// The environment as (name, value) pairs. Variables named `SENDFLEET_<KEY PATH>` set
    /// config keys; other `SENDFLEET_*` variables are warned about; the rest is ignored.
    pub env_overrides: Vec<(String, String)>,
    /// Looks up the environment variables named by `*_env` keys (secrets).
    pub secret_lookup: &'a dyn Fn(&str) -> Option<String>,
}

/// A loaded, valid config and what the operator should be told about it.
#[derive(Debug)]
pub struct Loaded {
    /// The config.
    pub config: Config,
    /// Things that did not stop loading but look like mistakes (log them once logging
    /// is up: see [`Loaded::log_warnings`]).
    pub warnings: Vec<ConfigWarning>,
}

impl Loaded {
    /// Logs every warning at WARN level.
    pub fn log_warnings(&self) {
        for warning in &self.warnings {
            tracing::warn!(warning = %warning, "config");
        }
    }
}

impl Config {
    /// Loads the file at `path` (if any) with overrides and secrets from the process
    /// environment. This is what binaries call.
    pub fn load(path: Option<&Path>) -> Result<Loaded, ConfigError> {
        let toml = match path {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?,
            None => String::new(),
        };
        let lookup = |name: &str| std::env::var(name).ok();
        Config::from_source(ConfigSource {
            file: path,
            toml,
            env_overrides: std::env::vars().collect(),
            secret_lookup: &lookup,
        })
    }

    /// Builds and validates a config from an explicit source.
    pub fn from_source(source: ConfigSource<'_>) -> Result<Loaded, ConfigError> {
        let file = source.file.map_or_else(|| "<config>".to_owned(), |p| p.display().to_string());
        let mut table: toml::Table = toml::from_str(&source.toml).map_err(|e| syntax_error(&file, &source.toml, &e))?;
        let env = env::Overrides::read(&source.env_overrides);
        env.apply(&mut table);
        let mut config = deserialize(table).map_err(|(key, message)| match env.variable_setting(&key) {
            Some((variable, set)) => ConfigError::Env { variable: variable.to_owned(), key: set.to_owned(), message },
            // The file's own value: deserialize the text again for the line it is on.
            None => {
                let line = file_error_line(&source.toml);
                ConfigError::File { file: file.clone(), line, key, message }
            }
        })?;
        // The variables `*_env` keys name are secrets, not strays: remember which were read.
        let read = RefCell::new(BTreeSet::new());
        let lookup = |name: &str| {
            read.borrow_mut().insert(name.to_owned());
            (source.secret_lookup)(name)
        };
        let errors = validate::validate_and_resolve(&mut config, &lookup);
        if !errors.is_empty() {
            return Err(ConfigError::Invalid(errors));
        }
        let warnings = env.warnings(&read.borrow());
        Ok(Loaded { config, warnings })
    }

    /// Convenience for tests and tools: TOML text plus a secret lookup, no overrides.
    pub fn from_toml(toml: &str, secret_lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let source = ConfigSource { file: None, toml: toml.to_owned(), env_overrides: Vec::new(), secret_lookup };
        Config::from_source(source).map(|loaded| loaded.config)
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

/// Deserializes a TOML value into `T`, or gives the key path of the bad value (relative
/// to `value`) and a message in config words.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(value: toml::Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| (key_path(e.path()), plain::message(e.inner().message())))
}

/// The file with the environment overrides merged in, as a [`Config`].
fn deserialize(table: toml::Table) -> Result<Config, (String, String)> {
    from_value(toml::Value::Table(table))
}

/// The line of the first bad value of the file itself (the merged table has no spans).
fn file_error_line(text: &str) -> Option<usize> {
    let deserializer = toml::Deserializer::parse(text).ok()?;
    let error = serde_path_to_error::deserialize::<_, Config>(deserializer).err()?;
    Some(line_of(text, error.inner().span()?.start))
}

fn syntax_error(file: &str, text: &str, error: &toml::de::Error) -> ConfigError {
    let at = error.span().map_or(0, |span| span.start);
    let line = line_of(text, at);
    let column = text[..at].rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let written = text.lines().nth(line - 1).unwrap_or_default().trim().to_owned();
    ConfigError::Syntax { file: file.to_owned(), line, column, message: plain::message(error.message()), text: written }
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// `providers[2].rate_per_second`, as the docs and validation errors write key paths.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;

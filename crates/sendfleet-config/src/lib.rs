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
mod model;
mod plain;
mod secret;
mod validate;
mod vendor;

use std::{cell::RefCell, collections::BTreeSet, path::Path};

pub use env::ConfigWarning;
pub use model::*;
pub use secret::{BrokerUrls, RedactedUrl, Secret, UrlError};
pub use vendor::{FieldErrors, VendorCatalog, VendorCheck, VendorSection, VendorSettings, is_http_url};

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
    /// The vendors of the build, which check their own settings
    /// (`sendfleet_providers::VENDORS`).
    pub vendors: &'a dyn VendorCatalog,
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
    /// environment, each provider's vendor settings checked by `vendors`. This is what
    /// binaries call.
    pub fn load(path: Option<&Path>, vendors: &dyn VendorCatalog) -> Result<Loaded, ConfigError> {
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
            vendors,
        })
    }

    /// Builds and validates a config from an explicit source.
    pub fn from_source(source: ConfigSource<'_>) -> Result<Loaded, ConfigError> {
        let file = source.file.map_or_else(|| "<config>".to_owned(), |p| p.display().to_string());
        let mut table: toml::Table = toml::from_str(&source.toml).map_err(|e| syntax_error(&file, &source.toml, &e))?;
        let env = env::Overrides::read(&source.env_overrides);
        env.apply(&mut table);
        let section_names = source.vendors.sections();
        let sections = take_vendor_sections(&mut table, &section_names);
        let mut config = deserialize(table).map_err(|(key, message)| match env.variable_setting(&key) {
            Some((variable, set)) => ConfigError::Env { variable: variable.to_owned(), key: set.to_owned(), message },
            // The file's own value: deserialize the text again for the line it is on.
            None => {
                let line = file_error_line(&source.toml, &section_names);
                ConfigError::File { file: file.clone(), line, key, message }
            }
        })?;
        // The variables `*_env` keys name are secrets, not strays: remember which were read.
        let read = RefCell::new(BTreeSet::new());
        let lookup = |name: &str| {
            read.borrow_mut().insert(name.to_owned());
            (source.secret_lookup)(name)
        };
        let errors = validate::validate_and_resolve(&mut config, &lookup, source.vendors, sections);
        if !errors.is_empty() {
            return Err(ConfigError::Invalid(errors));
        }
        let warnings = env.warnings(&read.borrow());
        Ok(Loaded { config, warnings })
    }

    /// Convenience for tests and tools: TOML text plus a secret lookup, no overrides.
    pub fn from_toml(
        toml: &str,
        secret_lookup: &dyn Fn(&str) -> Option<String>,
        vendors: &dyn VendorCatalog,
    ) -> Result<Config, ConfigError> {
        let source =
            ConfigSource { file: None, toml: toml.to_owned(), env_overrides: Vec::new(), secret_lookup, vendors };
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

/// Takes each provider entry's vendor section (a key in `names`) out of `table`, by
/// provider index: the entry is then read as a [`ProviderConfig`], the section by its
/// vendor. An entry with two sections keeps the second, which is then an unknown key.
fn take_vendor_sections(table: &mut toml::Table, names: &[&'static str]) -> Vec<validate::RawSection> {
    let Some(toml::Value::Array(providers)) = table.get_mut("providers") else { return Vec::new() };
    let take = |provider: &mut toml::Value| {
        let entry = provider.as_table_mut()?;
        names.iter().find_map(|name| entry.remove(*name).map(|section| (*name, section)))
    };
    providers.iter_mut().map(take).collect()
}

/// The line of the first bad value of the file itself (the merged table has no spans),
/// with the vendor sections taken out as for reading.
fn file_error_line(text: &str, sections: &[&'static str]) -> Option<usize> {
    let mut parsed = toml::de::DeTable::parse(text).ok()?;
    if let Some(providers) = parsed.get_mut().get_mut("providers")
        && let toml::de::DeValue::Array(entries) = providers.get_mut()
    {
        for entry in entries.iter_mut() {
            if let toml::de::DeValue::Table(entry) = entry.get_mut()
                && let Some(name) = sections.iter().find(|name| entry.contains_key(**name))
            {
                entry.remove(*name);
            }
        }
    }
    let error = serde_path_to_error::deserialize::<_, Config>(toml::de::Deserializer::from(parsed)).err()?;
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

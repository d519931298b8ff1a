//! Environment overrides: `SENDFLEET_<SECTION>__<KEY>` sets a key the config has, and
//! nothing else does. The keys are derived from the config types themselves (the
//! defaults serialized, where a `None` still names its key), so the set cannot drift
//! from the model. Any other `SENDFLEET_*` variable — a secret under that prefix, a
//! typo — becomes a [`ConfigWarning`] naming it, never a start-up failure.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Config, ENV_PREFIX};

/// Something about the environment that did not stop loading but looks like a mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigWarning {
    /// A `SENDFLEET_*` variable that names no config key and no secret the config reads.
    #[error(
        "environment variable {variable} matches no config key and is ignored \
         (overrides are named SENDFLEET_<SECTION>__<KEY>, e.g. SENDFLEET_BROKER__URL)"
    )]
    UnknownVariable {
        /// The variable.
        variable: String,
    },
    /// A variable reaching inside a key that is set as a whole, e.g.
    /// `SENDFLEET_PROVIDERS__0__RATE_PER_SECOND` inside `providers`.
    #[error(
        "environment variable {variable} is ignored: {key} is set as a whole (in the config file), \
         its parts cannot be overridden one by one"
    )]
    InsideKey {
        /// The variable.
        variable: String,
        /// The key it reaches inside.
        key: String,
    },
}

/// One override: a variable, the key path it sets and the value.
struct Override {
    variable: String,
    key: String,
    value: toml::Value,
}

/// The environment sorted into overrides and strays.
pub(crate) struct Overrides {
    overrides: Vec<Override>,
    /// Variables reaching inside a whole-value key: (variable, key).
    inside: Vec<(String, String)>,
    /// Variables matching no key (warned about unless they turn out to be secrets).
    unknown: Vec<String>,
}

impl Overrides {
    /// Sorts `vars`; variables without the prefix are ignored.
    pub(crate) fn read(vars: &[(String, String)]) -> Overrides {
        let keys = known_keys();
        let mut sorted = Overrides { overrides: Vec::new(), inside: Vec::new(), unknown: Vec::new() };
        for (variable, value) in vars {
            let Some(rest) = variable.strip_prefix(ENV_PREFIX) else { continue };
            // SENDFLEET_CONFIG names the file itself (the binaries' --config).
            if rest == "CONFIG" {
                continue;
            }
            let key = rest.split("__").map(str::to_ascii_lowercase).collect::<Vec<_>>().join(".");
            if keys.contains(&key) {
                sorted.overrides.push(Override { variable: variable.clone(), key, value: parse_value(value) });
            } else if let Some(whole) = keys.iter().find(|k| key.starts_with(&format!("{k}."))) {
                sorted.inside.push((variable.clone(), whole.clone()));
            } else {
                sorted.unknown.push(variable.clone());
            }
        }
        // Deterministic order whatever the environment's.
        sorted.overrides.sort_by(|a, b| a.variable.cmp(&b.variable));
        sorted
    }

    /// Writes every override into the file's table.
    pub(crate) fn apply(&self, table: &mut toml::Table) {
        for Override { key, value, .. } in &self.overrides {
            let mut parts: Vec<&str> = key.split('.').collect();
            let last = parts.pop().expect("a key has at least one part");
            let mut at = &mut *table;
            for part in parts {
                let entry = at.entry(part).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if !entry.is_table() {
                    *entry = toml::Value::Table(toml::Table::new());
                }
                at = entry.as_table_mut().expect("made a table just above");
            }
            at.insert(last.to_owned(), value.clone());
        }
    }

    /// The variable that set the value at `path` (or a value containing it), with the
    /// key it set.
    pub(crate) fn variable_setting(&self, path: &str) -> Option<(&str, &str)> {
        self.overrides
            .iter()
            .find(|o| {
                path == o.key || path.starts_with(&format!("{}.", o.key)) || path.starts_with(&format!("{}[", o.key))
            })
            .map(|o| (o.variable.as_str(), o.key.as_str()))
    }

    /// The warnings, leaving out variables the config read as secrets (`read`).
    pub(crate) fn warnings(&self, read: &BTreeSet<String>) -> Vec<ConfigWarning> {
        let inside = self
            .inside
            .iter()
            .map(|(variable, key)| ConfigWarning::InsideKey { variable: variable.clone(), key: key.clone() });
        let unknown = self
            .unknown
            .iter()
            .filter(|variable| !read.contains(*variable))
            .map(|variable| ConfigWarning::UnknownVariable { variable: variable.clone() });
        let mut warnings: Vec<ConfigWarning> = inside.chain(unknown).collect();
        warnings.sort_by_key(ToString::to_string);
        warnings
    }
}

/// Every key an override can set: the dotted path of each value in the serialized
/// defaults that is not itself a table. Arrays (`providers`, `worker.providers`) are
/// keys as a whole.
pub(crate) fn known_keys() -> BTreeSet<String> {
    let defaults = serde_json::to_value(Config::default()).expect("the defaults serialize");
    let mut keys = BTreeSet::new();
    collect(&defaults, String::new(), &mut keys);
    keys
}

fn collect(value: &serde_json::Value, path: String, keys: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (name, value) in map {
                let path = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                collect(value, path, keys);
            }
        }
        _ => {
            keys.insert(path);
        }
    }
}

/// Environment values are strings; read them as TOML values so `8` is a number, `true`
/// a bool and `["a", "b"]` an array, falling back to the raw string.
fn parse_value(value: &str) -> toml::Value {
    toml::from_str::<BTreeMap<String, toml::Value>>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_come_from_the_types_including_unset_options() {
        let keys = known_keys();
        for key in [
            "broker.url",
            "dispatcher.api_token_env",
            "dispatcher.listen",
            "worker.providers",
            "callback_ingest.public_base_url",
            "telemetry.log_filter",
            "providers",
            "templates",
        ] {
            assert!(keys.contains(key), "{key} missing from {keys:?}");
        }
        // Sections are not values, and resolved secrets (`#[serde(skip)]`) are not keys.
        assert!(!keys.contains("broker"));
        assert!(!keys.contains("dispatcher.api_token"));
    }

    #[test]
    fn variables_are_sorted_into_overrides_and_strays() {
        let vars: Vec<(String, String)> = [
            ("SENDFLEET_DISPATCHER__CONCURRENCY", "8"),
            ("SENDFLEET_WORKER__PROVIDERS", "[\"a\", \"b\"]"),
            ("SENDFLEET_CONFIG", "/etc/sendfleet.toml"),
            ("SENDFLEET_API_TOKEN", "0123456789abcdef"),
            ("SENDFLEET_PROVIDERS__0__RATE_PER_SECOND", "10"),
            ("PATH", "/usr/bin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let sorted = Overrides::read(&vars);
        let set: Vec<(&str, &toml::Value)> = sorted.overrides.iter().map(|o| (o.key.as_str(), &o.value)).collect();
        assert_eq!(
            set,
            [
                ("dispatcher.concurrency", &toml::Value::Integer(8)),
                ("worker.providers", &toml::Value::Array(vec!["a".into(), "b".into()])),
            ]
        );
        let warnings = sorted.warnings(&BTreeSet::new());
        assert_eq!(
            warnings,
            [
                ConfigWarning::UnknownVariable { variable: "SENDFLEET_API_TOKEN".into() },
                ConfigWarning::InsideKey {
                    variable: "SENDFLEET_PROVIDERS__0__RATE_PER_SECOND".into(),
                    key: "providers".into()
                },
            ]
        );
        // A variable the config reads as a secret is not a stray.
        let read = BTreeSet::from(["SENDFLEET_API_TOKEN".to_owned()]);
        assert_eq!(sorted.warnings(&read).len(), 1);
    }
}

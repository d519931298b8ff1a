//! The boundary between the configuration and the vendors. The config crate names no
//! vendor: a provider entry holds the fields every provider has, and its kind's vendor
//! module (in `sendfleet-providers`, through [`VendorCatalog`]) checks what is its own —
//! its section (`[providers.twilio]`, `[providers.generic]`, …), how it uses the common
//! fields — adding to the same list of errors, and keeps its typed settings in
//! [`ProviderConfig::vendor`].

use std::{any::Any, fmt, sync::Arc};

use serde::de::DeserializeOwned;

use crate::{FieldError, ProviderConfig, Secret};

/// The vendors a build knows. Implemented by `sendfleet_providers::VENDORS`; passed to
/// [`crate::Config::load`] so loading checks every vendor's settings with the rest.
pub trait VendorCatalog {
    /// Every kind the build can send with (`infobip_rcs`, `twilio_sms`, …).
    fn kinds(&self) -> Vec<&'static str>;
    /// Every vendor section name a provider entry may carry (`generic`, `twilio`, …).
    fn sections(&self) -> Vec<&'static str>;
    /// Checks what is vendor-specific about `provider`: an unknown kind, its section, the
    /// common fields the vendor reads or refuses. Every problem goes to `check`; the
    /// typed settings go to `provider.vendor`.
    fn check(&self, provider: &mut ProviderConfig, check: &mut VendorCheck<'_>);
}

/// A vendor's own settings of one provider, typed by the vendor's module and read back
/// by its adapter ([`VendorSettings::get`]). Empty for vendors without a section.
#[derive(Clone, Default)]
pub struct VendorSettings(Option<Arc<dyn VendorSection>>);

/// What a vendor's settings type is: printable (with its secrets redacted, as
/// [`Secret`] does) and shareable.
pub trait VendorSection: Any + fmt::Debug + Send + Sync {}

impl<T: Any + fmt::Debug + Send + Sync> VendorSection for T {}

impl VendorSettings {
    /// Settings holding `section`.
    pub fn new<T: VendorSection>(section: T) -> VendorSettings {
        VendorSettings(Some(Arc::new(section)))
    }

    /// The settings, if they are a `T`.
    pub fn get<T: VendorSection>(&self) -> Option<&T> {
        let section: &dyn Any = self.0.as_deref()?;
        section.downcast_ref::<T>()
    }
}

impl fmt::Debug for VendorSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(section) => section.fmt(f),
            None => f.write_str("None"),
        }
    }
}

/// Every problem found while loading, each named by its key path.
#[derive(Debug, Default)]
pub struct FieldErrors(pub(crate) Vec<FieldError>);

impl FieldErrors {
    /// Records a problem with the field at `field` (a full key path).
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }
}

/// One provider's vendor check: where it is, its section as written, and where its
/// problems go.
pub struct VendorCheck<'a> {
    at: String,
    section: Option<(&'static str, toml::Value)>,
    secrets: &'a dyn Fn(&str) -> Option<String>,
    errors: &'a mut FieldErrors,
}

impl<'a> VendorCheck<'a> {
    pub(crate) fn new(
        at: String,
        section: Option<(&'static str, toml::Value)>,
        secrets: &'a dyn Fn(&str) -> Option<String>,
        errors: &'a mut FieldErrors,
    ) -> VendorCheck<'a> {
        VendorCheck { at, section, secrets, errors }
    }

    /// Records a problem with `field`, a path relative to the provider (`base_url`,
    /// `twilio.account_sid`).
    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        let at = format!("{}.{field}", self.at);
        self.errors.push(at, message);
    }

    /// The name of the section the entry carries, if any.
    fn section_name(&self) -> Option<&'static str> {
        self.section.as_ref().map(|(name, _)| *name)
    }

    /// Takes the section named `name` and reads it as a `T`. Missing: `None` and, when
    /// `required`, an error saying what it needs. Unreadable: `None` and an error naming
    /// the bad key. A section of another vendor is refused by [`VendorCheck::finish`].
    pub fn take_section<T: DeserializeOwned>(&mut self, name: &'static str, required: &str) -> Option<T> {
        if self.section_name() != Some(name) {
            if !required.is_empty() {
                self.push(name, format!("required: {required}"));
            }
            return None;
        }
        let (_, value) = self.section.take()?;
        match crate::from_value::<T>(value) {
            Ok(section) => Some(section),
            Err((key, message)) => {
                let field = if key.is_empty() { name.to_owned() } else { format!("{name}.{key}") };
                self.push(&field, message);
                None
            }
        }
    }

    /// The secret held by the environment variable `name`, named by the key `field`
    /// that names it; a missing or empty variable is an error.
    pub fn secret(&mut self, field: &str, name: &str) -> Option<Secret> {
        let value = crate::validate::resolve(self.secrets, name);
        if value.is_none() {
            self.push(field, format!("environment variable {name} is not set"));
        }
        value
    }

    /// Refuses a section the vendor did not take (it belongs to another vendor).
    pub(crate) fn finish(self, kind: &str) {
        if let Some((name, _)) = self.section {
            let at = format!("{}.{name}", self.at);
            self.errors.push(at, format!("not a setting of {kind} providers"));
        }
    }
}

/// True for an absolute http(s) URL with a host.
pub fn is_http_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

//! The registry of vendors: what replaces every match on a provider's kind. The config
//! crate asks it to check each provider's vendor settings ([`VendorCatalog`]); the
//! worker, the dispatcher and callback-ingest build adapters through it ([`crate::build`]).

use std::sync::Arc;

use sendfleet_config::{ProviderConfig, ProviderKind, VendorCatalog, VendorCheck};
use sendfleet_protocol::SendJob;

use crate::{AdapterError, AdapterSettings, Provider, RequestGate};

/// Builds a vendor's adapter (see [`crate::build`]).
pub type BuildFn =
    fn(&ProviderConfig, &AdapterSettings, Arc<dyn RequestGate>) -> Result<Arc<dyn Provider>, AdapterError>;

/// One vendor: the kinds it serves and its module's entry points.
pub struct Vendor {
    /// The vendor's name, as the docs write it.
    pub name: &'static str,
    /// The kinds it serves; each ends in its channel (`_rcs`, `_sms`).
    pub kinds: &'static [&'static str],
    /// The key of its section in a provider entry (`[providers.<section>]`), if it has one.
    pub section: Option<&'static str>,
    /// Checks a provider's vendor settings at load time (see [`VendorCatalog::check`]).
    pub check: fn(&mut ProviderConfig, &mut VendorCheck<'_>),
    /// Builds the adapter of a checked provider.
    pub build: BuildFn,
    /// Whether the vendor's API can carry a job (see [`crate::check_job`]).
    pub check_job: fn(&ProviderConfig, &SendJob) -> Result<(), String>,
}

/// The vendors of this build.
pub struct Vendors(&'static [Vendor]);

/// Every vendor this build can send with. A new vendor is one line here.
pub static VENDORS: Vendors = Vendors(&[crate::infobip::VENDOR, crate::generic::VENDOR, crate::twilio::VENDOR]);

impl Vendors {
    /// The vendor serving `kind`.
    pub fn of(&self, kind: &ProviderKind) -> Option<&Vendor> {
        self.0.iter().find(|vendor| vendor.kinds.contains(&kind.as_str()))
    }
}

impl VendorCatalog for Vendors {
    fn kinds(&self) -> Vec<&'static str> {
        self.0.iter().flat_map(|vendor| vendor.kinds.iter().copied()).collect()
    }

    fn sections(&self) -> Vec<&'static str> {
        self.0.iter().filter_map(|vendor| vendor.section).collect()
    }

    fn check(&self, provider: &mut ProviderConfig, check: &mut VendorCheck<'_>) {
        if let Some(vendor) = self.of(&provider.kind) {
            (vendor.check)(provider, check);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_names_its_channel_and_belongs_to_one_vendor() {
        let kinds = VENDORS.kinds();
        for kind in &kinds {
            assert!(ProviderKind::new(kind).is_ok(), "{kind} does not end in _rcs or _sms");
            assert_eq!(kinds.iter().filter(|k| *k == kind).count(), 1, "{kind} is served twice");
        }
        let sections = VENDORS.sections();
        assert!(sections.iter().all(|s| kinds.iter().all(|k| k != s)), "a section is named like a kind");
    }
}

//! What an Infobip-API provider (Infobip RCS and SMS, JioCX) needs from its entry: the
//! account's base URL and its API key. Infobip has no section of its own.

use sendfleet_config::{ProviderConfig, VendorCheck, is_http_url};

/// Checks the base URL and resolves the API key (`Authorization: App <key>`).
pub(crate) fn check(provider: &mut ProviderConfig, check: &mut VendorCheck<'_>) {
    if !is_http_url(&provider.base_url) {
        check.push("base_url", "must be an http(s) URL like https://xxxxx.api.infobip.com");
    }
    match &provider.api_key_env {
        None => check.push("api_key_env", "required: the environment variable holding the API key"),
        Some(name) => {
            if let Some(key) = check.secret("api_key_env", name) {
                provider.api_key = key;
            }
        }
    }
}

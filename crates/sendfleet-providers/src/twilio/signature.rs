//! `X-Twilio-Signature`: base64 of HMAC-SHA1, keyed with the account's Auth Token, over
//! the full URL Twilio called followed by every POST parameter, sorted by name (byte
//! order), as name then value with no separators. A name given more than once
//! contributes each distinct value, sorted, as Twilio's own validators do.

use base64::Engine;
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

use crate::{CallbackError, CallbackRequest};

/// The header Twilio signs with.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// The signature Twilio sends for a form POST to `url` with `params`.
pub fn signature(url: &str, params: &[(String, String)], auth_token: &str) -> String {
    let mut sorted: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a callback's signature against `url` (the public URL it was posted to).
/// `no_public_url`: callback-ingest does not know its public URL, so no signature can
/// be checked and every callback is refused (saying why).
pub(crate) fn verify(
    url: &str,
    request: &CallbackRequest<'_>,
    auth_token: &str,
    no_public_url: bool,
) -> Result<(), CallbackError> {
    let given = request
        .headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| CallbackError::Unauthenticated("no X-Twilio-Signature header".into()))?;
    if no_public_url {
        return Err(CallbackError::Unauthenticated(
            "callback_ingest.public_base_url is not set, so Twilio signatures cannot be checked".into(),
        ));
    }
    let params: Vec<(String, String)> =
        form_urlencoded::parse(request.body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let expected = signature(url, &params, auth_token);
    if bool::from(expected.as_bytes().ct_eq(given.trim().as_bytes())) {
        Ok(())
    } else {
        Err(CallbackError::Unauthenticated("X-Twilio-Signature does not match the URL and parameters".into()))
    }
}

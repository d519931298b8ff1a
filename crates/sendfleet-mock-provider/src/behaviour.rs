//! What the mock does with each request. Changeable while running.

use serde::{Deserialize, Serialize};

/// The mock's behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    /// Latency before every answer, milliseconds (the minimum when jittered).
    pub latency_ms: u64,
    /// Extra uniformly random latency, 0..=this many milliseconds.
    pub latency_jitter_ms: u64,
    /// Share of send requests answered 503 (0.0–1.0).
    pub error_503_ratio: f64,
    /// Share of send requests answered 429 (0.0–1.0).
    pub error_429_ratio: f64,
    /// `Retry-After` seconds on 429/503 answers.
    pub retry_after_seconds: Option<u64>,
    /// Answer every send request with this status (e.g. 401) and Infobip's error body.
    pub force_status: Option<u16>,
    /// Post delivery reports.
    pub delivery_reports: bool,
    /// Delay before a delivery report is posted, milliseconds.
    pub delivery_report_delay_ms: u64,
    /// Share of delivery reports that say UNDELIVERABLE (0.0–1.0).
    pub undelivered_ratio: f64,
    /// Destinations (digits, no `+`) starting with one of these are not RCS capable:
    /// RCS sends to them get an EC_UNKNOWN_USER (7002) report.
    pub not_rcs_capable_prefixes: Vec<String>,
    /// These destinations (digits, `+` optional) are not RCS capable either.
    pub not_rcs_capable_numbers: Vec<String>,
    /// Share of destinations (0.0–1.0) that are not RCS capable, chosen by a hash of the
    /// number: the same numbers every run, and the capability check and the delivery
    /// reports agree. See [`Behaviour::is_rcs_capable`].
    pub not_rcs_capable_ratio: f64,
    /// Share of the RCS-capable destinations (0.0–1.0) whose RCS delivery report fails
    /// anyway with `rcs_dlr_error_id`, chosen by another hash of the number.
    pub rcs_dlr_fail_ratio: f64,
    /// Error id of those failing RCS reports (7002 EC_UNKNOWN_USER, 7005, 7201, 7003, …).
    pub rcs_dlr_error_id: i32,
    /// RCS send requests to these destinations (digits, `+` optional) are answered with
    /// this status and Infobip's error body: 400 refuses them for good, 500/503 fails
    /// them every time until the sender's retries run out. SMS requests to the same
    /// numbers go through, as an SMS fallback's would.
    pub rcs_status_by_number: std::collections::BTreeMap<String, u16>,
    /// Share of capability queries answered 429 (0.0–1.0), to exercise failing open.
    pub capability_error_ratio: f64,
    /// Every delivery-report POST also goes, concurrently, to the same path on each of
    /// these base URLs (`http://host:port`): duplicate reports arriving at several
    /// callback-ingest instances at once, as a provider retrying through a load balancer
    /// would cause.
    pub dlr_duplicate_bases: Vec<String>,
    /// Keep request bodies (tests); the bench turns this off to save memory.
    pub record_bodies: bool,
    /// How the Generic API endpoints (`/generic/rcs`, `/generic/sms`) authenticate.
    pub generic_auth: GenericAuth,
    /// `expires_in` of the OAuth tokens `POST /oauth/token` issues, seconds; a token is
    /// refused (401) once it is older than this.
    pub oauth_token_ttl_seconds: u64,
    /// Twilio Messaging Services (`MG…`) that hold an RCS sender: a plain destination
    /// sent through one is tried on RCS first and falls back to SMS.
    pub twilio_rcs_services: Vec<String>,
    /// Twilio's error code on an RCS-only message that fails (`rcs_dlr_fail_ratio`).
    pub twilio_rcs_error_code: u32,
}

/// Authentication the Generic API endpoints require.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum GenericAuth {
    /// Anything goes.
    #[default]
    None,
    /// `Authorization: Basic` with exactly these credentials.
    Basic {
        /// User id.
        username: String,
        /// Password.
        password: String,
    },
    /// `Authorization: Bearer <token>` with a live token from `POST /oauth/token`,
    /// which issues tokens to this client only.
    Oauth2 {
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: String,
    },
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            latency_ms: 0,
            latency_jitter_ms: 0,
            error_503_ratio: 0.0,
            error_429_ratio: 0.0,
            retry_after_seconds: None,
            force_status: None,
            delivery_reports: true,
            delivery_report_delay_ms: 0,
            undelivered_ratio: 0.0,
            not_rcs_capable_prefixes: Vec::new(),
            not_rcs_capable_numbers: Vec::new(),
            not_rcs_capable_ratio: 0.0,
            rcs_dlr_fail_ratio: 0.0,
            rcs_dlr_error_id: 7002,
            rcs_status_by_number: Default::default(),
            capability_error_ratio: 0.0,
            dlr_duplicate_bases: Vec::new(),
            record_bodies: true,
            generic_auth: GenericAuth::None,
            oauth_token_ttl_seconds: 3_600,
            twilio_rcs_services: Vec::new(),
            twilio_rcs_error_code: 63036,
        }
    }
}

impl Behaviour {
    /// Whether `number` (digits, `+` optional) can receive RCS: not when it starts with
    /// one of `not_rcs_capable_prefixes`, is in `not_rcs_capable_numbers`, or falls in
    /// the `not_rcs_capable_ratio` share by hash. Tests compute the expected outcome
    /// with this same function.
    pub fn is_rcs_capable(&self, number: &str) -> bool {
        let digits = number.trim_start_matches('+');
        let listed = self.not_rcs_capable_numbers.iter().any(|n| n.trim_start_matches('+') == digits);
        let prefixed = self.not_rcs_capable_prefixes.iter().any(|p| digits.starts_with(p.trim_start_matches('+')));
        !(listed || prefixed || unit_hash(digits, b'c') < self.not_rcs_capable_ratio)
    }

    /// The status an RCS send to `number` is forced to, from `rcs_status_by_number`.
    pub fn rcs_status_for(&self, number: &str) -> Option<u16> {
        let digits = number.trim_start_matches('+');
        self.rcs_status_by_number.iter().find(|(n, _)| n.trim_start_matches('+') == digits).map(|(_, s)| *s)
    }

    /// Whether an RCS message to a capable `number` gets a failing delivery report
    /// (`rcs_dlr_error_id`), by a hash independent of the capability one.
    pub fn rcs_dlr_fails(&self, number: &str) -> bool {
        unit_hash(number.trim_start_matches('+'), b'd') < self.rcs_dlr_fail_ratio
    }
}

/// FNV-1a of the salted number, mapped onto [0, 1). Stable across runs and builds.
fn unit_hash(digits: &str, salt: u8) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in std::iter::once(salt).chain(digits.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // A final avalanche so numbers differing in their last digit spread evenly.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_shares_are_deterministic_and_close_to_the_ratio() {
        let behaviour = Behaviour { not_rcs_capable_ratio: 0.3, rcs_dlr_fail_ratio: 0.1, ..Behaviour::default() };
        let numbers: Vec<String> = (0..10_000).map(|i| format!("+9198{i:08}")).collect();
        let not_capable = numbers.iter().filter(|n| !behaviour.is_rcs_capable(n)).count();
        assert!((2_700..3_300).contains(&not_capable), "{not_capable}");
        let failing = numbers.iter().filter(|n| behaviour.is_rcs_capable(n) && behaviour.rcs_dlr_fails(n)).count();
        assert!((500..900).contains(&failing), "about 10 % of the 70 % capable: {failing}");
        let again = numbers.iter().filter(|n| !behaviour.is_rcs_capable(n)).count();
        assert_eq!(not_capable, again);
        assert_eq!(behaviour.is_rcs_capable("+919800000001"), behaviour.is_rcs_capable("919800000001"));
    }

    #[test]
    fn lists_and_prefixes_make_numbers_not_capable() {
        let behaviour = Behaviour {
            not_rcs_capable_numbers: vec!["+15550000001".into()],
            not_rcs_capable_prefixes: vec!["4420".into()],
            ..Behaviour::default()
        };
        assert!(!behaviour.is_rcs_capable("15550000001"));
        assert!(!behaviour.is_rcs_capable("+442071234567"));
        assert!(behaviour.is_rcs_capable("+15550000002"));
        assert!(!Behaviour::default().rcs_dlr_fails("+15550000002"));
    }
}

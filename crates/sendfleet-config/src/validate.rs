//! Validation after extraction: collect every problem, resolve secrets.

use std::collections::HashSet;

use sendfleet_protocol::{Channel, Content, TurkeyIys};

use crate::{
    Config, FallbackMode, FieldError, GENERIC_RESERVED_BODY_KEYS, GenericAuthConfig, GenericConfig,
    MAX_RATE_PER_SECOND, ProviderConfig, ProviderKind, Secret, TemplateConfig, UrlError,
    generic::{is_header_name, is_header_value},
    parse_parameter_template,
};

struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }
}

/// Checks every field and fills the secrets; returns all problems found.
pub(crate) fn validate_and_resolve(config: &mut Config, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<FieldError> {
    let mut errors = Errors(Vec::new());

    if !valid_name(&config.broker.prefix) {
        errors.push("broker.prefix", "must be non-empty: letters, digits, '-', '_' or '.'");
    }
    let urls = config.broker.url.all();
    for (index, url) in urls.iter().enumerate() {
        let field = if urls.len() == 1 { "broker.url".to_owned() } else { format!("broker.url[{index}]") };
        let text = url.expose();
        if !(text.starts_with("amqp://") || text.starts_with("amqps://")) {
            errors.push(field, "must start with amqp:// or amqps://");
        } else if let Err(problem) = url.check() {
            errors.push(field, unusable_url(&problem));
        }
    }
    let url = config.redis.url.expose();
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://")) {
        errors.push("redis.url", "must start with redis://, rediss:// or unix://");
    } else if let Err(problem) = config.redis.url.check() {
        errors.push("redis.url", unusable_url(&problem));
    }
    for (field, listen) in [
        ("dispatcher.listen", &config.dispatcher.listen),
        ("worker.listen", &config.worker.listen),
        ("callback_ingest.listen", &config.callback_ingest.listen),
    ] {
        if listen.parse::<std::net::SocketAddr>().is_err() {
            errors.push(field, format!("'{listen}' is not a socket address like 0.0.0.0:9102"));
        }
    }
    let base = &config.callback_ingest.public_base_url;
    if !base.is_empty() && !is_http_url(base) {
        errors.push("callback_ingest.public_base_url", "must be an http(s) URL");
    }
    if config.callback_ingest.max_in_flight == 0 {
        errors.push("callback_ingest.max_in_flight", "must be at least 1");
    }
    if config.dispatcher.concurrency == 0 {
        errors.push("dispatcher.concurrency", "must be at least 1");
    }
    if let Some(name) = &config.dispatcher.api_token_env {
        match resolve(lookup, name) {
            Some(token) if token.expose().len() >= 16 => config.dispatcher.api_token = token,
            Some(_) => errors.push("dispatcher.api_token_env", format!("{name} must hold at least 16 characters")),
            None => errors.push("dispatcher.api_token_env", format!("environment variable {name} is not set")),
        }
    }
    if let Ok(listen) = config.dispatcher.listen.parse::<std::net::SocketAddr>()
        && !listen.ip().is_loopback()
        && config.dispatcher.api_token_env.is_none()
    {
        errors.push(
            "dispatcher.api_token_env",
            format!(
                "required because dispatcher.listen ({listen}) is reachable from other hosts: without a token \
                 anyone who reaches it can send messages. Name the environment variable holding the token \
                 (e.g. api_token_env = \"SENDFLEET_API_TOKEN\"), or listen on 127.0.0.1"
            ),
        );
    }
    if config.dispatcher.bulk_publish_window == 0 || config.dispatcher.bulk_publish_window > 10_000 {
        errors.push("dispatcher.bulk_publish_window", "must be between 1 and 10000");
    }
    if config.dispatcher.max_recipients_per_request == 0 || config.dispatcher.max_recipients_per_request > 100_000 {
        errors.push("dispatcher.max_recipients_per_request", "must be between 1 and 100000");
    }
    if config.dispatcher.api_max_line_bytes < 256 {
        errors.push("dispatcher.api_max_line_bytes", "must be at least 256");
    }
    validate_events_queue(&config.broker.events_queue, &mut errors);

    let mut ids = HashSet::new();
    let mut defaults = HashSet::new();
    for (index, provider) in config.providers.iter_mut().enumerate() {
        let at = format!("providers[{index}]");
        if !ids.insert(provider.id.clone()) {
            errors.push(format!("{at}.id"), format!("duplicate provider id '{}'", provider.id));
        }
        if provider.default_for_channel && !defaults.insert(provider.channel()) {
            errors.push(
                format!("{at}.default_for_channel"),
                format!("a default {} provider is already set", provider.channel()),
            );
        }
        validate_provider(provider, &at, lookup, &mut errors);
    }
    for (index, id) in config.worker.providers.iter().enumerate() {
        if !ids.contains(id) {
            errors.push(format!("worker.providers[{index}]"), format!("no provider with id '{id}'"));
        }
    }
    if config.worker.capability_batch_window_ms > 1_000 {
        errors.push("worker.capability_batch_window_ms", "at most 1000 ms (jobs wait this long before sending)");
    }
    if config.status.ttl_seconds == 0 || config.status.ttl_seconds > 31_536_000 {
        errors.push("status.ttl_seconds", "must be between 1 and 31536000 (a year)");
    }
    if config.status.queue_capacity == 0 || config.status.queue_capacity > 10_000_000 {
        errors.push("status.queue_capacity", "must be between 1 and 10000000");
    }
    if config.worker.capability_cache_ttl_seconds == 0 {
        errors.push("worker.capability_cache_ttl_seconds", "must be at least 1");
    }
    let sms_ids: HashSet<&str> =
        config.providers.iter().filter(|p| p.channel() == Channel::Sms).map(|p| p.id.as_str()).collect();
    for (index, provider) in config.providers.iter().enumerate() {
        if let Some(fallback) = &provider.sms_fallback
            && let Some(id) = &fallback.sms_provider
            && !sms_ids.contains(id.as_str())
        {
            errors.push(
                format!("providers[{index}].sms_fallback.sms_provider"),
                format!("no SMS provider with id '{id}'"),
            );
        }
    }
    let mut template_ids = HashSet::new();
    for (index, template) in config.templates.iter_mut().enumerate() {
        if !template_ids.insert(template.id.clone()) {
            errors.push(format!("templates[{index}].id"), format!("duplicate template id '{}'", template.id));
        }
        if template.id.is_empty() {
            errors.push(format!("templates[{index}].id"), "must not be empty");
        }
        match load_template(template) {
            Ok(content) => template.parsed = Some(content),
            Err((field, message)) => errors.push(format!("templates[{index}].{field}"), message),
        }
    }
    errors.0
}

/// RabbitMQ's limits on the queue arguments the events queue bounds become.
fn validate_events_queue(events: &crate::EventsQueueConfig, errors: &mut Errors) {
    // `x-message-ttl` is an unsigned 32-bit count of milliseconds (about 49 days).
    const MAX_TTL_SECONDS: u64 = u32::MAX as u64 / 1_000;
    if events.message_ttl_seconds > MAX_TTL_SECONDS {
        errors.push(
            "broker.events_queue.message_ttl_seconds",
            format!("at most {MAX_TTL_SECONDS} (RabbitMQ's x-message-ttl limit); 0 keeps events until consumed"),
        );
    }
    for (field, value) in [
        ("broker.events_queue.max_length", events.max_length),
        ("broker.events_queue.max_length_bytes", events.max_length_bytes),
    ] {
        if i64::try_from(value).is_err() {
            errors.push(field, format!("at most {}; 0 = no limit", i64::MAX));
        }
    }
}

fn validate_provider(
    provider: &mut ProviderConfig,
    at: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) {
    if provider.id.is_empty()
        || provider.id.len() > 64
        || !provider.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        errors.push(format!("{at}.id"), "must be 1-64 of a-z, 0-9, '-' or '_'");
    }
    if provider.rate_per_second == 0 || provider.rate_per_second > MAX_RATE_PER_SECOND {
        errors.push(
            format!("{at}.rate_per_second"),
            format!("must be between 1 and {MAX_RATE_PER_SECOND} requests/s (the fleet-wide cap)"),
        );
    }
    if provider.concurrency == 0 || provider.concurrency > MAX_RATE_PER_SECOND {
        errors.push(
            format!("{at}.concurrency"),
            format!("must be between 1 and {MAX_RATE_PER_SECOND} (requests in flight across the fleet)"),
        );
    }
    if provider.jobs_per_worker.is_some_and(|jobs| jobs == 0 || jobs > u32::from(u16::MAX)) {
        errors.push(format!("{at}.jobs_per_worker"), format!("must be between 1 and {}", u16::MAX));
    }
    if let Some(burst) = provider.burst
        && (burst == 0 || burst > provider.rate_per_second)
    {
        errors.push(format!("{at}.burst"), "must be between 1 and rate_per_second");
    }
    if provider.request_timeout_ms == 0 {
        errors.push(format!("{at}.request_timeout_ms"), "must be at least 1");
    }
    if provider.retry.max_attempts == 0 {
        errors.push(format!("{at}.retry.max_attempts"), "must be at least 1");
    }
    if provider.retry.initial_delay_ms == 0 || provider.retry.initial_delay_ms > provider.retry.max_delay_ms {
        errors.push(format!("{at}.retry.initial_delay_ms"), "must be at least 1 and at most retry.max_delay_ms");
    }
    if provider.sender_ids.is_empty() || provider.sender_ids.iter().any(String::is_empty) {
        errors.push(format!("{at}.sender_ids"), "needs at least one non-empty sender id");
    }
    if provider.own_click_tracking && provider.click_tracking.as_ref().is_some_and(|c| c.enabled) {
        errors.push(
            format!("{at}.click_tracking"),
            "provider click tracking and own_click_tracking are both enabled; links would be wrapped twice",
        );
    }

    if provider.kind.is_infobip_api() {
        if !is_http_url(&provider.base_url) {
            errors.push(format!("{at}.base_url"), "must be an http(s) URL like https://xxxxx.api.infobip.com");
        }
        match &provider.api_key_env {
            None => errors.push(format!("{at}.api_key_env"), "required: the environment variable holding the API key"),
            Some(name) => match resolve(lookup, name) {
                Some(key) => provider.api_key = key,
                None => errors.push(format!("{at}.api_key_env"), format!("environment variable {name} is not set")),
            },
        }
    } else if provider.kind.is_twilio() {
        validate_twilio(provider, at, lookup, errors);
    } else {
        match &mut provider.generic {
            None => errors.push(format!("{at}.generic"), "required for generic providers (endpoint, auth, …)"),
            Some(generic) => {
                if !is_http_url(&generic.endpoint) {
                    errors.push(format!("{at}.generic.endpoint"), "must be an http(s) URL");
                }
                if !matches!(generic.method.as_str(), "POST" | "PUT") {
                    errors.push(format!("{at}.generic.method"), "must be POST or PUT");
                }
                validate_generic_extras(generic, at, lookup, errors);
                match &mut generic.auth {
                    GenericAuthConfig::None => {}
                    GenericAuthConfig::Basic { password_env, password, .. } => match resolve(lookup, password_env) {
                        Some(value) => *password = value,
                        None => errors.push(
                            format!("{at}.generic.auth.password_env"),
                            format!("environment variable {password_env} is not set"),
                        ),
                    },
                    GenericAuthConfig::Oauth2 { token_url, client_secret_env, client_secret, .. } => {
                        if !is_http_url(token_url) {
                            errors.push(format!("{at}.generic.auth.token_url"), "must be an http(s) URL");
                        }
                        match resolve(lookup, client_secret_env) {
                            Some(value) => *client_secret = value,
                            None => errors.push(
                                format!("{at}.generic.auth.client_secret_env"),
                                format!("environment variable {client_secret_env} is not set"),
                            ),
                        }
                    }
                }
            }
        }
    }
    if provider.generic.is_some() && !matches!(provider.kind, ProviderKind::GenericRcs | ProviderKind::GenericSms) {
        errors.push(format!("{at}.generic"), "only for generic_rcs / generic_sms providers");
    }
    if provider.twilio.is_some() && !provider.kind.is_twilio() {
        errors.push(format!("{at}.twilio"), "only for twilio_sms / twilio_rcs providers");
    }
    if let Some(fallback) = &provider.sms_fallback {
        if provider.channel() != Channel::Rcs {
            errors.push(format!("{at}.sms_fallback"), "only RCS providers have an SMS fallback");
        }
        if fallback.enabled && fallback.sender_id.as_deref().is_none_or(|s| s.trim().is_empty()) {
            errors.push(
                format!("{at}.sms_fallback.sender_id"),
                "required when the SMS fallback is enabled: the SMS sender id the fallback is sent from",
            );
        }
        if fallback.india && fallback.principal_entity_id.as_deref().is_none_or(|s| s.trim().is_empty()) {
            errors.push(
                format!("{at}.sms_fallback.principal_entity_id"),
                "required when the fallback is enabled for India (DLT principal entity id)",
            );
        }
    }
    if let Some(regional) = &provider.regional {
        if provider.channel() != Channel::Sms {
            errors.push(format!("{at}.regional"), "regional settings apply to SMS providers only");
        }
        if let Some(kind) = &regional.turkey_recipient_type
            && !TurkeyIys::is_known_recipient_type(kind)
        {
            errors.push(
                format!("{at}.regional.turkey_recipient_type"),
                format!("must be one of {}", TurkeyIys::RECIPIENT_TYPES.join(", ")),
            );
        }
        if regional.turkey_brand_code.is_some() && regional.turkey_recipient_type.is_none() {
            errors.push(
                format!("{at}.regional.turkey_recipient_type"),
                "required with turkey_brand_code (BIREYSEL or TACIR)",
            );
        }
        if regional.india_principal_entity_id.as_deref().is_some_and(|s| s.trim().is_empty()) {
            errors.push(format!("{at}.regional.india_principal_entity_id"), "must not be empty");
        }
    }
    if matches!(provider.kind, ProviderKind::InfobipSms | ProviderKind::TwilioSms) && provider.capability_check {
        errors.push(format!("{at}.capability_check"), "only RCS providers check capability");
    }
    if provider.kind == ProviderKind::TwilioRcs && provider.capability_check {
        errors.push(
            format!("{at}.capability_check"),
            "Twilio has no capability endpoint (its Messaging Service checks RCS capability itself)",
        );
    }
    if provider.fallback_mode == FallbackMode::Provider
        && !matches!(provider.kind, ProviderKind::InfobipRcs | ProviderKind::JiocxRcs | ProviderKind::TwilioRcs)
    {
        errors.push(
            format!("{at}.fallback_mode"),
            "\"provider\" is only for infobip_rcs / jiocx_rcs / twilio_rcs providers",
        );
    }
    if provider.fallback_mode == FallbackMode::Provider
        && provider.kind == ProviderKind::TwilioRcs
        && provider.twilio.as_ref().is_some_and(|t| t.messaging_service_sid.is_none())
    {
        errors.push(
            format!("{at}.twilio.messaging_service_sid"),
            "required with fallback_mode = \"provider\": Twilio falls back to SMS only through a Messaging Service",
        );
    }

    if let Some(name) = &provider.callback_token_env {
        match resolve(lookup, name) {
            // The token goes into a URL path: only unreserved characters survive unescaped.
            Some(token) if !token.expose().bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) => errors
                .push(
                    format!("{at}.callback_token_env"),
                    format!("{name} may only hold letters, digits, '-', '.', '_' and '~' (it goes into a URL path)"),
                ),
            Some(token) if token.expose().len() >= 16 => provider.callback_token = token,
            Some(_) => {
                errors.push(format!("{at}.callback_token_env"), format!("{name} must hold at least 16 characters"))
            }
            None => errors.push(format!("{at}.callback_token_env"), format!("environment variable {name} is not set")),
        }
    }
    if let Some(basic) = &mut provider.callback_basic_auth {
        match resolve(lookup, &basic.password_env) {
            Some(value) => basic.password = value,
            None => errors.push(
                format!("{at}.callback_basic_auth.password_env"),
                format!("environment variable {} is not set", basic.password_env),
            ),
        }
    }
}

/// A Twilio provider: the account section, its secrets, and the API base URL
/// (`https://api.twilio.com` when not given).
fn validate_twilio(
    provider: &mut ProviderConfig,
    at: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) {
    if provider.base_url.is_empty() {
        provider.base_url = TWILIO_API_BASE.to_owned();
    } else if !is_http_url(&provider.base_url) {
        errors.push(format!("{at}.base_url"), "must be an http(s) URL (default https://api.twilio.com)");
    }
    if provider.api_key_env.is_some() {
        errors
            .push(format!("{at}.api_key_env"), "not used by Twilio: set twilio.auth_token_env (and twilio.api_key_*)");
    }
    let Some(twilio) = &mut provider.twilio else {
        errors.push(format!("{at}.twilio"), "required for Twilio providers (account_sid, auth_token_env, …)");
        return;
    };
    if !is_twilio_sid(&twilio.account_sid, "AC") {
        errors.push(format!("{at}.twilio.account_sid"), "must be AC followed by 32 hex digits (the Account SID)");
    }
    match resolve(lookup, &twilio.auth_token_env) {
        Some(token) => twilio.auth_token = token,
        None => errors.push(
            format!("{at}.twilio.auth_token_env"),
            format!("environment variable {} is not set", twilio.auth_token_env),
        ),
    }
    match (&twilio.api_key_sid, &twilio.api_key_secret_env) {
        (None, None) => {}
        (Some(sid), Some(env)) => {
            if !is_twilio_sid(sid, "SK") {
                errors.push(format!("{at}.twilio.api_key_sid"), "must be SK followed by 32 hex digits");
            }
            match resolve(lookup, env) {
                Some(secret) => twilio.api_key_secret = secret,
                None => errors
                    .push(format!("{at}.twilio.api_key_secret_env"), format!("environment variable {env} is not set")),
            }
        }
        (Some(_), None) => errors.push(format!("{at}.twilio.api_key_secret_env"), "required with api_key_sid"),
        (None, Some(_)) => errors.push(format!("{at}.twilio.api_key_sid"), "required with api_key_secret_env"),
    }
    if let Some(sid) = &twilio.messaging_service_sid
        && !is_twilio_sid(sid, "MG")
    {
        errors.push(format!("{at}.twilio.messaging_service_sid"), "must be MG followed by 32 hex digits");
    }
}

/// Twilio's REST API.
const TWILIO_API_BASE: &str = "https://api.twilio.com";

/// A Twilio SID: two letters and 32 hex digits (`^AC[0-9a-fA-F]{32}$` in Twilio's spec).
fn is_twilio_sid(sid: &str, prefix: &str) -> bool {
    sid.len() == 34 && sid.starts_with(prefix) && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads a template's content from `content` or `file` and checks it parses; the error
/// names the field (`content` or `file`).
fn load_template(template: &TemplateConfig) -> Result<Content, (&'static str, String)> {
    match (&template.content, &template.file) {
        (Some(content), None) => crate::from_value::<Content>(content.clone()).map_err(|(at, problem)| {
            let at = if at.is_empty() { String::new() } else { format!("{at}: ") };
            ("content", format!("not a valid content: {at}{problem}"))
        }),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| ("file", format!("cannot read {path}: {e}")))?;
            let parsed = if path.ends_with(".json") {
                serde_json::from_str::<Content>(&text).map_err(|e| crate::plain::message(&e.to_string()))
            } else {
                toml::from_str::<Content>(&text).map_err(|e| crate::plain::message(e.message()))
            };
            parsed.map_err(|e| ("file", format!("{path} is not a valid content: {e}")))
        }
        (Some(_), Some(_)) => Err(("file", "give content or file, not both".into())),
        (None, None) => Err(("content", "required (or file)".into())),
    }
}

/// Headers and body parameters of a generic provider: every problem named by its key.
fn validate_generic_extras(
    generic: &mut GenericConfig,
    at: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) {
    let has_auth = !matches!(generic.auth, GenericAuthConfig::None);
    let mut seen = HashSet::new();
    let names = generic
        .headers
        .keys()
        .map(|n| (n, "headers"))
        .chain(generic.secret_headers.keys().map(|n| (n, "secret_headers")));
    for (name, section) in names {
        let field = format!("{at}.generic.{section}.{name}");
        if !is_header_name(name) {
            errors.push(field, "is not a valid HTTP header name");
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if !seen.insert(lower.clone()) {
            errors.push(field, "set more than once (header names are case-insensitive)");
        } else if lower == "authorization" && has_auth {
            errors.push(field, "conflicts with generic.auth, which sets Authorization; use auth type \"none\"");
        } else if matches!(lower.as_str(), "content-length" | "host" | "transfer-encoding" | "connection") {
            errors.push(field, "is set by the HTTP client and cannot be configured");
        }
    }
    for (name, value) in &generic.headers {
        if name.eq_ignore_ascii_case("content-type") && !value.to_ascii_lowercase().contains("json") {
            errors.push(
                format!("{at}.generic.headers.{name}"),
                "the Generic API body is JSON; Content-Type must be a JSON media type",
            );
        } else if !is_header_value(value) {
            errors.push(format!("{at}.generic.headers.{name}"), "contains characters not allowed in an HTTP header");
        }
    }
    for (name, env) in &generic.secret_headers {
        match resolve(lookup, env) {
            Some(value) if is_header_value(value.expose()) => {
                generic.secret_header_values.insert(name.clone(), value);
            }
            Some(_) => errors.push(
                format!("{at}.generic.secret_headers.{name}"),
                format!("the value of {env} contains characters not allowed in an HTTP header"),
            ),
            None => errors
                .push(format!("{at}.generic.secret_headers.{name}"), format!("environment variable {env} is not set")),
        }
    }
    for (section, parameters) in
        [("body_parameters", &generic.body_parameters), ("fallback_body_parameters", &generic.fallback_body_parameters)]
    {
        for (key, value) in parameters {
            let field = format!("{at}.generic.{section}.{key}");
            if key.is_empty() {
                errors.push(field, "parameter names must be non-empty");
            } else if GENERIC_RESERVED_BODY_KEYS.contains(&key.as_str()) {
                errors.push(field, format!("'{key}' is a field of the Generic API body and cannot be replaced"));
            } else if let Err(problem) = parse_parameter_template(value) {
                errors.push(field, problem);
            }
        }
    }
}

/// The message for a broker or Redis URL that does not parse. It never quotes the URL
/// (the password could be in any part of it); the usual cause is a reserved character
/// left unencoded in the password, so the fix is spelled out.
fn unusable_url(problem: &UrlError) -> String {
    format!(
        "{problem}; percent-encode reserved characters in the user name and password \
         ('/' as %2F, '@' as %40, ':' as %3A, '?' as %3F, '#' as %23, '%' as %25). \
         The URL is not shown because it may contain a password"
    )
}

fn resolve(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<Secret> {
    lookup(name).filter(|v| !v.is_empty()).map(Secret::new)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_http_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

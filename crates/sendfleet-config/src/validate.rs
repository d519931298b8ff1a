//! Validation after extraction: collect every problem, resolve secrets.

use std::collections::HashSet;

use sendfleet_protocol::{Channel, Content, TurkeyIys};

use crate::{
    Config, FallbackMode, FieldError, FieldErrors, MAX_RATE_PER_SECOND, ProviderConfig, Secret, TemplateConfig,
    UrlError, VendorCatalog, VendorCheck, is_http_url,
};

/// A provider entry's vendor section, taken out of the entry before it is read (its
/// type belongs to the vendor's module): the section's key and value.
pub(crate) type RawSection = Option<(&'static str, toml::Value)>;

/// Checks every field and fills the secrets; returns all problems found. `sections`
/// holds each provider's vendor section, by index.
pub(crate) fn validate_and_resolve(
    config: &mut Config,
    lookup: &dyn Fn(&str) -> Option<String>,
    vendors: &dyn VendorCatalog,
    mut sections: Vec<RawSection>,
) -> Vec<FieldError> {
    let mut errors = FieldErrors::default();

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
    for (index, sentinel) in config.redis.sentinels.iter().enumerate() {
        let field = format!("redis.sentinels[{index}]");
        if !sentinel.expose().starts_with("redis://") {
            errors.push(field, "must start with redis:// (a Sentinel's address, e.g. redis://10.0.0.1:26379)");
        } else if let Err(problem) = sentinel.check() {
            errors.push(field, unusable_url(&problem));
        }
    }
    if !config.redis.sentinels.is_empty() && config.redis.master_name.trim().is_empty() {
        errors.push("redis.master_name", "required with redis.sentinels: the name the Sentinels monitor");
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
    if !(1..=7).contains(&config.broker.quorum_replicas) {
        errors.push("broker.quorum_replicas", "must be between 1 and 7 (an odd number: 3 or 5 on a cluster)");
    }
    if config.broker.delivery_limit == 0 || config.broker.delivery_limit > 1_000 {
        errors.push("broker.delivery_limit", "must be between 1 and 1000");
    }

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
        let section = sections.get_mut(index).and_then(Option::take);
        let kinds = vendors.kinds();
        if kinds.contains(&provider.kind.as_str()) {
            let mut check = VendorCheck::new(at, section, lookup, &mut errors);
            vendors.check(provider, &mut check);
            check.finish(provider.kind.as_str());
        } else {
            errors.push(
                format!("{at}.kind"),
                format!("unknown kind '{}'; this build knows {}", provider.kind, kinds.join(", ")),
            );
        }
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
fn validate_events_queue(events: &crate::EventsQueueConfig, errors: &mut FieldErrors) {
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
    errors: &mut FieldErrors,
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
    for (sender, rate) in &provider.sender_rates {
        if sender.is_empty() {
            errors.push(format!("{at}.sender_rates"), "sender ids must be non-empty");
        } else if *rate == 0 || *rate > provider.rate_per_second {
            errors.push(
                format!("{at}.sender_rates.{sender}"),
                format!(
                    "must be between 1 and the provider's rate_per_second ({}): a sender cannot send faster than its account",
                    provider.rate_per_second
                ),
            );
        }
    }
    let shares = provider.lane_min_share;
    for (lane, share) in [("normal", shares.normal), ("bulk", shares.bulk)] {
        if !(0.0..=0.5).contains(&share) {
            errors.push(format!("{at}.lane_min_share.{lane}"), "must be between 0 and 0.5 (a fraction of the sends)");
        }
    }
    if shares.normal + shares.bulk > 0.5 {
        errors.push(
            format!("{at}.lane_min_share"),
            "the lower lanes' shares add up to more than 0.5: high jobs would wait behind them",
        );
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
    if provider.channel() != Channel::Rcs && provider.capability_check {
        errors.push(format!("{at}.capability_check"), "only RCS providers check capability");
    }
    if provider.channel() != Channel::Rcs && provider.fallback_mode == FallbackMode::Provider {
        errors.push(format!("{at}.fallback_mode"), "only RCS providers have an SMS fallback");
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

/// The secret in the environment variable `name`; an empty value counts as unset.
pub(crate) fn resolve(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<Secret> {
    lookup(name).filter(|v| !v.is_empty()).map(Secret::new)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

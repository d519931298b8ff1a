//! `sendfleet`, the operator's command line.
//!
//! - `dead-letters list|show|replay` and `rejected list|show|replay`: read a queue
//!   without taking anything out of it (messages are fetched unacknowledged and handed
//!   back when the command ends), filtered by provider, reason code and age; `replay`
//!   republishes each chosen message **with publisher confirms** and acks the original
//!   only once the copy is confirmed, so a cancelled or killed replay loses nothing.
//! - `queues`: depths and consumers per provider, retry tiers, dead letters.
//! - `status <id>`: a message's status record.
//! - `callback-urls`, `check-config`.
//!
//! Exit codes ([`Exit`]): 0 done, 1 partial or failed, 64 usage or config error.
//! `--json` prints every listing and summary as JSON on standard output.

mod entry;
mod output;
mod queues;
mod replay;
mod scan;

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use sendfleet_config::{Config, ConfigError, Loaded};

pub use entry::{Entry, Filters, Source};
pub use replay::ReplaySummary;

/// The operator's command line for a sendfleet fleet.
#[derive(Parser, Debug)]
#[command(name = "sendfleet", version, about)]
pub struct Cli {
    /// Config file (TOML), the one the services run with. Environment overrides:
    /// SENDFLEET_<SECTION>__<KEY>.
    #[arg(long, env = "SENDFLEET_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Print listings and results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Jobs in `<prefix>.dead-letter`: out of retries, too old, undecodable.
    #[command(subcommand)]
    DeadLetters(QueueCommand),
    /// Requests in `<prefix>.requests.rejected`, refused by the dispatcher.
    #[command(subcommand)]
    Rejected(QueueCommand),
    /// Per provider: jobs ready (and unacked, with --management-url), consumers; retry
    /// tiers; dead letters and rejected requests.
    Queues(QueuesArgs),
    /// A message's status record (the same JSON as GET /v1/messages/{id}).
    Status {
        /// Our message id.
        message_id: String,
    },
    /// Each provider's callback URLs for the vendor portals (they embed secrets).
    CallbackUrls,
    /// Validate the config and say what it holds (exit 64 naming each bad field).
    CheckConfig,
}

/// `list`, `show` and `replay` of a queue.
#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// List the messages (nothing is taken out of the queue).
    List {
        /// Which messages.
        #[command(flatten)]
        filters: FilterArgs,
        /// At most this many (the oldest first, in queue order).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One message in full: headers, reason, the job or request as JSON.
    Show {
        /// The id `list` shows (the message id; `r-…` for messages without one).
        id: String,
    },
    /// Publish the messages again (confirmed), then remove them. Dead letters go back to
    /// `<prefix>.jobs` under their message id with attempts and age reset; rejected
    /// requests go back to `<prefix>.requests` as they were received.
    Replay {
        /// Which messages.
        #[command(flatten)]
        filters: FilterArgs,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
        /// Only say what would be replayed; nothing is published or removed.
        #[arg(long)]
        dry_run: bool,
        /// At most this many messages per second (default: as fast as confirms come).
        #[arg(long)]
        rate: Option<u32>,
    },
}

/// Filters shared by `list` and `replay`.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only this provider's messages (repeatable).
    #[arg(long = "provider")]
    pub providers: Vec<String>,
    /// Only this reason code, e.g. retries_exhausted, max_age, malformed,
    /// unknown_provider; `broker:<reason>` for messages RabbitMQ dead-lettered (repeatable).
    #[arg(long = "reason")]
    pub reasons: Vec<String>,
    /// Only messages dead-lettered / rejected longer ago than this (30s, 15m, 2h, 7d).
    #[arg(long, value_parser = parse_age)]
    pub older_than: Option<Duration>,
    /// Only messages dead-lettered / rejected more recently than this.
    #[arg(long, value_parser = parse_age)]
    pub newer_than: Option<Duration>,
}

/// `queues` options.
#[derive(Args, Debug)]
pub struct QueuesArgs {
    /// RabbitMQ management API (`http://user:password@rabbit:15672`) for unacked counts;
    /// without it, ready counts and consumers come from passive declares.
    #[arg(long, env = "SENDFLEET_MANAGEMENT_URL")]
    pub management_url: Option<String>,
}

/// How the command ended, as an exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked was done.
    Done,
    /// Part of it (or none) was done: some messages were left, a lookup found nothing,
    /// the broker or Redis failed.
    Partial,
    /// Bad arguments or a bad config.
    Usage,
}

impl Exit {
    /// The process exit status: 0, 1 or 64 (EX_USAGE).
    pub fn code(self) -> i32 {
        match self {
            Exit::Done => 0,
            Exit::Partial => 1,
            Exit::Usage => sendfleet_config::cli::EXIT_BAD_CONFIG,
        }
    }
}

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The config file is missing, unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An argument that clap could not check.
    #[error("{0}")]
    Usage(String),
    /// RabbitMQ failed.
    #[error(transparent)]
    Broker(#[from] sendfleet_broker::BrokerError),
    /// The status store failed.
    #[error(transparent)]
    Status(#[from] sendfleet_status::StatusError),
    /// The management API failed.
    #[error("management API: {0}")]
    Management(String),
    /// The broker did not answer in time.
    #[error("the broker did not answer within {0} s: {1}")]
    NoAnswer(u64, &'static str),
}

impl CliError {
    /// The exit status this error ends the command with.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Config(_) | CliError::Usage(_) => Exit::Usage,
            _ => Exit::Partial,
        }
    }
}

impl From<sendfleet_broker::lapin::Error> for CliError {
    fn from(err: sendfleet_broker::lapin::Error) -> Self {
        CliError::Broker(err.into())
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<Exit, CliError> {
    // A bad config ends every command here: exit 64, every bad field named.
    let Loaded { config, warnings } = Config::load(cli.config.as_deref(), &sendfleet_providers::VENDORS)?;
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    match cli.command {
        Command::DeadLetters(command) => queue_command(&config, Source::DeadLetters, command, cli.json).await,
        Command::Rejected(command) => queue_command(&config, Source::Rejected, command, cli.json).await,
        Command::Queues(args) => queues::run(&config, args.management_url.as_deref(), cli.json).await,
        Command::Status { message_id } => status(&config, &message_id, cli.json).await,
        Command::CallbackUrls => {
            let urls = sendfleet_callback_ingest::callback_urls(&config);
            if cli.json {
                output::json(&urls);
            } else {
                urls.iter().flat_map(|p| p.lines()).for_each(|line| println!("{line}"));
            }
            Ok(Exit::Done)
        }
        Command::CheckConfig => Ok(check_config(&config, cli.json)),
    }
}

fn check_config(config: &Config, json: bool) -> Exit {
    let summary = serde_json::json!({
        "valid": true,
        "providers": config.provider_ids(),
        "broker_prefix": config.broker.prefix,
        "redis_key_prefix": config.redis.key_prefix,
        "status_store": config.status.enabled,
    });
    if json {
        output::json(&summary);
    } else {
        println!(
            "config OK: {} provider(s) ({}), broker prefix {}, status store {}",
            config.providers.len(),
            config.provider_ids().join(", "),
            config.broker.prefix,
            if config.status.enabled { "on" } else { "off" }
        );
    }
    Exit::Done
}

async fn status(config: &Config, message_id: &str, json: bool) -> Result<Exit, CliError> {
    let store = sendfleet_status::StatusStore::connect(config)?;
    match store.get(message_id).await? {
        Some(status) => {
            if json {
                output::json(&status);
            } else {
                output::status(&status);
            }
            Ok(Exit::Done)
        }
        None => {
            eprintln!(
                "no status record for message id '{message_id}': never sent through this fleet, or expired \
                 (status.ttl_seconds = {})",
                config.status.ttl_seconds
            );
            Ok(Exit::Partial)
        }
    }
}

async fn queue_command(config: &Config, source: Source, command: QueueCommand, json: bool) -> Result<Exit, CliError> {
    match command {
        QueueCommand::List { filters, limit } => {
            let entries = scan::list(config, source, &Filters::from_args(filters), limit).await?;
            if json {
                output::json(&entries);
            } else {
                output::entries(source, &entries);
            }
            Ok(Exit::Done)
        }
        QueueCommand::Show { id } => {
            let filters = Filters { id: Some(id.clone()), ..Filters::default() };
            match scan::list(config, source, &filters, 1).await?.into_iter().next() {
                Some(entry) => {
                    output::show(&entry);
                    Ok(Exit::Done)
                }
                None => {
                    eprintln!("no message '{id}' in {}", source.queue(config));
                    Ok(Exit::Partial)
                }
            }
        }
        QueueCommand::Replay { filters, limit, dry_run, rate } => {
            if rate == Some(0) {
                return Err(CliError::Usage("--rate must be at least 1".into()));
            }
            let options = replay::Options { limit, dry_run, rate, progress: !json };
            let summary = replay::run(config, source, &Filters::from_args(filters), options).await?;
            output::replay(source, &summary, json);
            Ok(if summary.complete() { Exit::Done } else { Exit::Partial })
        }
    }
}

/// `30s`, `15m`, `2h`, `7d` (or a bare number of seconds).
fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let value: u64 = number.parse().map_err(|_| format!("'{text}' is not an age like 30s, 15m, 2h or 7d"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("'{text}': the unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(value.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed_and_ages_parse() {
        Cli::command().debug_assert();
        assert_eq!(parse_age("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_age("2w").unwrap_err().contains("unit"));
        assert!(parse_age("soon").is_err());
        let cli = Cli::try_parse_from([
            "sendfleet",
            "dead-letters",
            "replay",
            "--provider",
            "ib-sms",
            "--reason",
            "retries_exhausted",
            "--older-than",
            "1h",
            "--limit",
            "10",
            "--dry-run",
            "--json",
        ])
        .expect("parses");
        let Command::DeadLetters(QueueCommand::Replay { filters, limit, dry_run, .. }) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(
            (filters.providers, filters.reasons),
            (vec!["ib-sms".to_owned()], vec!["retries_exhausted".to_owned()])
        );
        assert_eq!(
            (filters.older_than, limit, dry_run, cli.json),
            (Some(Duration::from_secs(3_600)), Some(10), true, true)
        );
    }
}

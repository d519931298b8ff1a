//! dispatcher: validates send requests and routes them to provider queues.

use std::sync::Arc;

use clap::{Parser, Subcommand};
use sendfleet_config::cli::{self, ConfigArgs};
use sendfleet_dispatcher::SendTestRequest;
use tokio_util::sync::CancellationToken;

/// Consumes the requests queue, validates each request and publishes one job per
/// recipient to the provider's queue; invalid requests go to the rejected queue. Also
/// serves the HTTP API (`/v1/messages`, `/v1/messages/bulk`, `/v1/send-test`).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Sends ONE message synchronously through a provider's adapter (no queues) and
    /// prints the provider's answer as JSON. Exit status: 0 the provider (or the SMS
    /// fallback's provider) accepted it; 2 it did not (refused, failed transiently or
    /// refused the credentials: see the printed answer); 64 a usage or config error
    /// (bad flags, unknown provider, a number that is not valid) with nothing sent.
    SendTest(SendTestArgs),
}

#[derive(clap::Args, Debug)]
struct SendTestArgs {
    /// Provider id from the config.
    #[arg(long)]
    provider: String,
    /// Country calling code, e.g. 91 or +44.
    #[arg(long)]
    country_code: String,
    /// National number.
    #[arg(long)]
    number: String,
    /// RCS message text (RCS providers) or SMS text (SMS providers).
    #[arg(long)]
    text: Option<String>,
    /// SMS fallback text, sent when the RCS send is refused.
    #[arg(long)]
    sms_fallback_text: Option<String>,
    /// RCS: provider template id. SMS: India DLT content template id.
    #[arg(long)]
    template_id: Option<String>,
    /// Provider template parameter, NAME=VALUE (repeatable).
    #[arg(long = "template-parameter", value_parser = parse_pair)]
    template_parameters: Vec<(String, String)>,
    /// India DLT principal entity id.
    #[arg(long)]
    principal_entity_id: Option<String>,
    /// Sender id (default: the provider's first).
    #[arg(long)]
    sender: Option<String>,
}

fn parse_pair(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("'{value}' is not NAME=VALUE"))
}

// The fleet's allocator (sendfleet-alloc says why).
#[global_allocator]
static ALLOCATOR: sendfleet_alloc::Allocator = sendfleet_alloc::ALLOCATOR;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sendfleet_alloc::tune();
    // Fault tests only: without the failpoints feature this reads nothing.
    sendfleet_failpoints::setup();
    let args: Args = cli::parse_args();
    let loaded = args.config.load_or_exit(&sendfleet_providers::VENDORS);
    sendfleet_telemetry::init_tracing(&loaded.config.telemetry);
    loaded.log_warnings();
    let config = loaded.config;
    if let Some(Command::SendTest(test)) = args.command {
        let request = SendTestRequest {
            provider: test.provider,
            country_code: test.country_code,
            number: test.number,
            text: test.text,
            sms_fallback_text: test.sms_fallback_text,
            template_id: test.template_id,
            template_parameters: test.template_parameters.into_iter().collect(),
            principal_entity_id: test.principal_entity_id,
            sender: test.sender,
        };
        let result = match sendfleet_dispatcher::send_test(&request, &config).await {
            Ok(result) => result,
            Err(rejection) => {
                eprintln!("send-test: {rejection}");
                std::process::exit(cli::EXIT_BAD_CONFIG);
            }
        };
        println!("{}", serde_json::to_string_pretty(&result)?);
        let accepted =
            result.answer.outcome == "accepted" || result.fallback.as_ref().is_some_and(|f| f.outcome == "accepted");
        std::process::exit(if accepted { 0 } else { cli::EXIT_PROVIDER_REFUSED });
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(sendfleet_telemetry::shutdown_signal(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(&config.dispatcher.listen).await?;
    tracing::info!(listen = %config.dispatcher.listen, broker = %config.broker.url, "dispatcher starting");
    sendfleet_dispatcher::run(Arc::new(config), listener, shutdown).await?;
    tracing::info!("dispatcher stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Args::command().debug_assert();
    }

    #[test]
    fn send_test_flags_parse() {
        let args = super::Args::try_parse_from([
            "dispatcher",
            "send-test",
            "--provider",
            "ib-rcs",
            "--country-code",
            "91",
            "--number",
            "9876543210",
            "--template-id",
            "otp",
            "--template-parameter",
            "code=1234",
        ])
        .unwrap();
        let Some(super::Command::SendTest(test)) = args.command else { panic!("send-test parsed") };
        assert_eq!(test.template_parameters, [("code".to_owned(), "1234".to_owned())]);
        assert!(super::Args::try_parse_from(["dispatcher", "send-test", "--provider", "x"]).is_err());
    }
}

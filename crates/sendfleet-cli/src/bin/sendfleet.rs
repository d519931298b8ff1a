//! sendfleet: the operator's command line (dead letters, rejected requests, queues,
//! message status, callback URLs, config check).

use sendfleet_cli::Cli;

#[tokio::main]
async fn main() {
    // Usage errors exit 64 (EX_USAGE) like a bad config; --help and --version exit 0.
    let cli: Cli = sendfleet_config::cli::parse_args();
    let exit = match sendfleet_cli::run(cli).await {
        Ok(exit) => exit,
        Err(err) => {
            eprintln!("sendfleet: {err}");
            err.exit()
        }
    };
    std::process::exit(exit.code());
}

//! sendfleet: the operator's command line (dead letters, rejected requests, queues,
//! message status, callback URLs, config check).

use clap::Parser;
use sendfleet_cli::{Cli, Exit};

#[tokio::main]
async fn main() {
    // Usage errors exit 64 (EX_USAGE) like a bad config; --help and --version exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let exit = if err.use_stderr() { Exit::Usage } else { Exit::Done };
            drop(err.print());
            std::process::exit(exit.code());
        }
    };
    let exit = match sendfleet_cli::run(cli).await {
        Ok(exit) => exit,
        Err(err) => {
            eprintln!("sendfleet: {err}");
            err.exit()
        }
    };
    std::process::exit(exit.code());
}

//! The config flags every binary shares, argument parsing with the fleet's exit codes,
//! and loading that stops start-up cleanly.
//!
//! Exit codes of every binary: 0 success, 64 (`EX_USAGE`) a usage error (unknown flag,
//! missing value) or a bad config, 1 a failure while running. `dispatcher send-test`
//! adds its own (see [`EXIT_PROVIDER_REFUSED`]).

use std::path::PathBuf;

use crate::{Config, Loaded};

/// `--config` and `--check-config`, flattened into each binary's arguments. Both are
/// global: they may come before or after a subcommand
/// (`callback-ingest callback-urls --config sendfleet.toml`).
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigArgs {
    /// Config file (TOML). Environment overrides: SENDFLEET_<SECTION>__<KEY>.
    #[arg(long, env = "SENDFLEET_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Validate the config, print the result and exit (0 valid, 64 invalid).
    #[arg(long, global = true)]
    pub check_config: bool,
}

/// Exit status for a usage error or a bad config (`EX_USAGE`).
pub const EXIT_BAD_CONFIG: i32 = 64;

/// Exit status of `dispatcher send-test` when the provider did not accept the message
/// (refused, failed transiently or refused the credentials); its answer is printed.
pub const EXIT_PROVIDER_REFUSED: i32 = 2;

/// Parses the command line. A usage error prints clap's message and exits
/// [`EXIT_BAD_CONFIG`] (clap's own default, 2, would be mistaken for a provider
/// refusal); `--help` and `--version` print and exit 0.
pub fn parse_args<T: clap::Parser>() -> T {
    T::try_parse().unwrap_or_else(|err| {
        if err.use_stderr() {
            let _ = err.print();
            std::process::exit(EXIT_BAD_CONFIG);
        }
        err.exit()
    })
}

impl ConfigArgs {
    /// Loads the config. An invalid config prints every bad field and exits 64;
    /// `--check-config` prints the warnings and the verdict and exits. Returns only when
    /// the binary should go on (`vendors`: the build's, `sendfleet_providers::VENDORS`); log the warnings once logging is set up
    /// ([`Loaded::log_warnings`]).
    pub fn load_or_exit(&self, vendors: &dyn crate::VendorCatalog) -> Loaded {
        match Config::load(self.config.as_deref(), vendors) {
            Ok(loaded) if self.check_config => {
                for warning in &loaded.warnings {
                    eprintln!("warning: {warning}");
                }
                println!("config OK: {} provider(s)", loaded.config.providers.len());
                std::process::exit(0);
            }
            Ok(loaded) => loaded,
            Err(err) => {
                eprintln!("{err}");
                std::process::exit(EXIT_BAD_CONFIG);
            }
        }
    }
}

//! The config flags every binary shares, and loading that stops start-up cleanly.

use std::path::PathBuf;

use crate::Config;

/// `--config` and `--check-config`, flattened into each binary's arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigArgs {
    /// Config file (TOML). Environment overrides: SENDFLEET_<SECTION>__<KEY>.
    #[arg(long, env = "SENDFLEET_CONFIG")]
    pub config: Option<PathBuf>,
    /// Validate the config, print the result and exit (0 valid, 64 invalid).
    #[arg(long)]
    pub check_config: bool,
}

/// Exit status for a bad config (EX_USAGE).
pub const EXIT_BAD_CONFIG: i32 = 64;

impl ConfigArgs {
    /// Loads the config. An invalid config prints every bad field and exits 64;
    /// `--check-config` prints the verdict and exits. Returns only when the binary
    /// should go on.
    pub fn load_or_exit(&self) -> Config {
        match Config::load(self.config.as_deref()) {
            Ok(config) if self.check_config => {
                println!("config OK: {} provider(s)", config.providers.len());
                std::process::exit(0);
            }
            Ok(config) => config,
            Err(err) => {
                eprintln!("{err}");
                std::process::exit(EXIT_BAD_CONFIG);
            }
        }
    }
}

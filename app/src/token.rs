//! `courier token USER`: a bearer token the gateway of the same `--data` /
//! `--config` accepts (signed with `gateway.jwt_secret`, or the development
//! secret generated once into the data directory).

use std::process::ExitCode;

use crate::config::Config;
use anyhow::Context;
use courier_gateway::Secret;

/// Arguments of `token`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The user the token signs in as.
    user: String,
    /// Lifetime in seconds (default: `gateway.token_ttl_secs`, 30 days).
    #[arg(long, value_name = "SECS")]
    ttl: Option<u64>,
}

pub fn run(config: &Config, args: Args) -> anyhow::Result<ExitCode> {
    courier_gateway::validate::id("USER", &args.user)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let secret = Secret::load(config.gateway.jwt_secret.as_deref(), &config.data_dir)
        .with_context(|| {
            format!(
                "loading the token secret under {}",
                config.data_dir.display()
            )
        })?;
    println!(
        "{}",
        secret.mint(
            &args.user,
            args.ttl.unwrap_or(config.gateway.token_ttl_secs)
        )
    );
    Ok(ExitCode::SUCCESS)
}

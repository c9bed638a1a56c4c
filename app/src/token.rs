//! `courier token USER`: a bearer token the gateway of the same `--data` /
//! `--config` accepts, signed with its current key: the first of
//! `gateway.jwt_keys`, else `gateway.jwt_secret`, else the development secret
//! generated once into the data directory.

use std::process::ExitCode;

use crate::config::Config;
use anyhow::Context;
use courier_gateway::Keys;

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
    let keys = Keys::load(&config.gateway, &config.data_dir).with_context(|| {
        format!(
            "loading the token keys (gateway.jwt_keys, gateway.jwt_secret, or the development secret under {})",
            config.data_dir.display()
        )
    })?;
    let token = keys.mint(
        &args.user,
        args.ttl.unwrap_or(config.gateway.token_ttl_secs),
    )?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

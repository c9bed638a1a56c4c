//! `courier presence USER`: a user's latest presence from the presence table.

use std::process::ExitCode;

use crate::config::Config;
use courier_processors::presence::{self, PresenceStore};
use courier_sinks::presence::RocksPresenceStore;

/// Arguments of `presence`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The user.
    user: String,
    /// Print `{user_id, status, last_seen_ms}` as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let dir = config.view_dir(crate::registry::Processor::Presence.name());
    // Read-only, so it answers beside a running presence processor (`courier up`).
    let row = match RocksPresenceStore::open_read_only(&dir)? {
        Some(store) => store.get(&args.user)?,
        None => None,
    };
    if args.json {
        println!("{}", presence::answer(&args.user, row.as_ref()));
    } else {
        match &row {
            Some(r) => println!(
                "{} is {} (last seen at {} ms)",
                args.user,
                r.status.as_str(),
                r.last_seen_ms
            ),
            None => println!("{} has never been seen", args.user),
        }
    }
    Ok(ExitCode::SUCCESS)
}

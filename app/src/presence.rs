//! `courier presence USER`: a user's latest presence from the presence table.

use std::process::ExitCode;

use crate::config::Config;
use courier_processors::presence::PresenceStore;
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
    let store =
        RocksPresenceStore::open(&config.view_dir(crate::registry::Processor::Presence.name()))?;
    let row = store.get(&args.user)?;
    // A user never seen is offline (docs/DESIGN.md: "last presence says offline, or none
    // seen"), with no last-seen time.
    let (status, last_seen) = match &row {
        Some(r) => (r.status.as_str(), Some(r.last_seen_ms)),
        None => ("offline", None),
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"user_id": args.user, "status": status, "last_seen_ms": last_seen})
        );
    } else {
        match last_seen {
            Some(ms) => println!("{} is {status} (last seen at {ms} ms)", args.user),
            None => println!("{} has never been seen", args.user),
        }
    }
    Ok(ExitCode::SUCCESS)
}

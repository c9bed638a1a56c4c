//! `courier inbox USER`: a user's inbox from the configured view store (RocksDB:
//! its current generation; Cassandra: the keyspace of its current generation),
//! newest activity first.

use std::process::ExitCode;

use crate::config::Config;
use courier_processors::inbox::store;

use crate::views::open_views;

/// Arguments of `inbox`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The user.
    user: String,
    /// Print a JSON array of `{conversation_id, last_message_id,
    /// last_message_preview, last_message_deleted, last_activity_ms, unread_count}`.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let rows = match open_views(config).await? {
        Some(views) => store::inbox(&*views, &args.user).await?,
        None => Vec::new(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("{} has no conversations", args.user);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:>6} {:>16}  LAST MESSAGE",
        "CONVERSATION", "UNREAD", "LAST ACTIVITY MS"
    );
    for r in rows {
        let last = match (&r.last_message_id, r.last_message_deleted) {
            (None, _) => "-".to_string(),
            (Some(id), Some(true)) => format!("{id}: (deleted)"),
            (Some(id), _) => format!(
                "{id}: {}",
                r.last_message_preview.as_deref().unwrap_or_default()
            ),
        };
        println!(
            "{:<20} {:>6} {:>16}  {last}",
            r.conversation_id, r.unread_count, r.last_activity_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}

//! `courier migrate`: applies the view store's schema migrations that are not yet
//! applied (Cassandra: the embedded CQL migrations of sinks/migrations/, recorded
//! in the keyspace's `schema_migrations`). Safe to rerun: a second run applies
//! nothing. The embedded RocksDB store needs none (it checks its own layout).

use std::process::ExitCode;

use crate::config::Config;
use crate::config::ViewsBackend;
use courier_sinks::inbox::cassandra;

use crate::views::cassandra_settings;

/// Arguments of `migrate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(config: &Config, _args: Args) -> anyhow::Result<ExitCode> {
    match config.views.backend {
        ViewsBackend::Rocksdb => {
            println!("views.backend is rocksdb: nothing to migrate");
        }
        ViewsBackend::Cassandra => {
            let settings = cassandra_settings(config)?;
            let applied = cassandra::migrate(&settings).await?;
            for m in &applied {
                println!(
                    "applied {:04} {} to keyspace {}",
                    m.version, m.name, settings.keyspace
                );
            }
            println!(
                "keyspace {} is at schema version {} ({} migration(s) applied now)",
                settings.keyspace,
                courier_sinks::inbox::cql::MIGRATIONS
                    .last()
                    .map_or(0, |m| m.version),
                applied.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

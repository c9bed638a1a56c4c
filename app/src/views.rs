//! Opening the views a command reads: the configured inbox store's current
//! generation (RocksDB or Cassandra), and the Cassandra settings every command
//! that touches the view store derives from the config.

use crate::config::Config;
use crate::config::ViewsBackend;
use courier_processors::inbox::store::InboxStore;
use courier_sinks::inbox::{
    CassandraGenerations, CassandraInboxStore, CassandraSettings, Generations, RocksInboxStore,
};

/// The Cassandra settings of the configuration (keyspace prefixed by the namespace).
pub fn cassandra_settings(config: &Config) -> anyhow::Result<CassandraSettings> {
    Ok(config.cassandra_settings()?)
}

/// Opens the configured inbox views for reading; `None` when there are none yet
/// (RocksDB: the processor never ran). Works beside a running processor.
pub async fn open_views(config: &Config) -> anyhow::Result<Option<Box<dyn InboxStore>>> {
    Ok(match config.views.backend {
        ViewsBackend::Rocksdb => {
            open_rocksdb_views(config)?.map(|s| Box::new(s) as Box<dyn InboxStore>)
        }
        ViewsBackend::Cassandra => Some(Box::new(open_cassandra_views(config).await?)),
    })
}

/// Opens the current generation of the Cassandra inbox views.
async fn open_cassandra_views(config: &Config) -> anyhow::Result<CassandraInboxStore> {
    let generations = CassandraGenerations::connect(&cassandra_settings(config)?).await?;
    // As on RocksDB: a rebuild may switch and drop the generation we were about to
    // open; then the pointer has moved, and we follow it.
    let mut attempts = 0;
    loop {
        let g = generations.current().await?;
        let opened = CassandraInboxStore::open(&generations.settings(g)?).await;
        attempts += 1;
        if opened.is_err() && attempts < 3 && generations.current().await? != g {
            continue;
        }
        return Ok(opened?);
    }
}

/// Opens the current generation of the RocksDB inbox views read-only; `None` when
/// the processor never ran.
fn open_rocksdb_views(config: &Config) -> anyhow::Result<Option<RocksInboxStore>> {
    let generations = Generations::new(config.view_dir(crate::registry::Processor::Inbox.name()));
    // A rebuild may switch generations and delete the old one between reading
    // `CURRENT` and opening it: then `CURRENT` has moved, and we follow it.
    let mut attempts = 0;
    loop {
        let g = generations.current()?;
        let opened = RocksInboxStore::open_read_only(&generations.dir(g));
        attempts += 1;
        if attempts < 3 && generations.current()? != g {
            continue;
        }
        return Ok(opened?);
    }
}

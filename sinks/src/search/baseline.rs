//! The ceiling of the search view: raw tantivy indexing of the very documents the
//! search processor indexes — the same schema, one index per partition, the same
//! writer memory and threads — added and committed once per shard, with no fold,
//! states, deletes or commit payloads.
//!
//! Shared by the search benchmark (`sinks/benches/search.rs`) and `courier bench
//! --baselines`.

use std::path::Path;
use std::time::{Duration, Instant};

use courier_processors::search::SearchDoc;
use courier_processors::store::StoreError;
use tantivy::{Index, IndexWriter};

use super::{Documents, Fields, STORE, WRITER_MEMORY, shard_dir};

fn fatal(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::fatal(STORE, format!("raw baseline: {what}: {e}"))
}

/// Indexes `docs` (each with the partition of its shard, below `partitions`)
/// into fresh shards under `dir`: the time from the first add to the last
/// commit. Creating the shards is not timed.
pub fn index(
    dir: &Path,
    docs: &[(u32, SearchDoc)],
    partitions: u32,
) -> Result<Duration, StoreError> {
    let fields = Fields::new();
    let mut writers: Vec<IndexWriter> = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let d = shard_dir(dir, p);
        std::fs::create_dir_all(&d).map_err(|e| fatal(&format!("creating {}", d.display()), e))?;
        let index = Index::create_in_dir(&d, fields.schema.clone())
            .map_err(|e| fatal(&format!("creating an index in {}", d.display()), e))?;
        writers.push(
            index
                .writer_with_num_threads(1, WRITER_MEMORY)
                .map_err(|e| fatal("opening a writer", e))?,
        );
    }
    let started = Instant::now();
    for (p, d) in docs {
        let w = writers.get_mut(*p as usize).ok_or_else(|| {
            fatal(
                "adding a document",
                format!("partition {p} of {partitions} shards"),
            )
        })?;
        w.add_document(fields.message_doc(d))
            .map_err(|e| fatal("adding a document", e))?;
    }
    for w in &mut writers {
        w.commit().map_err(|e| fatal("committing", e))?;
    }
    Ok(started.elapsed())
}

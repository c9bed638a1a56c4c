//! Snapshots of search shards in a store the instances share (a directory; in
//! production a volume every instance mounts), so the next owner of a partition
//! restores its shard and replays only the log after the snapshot, instead of
//! re-indexing the partition from its start (docs/decisions/
//! 2026-12-07-search-hand-over.md).
//!
//! Layout under a generation's store root: `pNN/<next offset, 20 digits>-<id>/`
//! holds one commit of the shard: its segment files, its `meta.json` (whose
//! payload names the offset) and a `.managed.json` naming the segment files, so
//! that tantivy's garbage collector deletes them on the restoring side once they
//! are merged away. A snapshot is written as `pNN/.tmp-…` and renamed into place:
//! a process killed mid-copy leaves a temp directory, never half a snapshot.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tantivy::Index;

use super::documents::Payload;

/// Snapshots kept per partition: the newest, and the one before it, which a
/// restore may still be reading when a newer one is renamed in (a restore that
/// loses its snapshot to pruning starts over from the newest).
const KEEP: usize = 2;

/// A temp directory this old was left by a writer that died mid-copy (a live
/// one renames its copy within seconds).
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// Attempts at capturing a commit while merges keep replacing it.
const CAPTURE_ATTEMPTS: usize = 10;

/// tantivy's list of the files it created, which its garbage collector deletes
/// once no commit uses them.
const MANAGED: &str = ".managed.json";
const META: &str = "meta.json";

/// Where the snapshots of one generation's shards are, and how often a shard
/// is snapshotted.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    root: PathBuf,
    interval: Duration,
}

/// One snapshot in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Its directory.
    pub dir: PathBuf,
    /// The offset its commit says to resume from.
    pub next_offset: u64,
}

/// A shard's last commit, captured: its `meta.json` and every file it uses,
/// held open, so merges deleting them while they are copied cannot tear the
/// snapshot (the open files stay readable; the names are immutable).
pub(crate) struct Capture {
    pub(crate) partition: u32,
    pub(crate) next_offset: u64,
    meta: Vec<u8>,
    files: Vec<(String, File)>,
}

/// The snapshot directory of partition `p`'s shard under a store root.
fn partition_dir(root: &Path, partition: u32) -> PathBuf {
    root.join(format!("p{partition:02}"))
}

/// What a failed step was, and on which path.
fn at(what: &str, path: &Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

/// Captures the last commit of the shard in `dir` (opened as `index`); `None`
/// for a shard never committed.
pub(crate) fn capture(
    dir: &Path,
    index: &Index,
    partition: u32,
) -> Result<Option<Capture>, String> {
    let meta_path = dir.join(META);
    for _ in 0..CAPTURE_ATTEMPTS {
        let meta = fs::read(&meta_path).map_err(|e| at("reading", &meta_path, e))?;
        let metas = index
            .load_metas()
            .map_err(|e| at("reading the commit of", dir, e))?;
        let Some(payload) = metas.payload.as_deref() else {
            return Ok(None);
        };
        let next_offset = Payload::parse(payload, partition)
            .map_err(|e| e.to_string())?
            .next_offset;
        let mut files = Vec::new();
        let mut names: Vec<PathBuf> = metas.list_segment_files().into_iter().collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            match File::open(&path) {
                Ok(f) => files.push((name.to_string_lossy().into_owned(), f)),
                // A candidate the commit does not have (a segment without
                // deletes), or one a merge deleted since: then meta.json changed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(at("opening", &path, e)),
            }
        }
        // A file is deleted only after a meta.json without it was written: the
        // same meta.json after opening means every file it needs is held.
        if fs::read(&meta_path).map_err(|e| at("reading", &meta_path, e))? == meta {
            return Ok(Some(Capture {
                partition,
                next_offset,
                meta,
                files,
            }));
        }
    }
    Err(format!(
        "{}: the commit changed {CAPTURE_ATTEMPTS} times while being captured (merges)",
        dir.display()
    ))
}

/// A name no other writer of the store picks: the process id and a counter,
/// with the time for writers of other hosts.
fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{nanos:x}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes `bytes` to `path` through a temp file renamed over it, synced.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp-{}", unique()));
    let mut f = File::create(&tmp).map_err(|e| at("creating", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| at("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| at("renaming into place", path, e))
}

/// Copies `from` (open) to a new file `to`, synced.
fn copy_file(from: &mut File, to: &Path) -> Result<u64, String> {
    let mut out = File::create(to).map_err(|e| at("creating", to, e))?;
    let n = io::copy(from, &mut out).map_err(|e| at("copying into", to, e))?;
    out.sync_all().map_err(|e| at("syncing", to, e))?;
    Ok(n)
}

/// Makes a directory's entries durable (a rename is in its directory).
fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| at("syncing", dir, e))
}

impl SnapshotStore {
    /// The store at `root` (one generation's), snapshotting each shard at most
    /// once per `interval`.
    pub fn new(root: impl Into<PathBuf>, interval: Duration) -> Self {
        SnapshotStore {
            root: root.into(),
            interval,
        }
    }

    /// Where the snapshots are.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How often a shard with new commits is snapshotted.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Every complete snapshot of `partition`, newest (highest offset) first.
    pub fn list(&self, partition: u32) -> Result<Vec<Snapshot>, String> {
        let dir = partition_dir(&self.root, partition);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(at("listing", &dir, e)),
        };
        let mut out: Vec<(u64, String, PathBuf)> = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `.tmp-…` (a copy under way or abandoned) is never a snapshot.
            let Some(offset) = name
                .split_once('-')
                .filter(|_| !name.starts_with('.'))
                .and_then(|(o, _)| o.parse::<u64>().ok())
            else {
                continue;
            };
            out.push((offset, name, entry.path()));
        }
        out.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
        Ok(out
            .into_iter()
            .map(|(next_offset, _, dir)| Snapshot { dir, next_offset })
            .collect())
    }

    /// The newest complete snapshot of `partition`.
    pub fn newest(&self, partition: u32) -> Result<Option<Snapshot>, String> {
        Ok(self.list(partition)?.into_iter().next())
    }

    /// Writes a captured commit as a snapshot (unless one as new is there),
    /// then prunes older ones. Files the previous snapshot already holds are
    /// hard-linked from it rather than copied (segment files never change and
    /// their names are unique), so a snapshot costs about the segments written
    /// since the last one where the store's file system links.
    pub(crate) fn write(&self, capture: Capture) -> Result<Snapshot, String> {
        let Capture {
            partition,
            next_offset,
            meta,
            files,
        } = capture;
        let dir = partition_dir(&self.root, partition);
        fs::create_dir_all(&dir).map_err(|e| at("creating", &dir, e))?;
        let previous = self.newest(partition)?;
        if let Some(p) = previous.as_ref().filter(|p| p.next_offset >= next_offset) {
            return Ok(p.clone());
        }
        let name = format!("{next_offset:020}-{}", unique());
        let tmp = dir.join(format!(".tmp-{name}"));
        fs::create_dir(&tmp).map_err(|e| at("creating", &tmp, e))?;
        // A copy that fails is removed at once (a full or failing store would
        // otherwise fill up with them); one cut short by a kill is pruned later.
        if let Err(e) = Self::fill(&tmp, files, &meta, previous.as_ref()) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let done = dir.join(&name);
        if let Err(e) = fs::rename(&tmp, &done) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(at("renaming into place", &done, e));
        }
        sync_dir(&dir)?;
        self.prune(partition);
        Ok(Snapshot {
            dir: done,
            next_offset,
        })
    }

    /// Writes a snapshot's files into the temp directory `tmp`, hard-linking
    /// those `previous` holds.
    fn fill(
        tmp: &Path,
        files: Vec<(String, File)>,
        meta: &[u8],
        previous: Option<&Snapshot>,
    ) -> Result<(), String> {
        let mut names = BTreeSet::new();
        for (file, mut from) in files {
            let to = tmp.join(&file);
            let linked = previous.is_some_and(|p| {
                let old = p.dir.join(&file);
                let same = fs::metadata(&old)
                    .and_then(|o| Ok(o.len() == from.metadata()?.len()))
                    .unwrap_or(false);
                same && fs::hard_link(&old, &to).is_ok()
            });
            if !linked {
                copy_file(&mut from, &to)?;
            }
            names.insert(file);
        }
        let mut managed = serde_json::to_vec(&names).expect("names serialize");
        managed.push(b'\n');
        write_atomically(&tmp.join(MANAGED), &managed)?;
        write_atomically(&tmp.join(META), meta)?;
        sync_dir(tmp)
    }

    /// Removes all but the newest [`KEEP`] snapshots of `partition`, and temp
    /// directories of writers that died. Failures only cost space: logged.
    fn prune(&self, partition: u32) {
        let old = match self.list(partition) {
            Ok(all) => all.into_iter().skip(KEEP),
            Err(e) => {
                tracing::warn!(partition, error = %e, "cannot list search snapshots to prune them");
                return;
            }
        };
        for s in old {
            if let Err(e) = fs::remove_dir_all(&s.dir)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(partition, dir = %s.dir.display(), error = %e, "cannot remove an old search snapshot");
            }
        }
        let dir = partition_dir(&self.root, partition);
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let stale = entry.file_name().to_string_lossy().starts_with(".tmp-")
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_TEMP));
            if stale {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// What a restore copied.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Restored {
    pub(crate) files: usize,
    pub(crate) bytes: u64,
}

/// Makes the shard directory `shard` (absent, empty, or holding an older
/// commit, with no writer open) hold the commit of `snapshot`: its files are
/// copied in beside whatever is there, then its `meta.json` replaces the
/// shard's in one rename, the moment the shard switches commits; the files of
/// the commit it replaces stay in tantivy's managed list, so the writer's
/// garbage collector deletes them. An error leaves the shard's own commit.
pub(crate) fn restore(snapshot: &Snapshot, shard: &Path) -> Result<Restored, String> {
    fs::create_dir_all(shard).map_err(|e| at("creating", shard, e))?;
    let theirs_path = snapshot.dir.join(MANAGED);
    let theirs: Vec<String> = serde_json::from_slice(
        &fs::read(&theirs_path).map_err(|e| at("reading", &theirs_path, e))?,
    )
    .map_err(|e| at("parsing", &theirs_path, e))?;
    let ours_path = shard.join(MANAGED);
    let mut managed: BTreeSet<String> = match fs::read(&ours_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| at("parsing", &ours_path, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => return Err(at("reading", &ours_path, e)),
    };
    for file in &theirs {
        // File names are paths relative to the shard, never elsewhere.
        if file.contains('/') || file.starts_with('.') {
            return Err(format!("{}: odd file name {file:?}", theirs_path.display()));
        }
    }
    // Listed before they are copied: a restore that fails midway leaves files
    // no commit uses, which the writer's garbage collector then deletes.
    managed.extend(theirs.iter().cloned());
    let mut list = serde_json::to_vec(&managed).expect("names serialize");
    list.push(b'\n');
    write_atomically(&ours_path, &list)?;
    let mut restored = Restored::default();
    for file in theirs {
        let from_path = snapshot.dir.join(&file);
        let to = shard.join(&file);
        let mut from = File::open(&from_path).map_err(|e| at("opening", &from_path, e))?;
        let len = from
            .metadata()
            .map_err(|e| at("reading", &from_path, e))?
            .len();
        // The same segment file, from an earlier ownership of this partition.
        if fs::metadata(&to).is_ok_and(|m| m.len() == len) {
            continue;
        }
        restored.bytes += copy_file(&mut from, &to)?;
        restored.files += 1;
    }
    let meta_path = snapshot.dir.join(META);
    let meta = fs::read(&meta_path).map_err(|e| at("reading", &meta_path, e))?;
    sync_dir(shard)?;
    write_atomically(&shard.join(META), &meta)?;
    sync_dir(shard)?;
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::documents::LAYOUT;
    use tantivy::schema::{STORED, Schema, TEXT};
    use tantivy::{IndexWriter, TantivyDocument, doc};

    /// Commits keep coming while merges (on tantivy's threads) replace and
    /// delete segment files: every snapshot, captured between two commits and
    /// then restored into a shard of its own, opens with exactly the documents
    /// of the commit it captured, and the store keeps the newest two.
    #[test]
    fn snapshots_taken_while_merges_delete_files_restore_their_exact_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut schema = Schema::builder();
        let text = schema.add_text_field("text", TEXT | STORED);
        let shard = dir.path().join("p00");
        std::fs::create_dir(&shard).unwrap();
        let index = Index::create_in_dir(&shard, schema.build()).unwrap();
        let mut writer: IndexWriter<TantivyDocument> =
            index.writer_with_num_threads(1, 15_000_000).unwrap();
        let store = SnapshotStore::new(dir.path().join("store"), Duration::ZERO);
        let mut merged_away = 0;
        for commit in 1..=40u64 {
            for i in 0..50 {
                writer
                    .add_document(doc!(text => format!("commit {commit} doc {i}")))
                    .unwrap();
            }
            let payload = serde_json::to_string(&Payload {
                layout: LAYOUT,
                partition: 0,
                next_offset: commit,
            })
            .unwrap();
            let mut prepared = writer.prepare_commit().unwrap();
            prepared.set_payload(&payload);
            prepared.commit().unwrap();
            let capture = capture(&shard, &index, 0).unwrap().expect("a commit");
            assert_eq!(capture.next_offset, commit);
            let segments = index.searchable_segment_metas().unwrap().len();
            if segments < commit as usize {
                merged_away += 1;
            }
            let snapshot = store.write(capture).unwrap();
            assert_eq!(snapshot.next_offset, commit);

            let target = dir.path().join(format!("restored-{commit}"));
            restore(&snapshot, &target).unwrap();
            let restored = Index::open_in_dir(&target).unwrap();
            let searcher = restored.reader().unwrap().searcher();
            assert_eq!(searcher.num_docs(), commit * 50, "commit {commit}");
            let payload = restored.load_metas().unwrap().payload.unwrap();
            assert_eq!(Payload::parse(&payload, 0).unwrap().next_offset, commit);
        }
        assert!(merged_away > 0, "merges ran meanwhile");
        let kept: Vec<u64> = store
            .list(0)
            .unwrap()
            .iter()
            .map(|s| s.next_offset)
            .collect();
        assert_eq!(kept, vec![40, 39]);
    }
}

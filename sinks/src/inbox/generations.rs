//! Generations of a view on local disk: `ROOT/gN/` holds one complete store, and
//! `ROOT/CURRENT` names the one reads and the live processor use. A rebuild fills
//! a new generation beside the current one, then switches `CURRENT` atomically
//! (written to a temporary name, synced, renamed over) and drops the old one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use courier_processors::store::StoreError;

const STORE: &str = "inbox/generations";
const POINTER: &str = "CURRENT";

/// The generations of one view under `root`.
#[derive(Debug, Clone)]
pub struct Generations {
    root: PathBuf,
}

impl Generations {
    /// The generations under `root` (nothing is created until needed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Generations { root: root.into() }
    }

    /// The generation `CURRENT` names; 0 before any switch, so a view that was
    /// never rebuilt lives in `g0`.
    pub fn current(&self) -> Result<u64, StoreError> {
        let path = self.root.join(POINTER);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(&path, "reading", e)),
        };
        parse(text.trim()).ok_or_else(|| {
            StoreError::fatal(
                STORE,
                format!(
                    "{} holds {:?}, not a generation like `g3`",
                    path.display(),
                    text.trim()
                ),
            )
        })
    }

    /// The directory of the current generation (what readers open).
    pub fn current_dir(&self) -> Result<PathBuf, StoreError> {
        Ok(self.dir(self.current()?))
    }

    /// The directory of generation `g`.
    pub fn dir(&self, g: u64) -> PathBuf {
        self.root.join(format!("g{g}"))
    }

    /// Generations with a directory on disk, ascending.
    pub fn on_disk(&self) -> Result<Vec<u64>, StoreError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.root, "listing", e)),
        };
        let mut gs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io(&self.root, "listing", e))?;
            if entry.path().is_dir()
                && let Some(g) = entry.file_name().to_str().and_then(parse)
            {
                gs.push(g);
            }
        }
        gs.sort_unstable();
        Ok(gs)
    }

    /// A generation above the current one and every directory on disk.
    pub fn next(&self) -> Result<u64, StoreError> {
        let highest = self.on_disk()?.into_iter().max().unwrap_or(0);
        Ok(highest.max(self.current()?) + 1)
    }

    /// Makes `g` the current generation, atomically: a reader sees the old name or
    /// the new one, and after a crash `CURRENT` is whole.
    pub fn switch_to(&self, g: u64) -> Result<(), StoreError> {
        let tmp = self.root.join(format!("{POINTER}.tmp"));
        let path = self.root.join(POINTER);
        let mut f = fs::File::create(&tmp).map_err(|e| io(&tmp, "creating", e))?;
        writeln!(f, "g{g}").map_err(|e| io(&tmp, "writing", e))?;
        f.sync_all().map_err(|e| io(&tmp, "syncing", e))?;
        fs::rename(&tmp, &path).map_err(|e| io(&path, "replacing", e))?;
        // The rename itself is durable only once the directory is synced.
        #[cfg(unix)]
        fs::File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.root, "syncing", e))?;
        Ok(())
    }

    /// Deletes generation `g` from disk (nothing if it is not there).
    pub fn remove(&self, g: u64) -> Result<(), StoreError> {
        let dir = self.dir(g);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&dir, "removing", e)),
            _ => Ok(()),
        }
    }

    /// Deletes every generation but the current one (left over by a rebuild that
    /// stopped before switching, or an old one a crash kept); returns them.
    pub fn remove_stale(&self) -> Result<Vec<u64>, StoreError> {
        let current = self.current()?;
        let stale: Vec<u64> = self
            .on_disk()?
            .into_iter()
            .filter(|g| *g != current)
            .collect();
        for g in &stale {
            self.remove(*g)?;
        }
        Ok(stale)
    }
}

fn parse(name: &str) -> Option<u64> {
    name.strip_prefix('g')?.parse().ok()
}

fn io(path: &Path, what: &str, e: std::io::Error) -> StoreError {
    StoreError::fatal(STORE, format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_names_the_new_generation_and_stale_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let g = Generations::new(dir.path().join("inbox"));
        assert_eq!(g.current().unwrap(), 0);
        assert_eq!(g.next().unwrap(), 1);
        fs::create_dir_all(g.dir(0)).unwrap();
        fs::create_dir_all(g.dir(1)).unwrap();
        assert_eq!(g.next().unwrap(), 2, "a leftover directory is not reused");
        g.switch_to(1).unwrap();
        assert_eq!(g.current().unwrap(), 1);
        assert_eq!(g.remove_stale().unwrap(), vec![0]);
        assert_eq!(g.on_disk().unwrap(), vec![1]);
        assert!(!dir.path().join("inbox/CURRENT.tmp").exists());
        fs::write(dir.path().join("inbox/CURRENT"), "junk").unwrap();
        assert!(g.current().is_err());
    }
}

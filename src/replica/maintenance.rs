//! Maintenance: compaction, rebuilding the index, and values tools keep in the file.

use std::path::Path;

use super::Replica;
use crate::error::Result;
use crate::schema::DocKind;
use crate::store::{BackupReport, CheckReport, RepairReport};

impl Replica {
    /// Folds every document's loose changes into a snapshot. History stays readable: snapshots
    /// keep every change, and the log keeps every change's metadata.
    pub fn compact(&self) -> Result<usize> {
        self.log.write(|tx| tx.compact(self.docs.all().map(|(id, _)| id)))
    }

    /// Rebuilds the derived index of this graph from its documents. The index is normally kept
    /// in step by every write; this repairs it after a bug or a manual edit of the file.
    pub fn reindex(&self) -> Result<()> {
        let shards = self.docs.all().filter(|(_, kind)| *kind != DocKind::Root).map(|(id, _)| id);
        self.log.write(|tx| tx.reindex(&self.graph, shards))
    }

    /// Writes a consistent copy of this replica's file to `dest` while writers (in this and
    /// other processes) carry on: every write that returned before the call began is in it.
    /// The copy is one self-contained file (no `-wal` beside it) that opens as a replica.
    /// An existing `dest` is refused unless `overwrite`. This is the way to back up a replica:
    /// a plain copy of the `.db` file misses what is still in its `-wal` (`docs/operations.md`).
    pub fn backup(&self, dest: impl AsRef<Path>, overwrite: bool) -> Result<BackupReport> {
        crate::store::backup(self.path(), dest.as_ref(), overwrite)
    }

    /// Checks the replica file at `path` without opening it as a replica (it may be damaged):
    /// SQLite's integrity check, FTS5's, every logged change decoded and matched against its
    /// hash, and every derived table against what the log holds. Damage is reported in the
    /// [`CheckReport`]; an `Err` means the check could not run. Writers may carry on meanwhile.
    pub fn check_file(path: impl AsRef<Path>) -> Result<CheckReport> {
        crate::store::check(path.as_ref())
    }

    /// Repairs the replica file at `path`, which no other process may have open: rebuilds
    /// everything derived from the change log, moves log rows that cannot be read (and what
    /// builds on them) to a `set_aside` table, bytes kept, and when SQLite finds the file
    /// itself damaged, moves what its log holds into a new file and keeps the damaged one
    /// beside it (`<file>.damaged-<unix time>`). The report says what it did and what `check`
    /// finds after.
    pub fn repair_file(path: impl AsRef<Path>) -> Result<RepairReport> {
        crate::store::repair(path.as_ref())
    }

    /// A value a tool saved under `key` in this file (an import's progress, say), if any.
    pub fn checkpoint(&self, key: &str) -> Result<Option<String>> {
        self.log.read(|tx| tx.checkpoint(key))
    }

    /// Saves (or with `None`, clears) a tool's value under `key` in this file.
    pub fn set_checkpoint(&self, key: &str, value: Option<&str>) -> Result<()> {
        self.log.write(|tx| tx.set_checkpoint(key, value))
    }
}

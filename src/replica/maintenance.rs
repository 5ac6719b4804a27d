//! Maintenance: compaction, rebuilding the index, and values tools keep in the file.

use super::Replica;
use crate::error::Result;
use crate::schema::DocKind;

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

    /// A value a tool saved under `key` in this file (an import's progress, say), if any.
    pub fn checkpoint(&self, key: &str) -> Result<Option<String>> {
        self.log.read(|tx| tx.checkpoint(key))
    }

    /// Saves (or with `None`, clears) a tool's value under `key` in this file.
    pub fn set_checkpoint(&self, key: &str, value: Option<&str>) -> Result<()> {
        self.log.write(|tx| tx.set_checkpoint(key, value))
    }
}

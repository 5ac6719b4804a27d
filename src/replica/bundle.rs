//! Offline exchange: heads and bundles of changes, for merging replicas through files.

use automerge::{Change, ChangeHash, ReadDoc};

use super::Replica;
use crate::error::{Error, Result};
use crate::exchange::{Bundle, Heads};
use crate::ids::{DocId, LogPosition, Version};

/// What [`Replica::import`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Changes in the bundle.
    pub offered: usize,
    /// Changes newly applied (the rest were already here, or wait for changes not yet seen).
    pub applied: usize,
    /// The version after the import.
    pub version: Option<Version>,
}

impl Replica {
    /// This replica's heads for every document of the graph: hand them to another replica's
    /// [`Replica::export_since`] to receive exactly what this one lacks.
    pub fn heads(&self) -> Result<Heads> {
        self.log.read(|tx| {
            let seq = tx.position()?;
            let mut heads = Heads::default();
            for (id, _) in self.docs.all() {
                heads.docs.insert(id, tx.heads_at(&id, seq)?);
            }
            Ok(heads)
        })
    }

    /// Every change this replica has that a replica with `theirs` heads lacks, as a bundle for
    /// [`Replica::import`].
    pub fn export_since(&self, theirs: &Heads) -> Result<Vec<u8>> {
        self.log.read(|tx| {
            let mut bundle = Bundle::default();
            for (id, _) in self.docs.all() {
                let Some(cached) = tx.doc(id)? else { continue };
                let doc = &cached.doc;
                let known: Vec<ChangeHash> = theirs
                    .docs
                    .get(&id)
                    .map(|hs| hs.iter().filter(|h| doc.get_change_by_hash(h).is_some()).copied().collect())
                    .unwrap_or_default();
                let changes = doc.get_changes(&known);
                if !changes.is_empty() {
                    bundle.docs.push((id, changes));
                }
            }
            Ok(bundle.encode())
        })
    }

    /// Merges a bundle from [`Replica::export_since`]. The bundle is checked whole before anything
    /// is written: a corrupt change, a document of another graph, or a change that breaks the
    /// schema ([`Error::Refused`]) refuses it all.
    pub fn import(&self, bundle: &[u8]) -> Result<ImportReport> {
        let bundle = Bundle::decode(bundle)?;
        for (id, changes) in &bundle.docs {
            self.admit(id, changes)?;
        }
        self.apply_to_docs(bundle.docs)
    }

    /// Applies changes to documents and logs what became applicable, in one transaction.
    fn apply_to_docs(&self, per_doc: Vec<(DocId, Vec<Change>)>) -> Result<ImportReport> {
        let changed: Vec<DocId> = per_doc.iter().map(|(id, _)| *id).collect();
        let mut report = ImportReport::default();
        let newest = self.log.write(|tx| {
            let mut newest = LogPosition::default();
            for (id, changes) in per_doc {
                let cached = tx.existing(id)?;
                let before = cached.doc.get_heads();
                report.offered += changes.len();
                cached.doc.apply_changes(changes).map_err(|e| Error::CorruptChange(e.to_string()))?;
                let applied = cached.doc.get_changes(&before);
                report.applied += applied.len();
                if let Some(seq) = tx.log(&self.graph, id, &applied, false)? {
                    newest = seq;
                }
            }
            Ok(newest)
        })?;
        if newest > LogPosition::default() {
            self.link.notify(&changed);
        }
        report.version = Some(self.version(newest));
        Ok(report)
    }
}

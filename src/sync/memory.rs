//! Documents in memory, as a [`SyncDocs`]: for tests of the sync state machines without SQLite,
//! and for anything that syncs documents it does not need to keep.

use std::collections::HashMap;

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash, ReadDoc};

use super::SyncDocs;
use crate::error::{Error, Result};
use crate::ids::DocId;

/// Documents held in memory. A document a peer sends is created on first receipt, as a relay
/// does; nothing is persisted.
#[derive(Debug, Default)]
pub struct MemoryDocs {
    docs: HashMap<DocId, Automerge>,
}

impl MemoryDocs {
    /// No documents.
    pub fn new() -> Self {
        MemoryDocs::default()
    }

    /// Adds (or replaces) a document.
    pub fn insert(&mut self, id: DocId, doc: Automerge) {
        self.docs.insert(id, doc);
    }

    /// A document, if held.
    pub fn get(&self, id: &DocId) -> Option<&Automerge> {
        self.docs.get(id)
    }

    /// A document to edit, if held.
    pub fn get_mut(&mut self, id: &DocId) -> Option<&mut Automerge> {
        self.docs.get_mut(id)
    }

    /// A document to edit, created empty if not held (as a peer's first changes create it).
    pub fn get_or_create(&mut self, id: &DocId) -> &mut Automerge {
        self.docs.entry(*id).or_default()
    }

    /// Forgets a document.
    pub fn remove(&mut self, id: &DocId) -> Option<Automerge> {
        self.docs.remove(id)
    }
}

impl SyncDocs for MemoryDocs {
    fn exists(&mut self, doc: &DocId) -> Result<bool> {
        Ok(self.docs.get(doc).is_some_and(|d| !d.get_heads().is_empty()))
    }

    fn generate(&mut self, doc: &DocId, state: &mut sync::State) -> Result<Option<sync::Message>> {
        Ok(match self.docs.get(doc) {
            Some(d) => {
                d.generate_sync_message(state).map(|m| super::bound(d, state, m, super::MAX_MESSAGE_CHANGE_BYTES))
            }
            // A document this side has never seen: say so with an empty document's message.
            None => Automerge::new().generate_sync_message(state),
        })
    }

    fn receive(&mut self, doc: &DocId, state: &mut sync::State, message: sync::Message) -> Result<usize> {
        let d = self.get_or_create(doc);
        let before = d.get_heads();
        d.receive_sync_message(state, message).map_err(|e| Error::CorruptChange(e.to_string()))?;
        Ok(d.get_changes(&before).len())
    }

    fn has_all(&mut self, doc: &DocId, heads: &[ChangeHash]) -> Result<bool> {
        Ok(match self.docs.get(doc) {
            Some(d) => heads.iter().all(|h| d.get_change_by_hash(h).is_some()),
            None => heads.is_empty(),
        })
    }

    fn heads(&mut self, doc: &DocId) -> Result<Vec<ChangeHash>> {
        Ok(self.docs.get(doc).map(|d| d.get_heads()).unwrap_or_default())
    }

    fn rules(&mut self, doc: &DocId) -> Result<Option<crate::integrity::DocRules>> {
        Ok(self.docs.get(doc).and_then(|d| crate::integrity::DocRules::of_document(*doc, d)))
    }
}

//! The hooks a sync driver uses, each one short transaction. Crate-private: drivers reach them
//! through [`crate::sync::ReplicaDocs`] and [`crate::sync::Driver`], never through `Replica`.

use automerge::ChangeHash;
use automerge::ReadDoc;
use automerge::sync::{self, SyncDoc};

use super::Replica;
use crate::error::{Error, Result};
use crate::ids::{DocId, LogPosition};
use crate::link::Link;

impl Replica {
    pub(crate) fn link(&self) -> &Link {
        &self.link
    }

    /// Builds the next sync message for `doc` to a peer, or `None` if there is nothing to say.
    pub(crate) fn generate_sync_message(&self, doc: DocId, state: &mut sync::State) -> Result<Option<sync::Message>> {
        self.log.read(|tx| {
            let Some(d) = tx.doc(doc)? else { return Ok(None) };
            let message = d.doc.generate_sync_message(state);
            Ok(message.map(|m| crate::sync::bound(&d.doc, state, m, crate::sync::MAX_MESSAGE_CHANGE_BYTES)))
        })
    }

    /// Applies a peer's sync message to `doc`, logging and indexing whatever it brought in one
    /// transaction. Returns how many changes became applied. Changes that do not decode, or
    /// break the schema, refuse the whole message before anything is applied.
    pub(crate) fn receive_sync_message(
        &self,
        doc: DocId,
        state: &mut sync::State,
        message: sync::Message,
    ) -> Result<usize> {
        let changes = crate::sync::decode_changes(&message, crate::sync::DEFAULT_MAX_INFLATED_BYTES)
            .map_err(|e| Error::CorruptChange(e.to_string()))?
            .changes;
        self.admit(&doc, &changes)?;
        let invalid = |e: automerge::AutomergeError| Error::CorruptChange(e.to_string());
        if message.changes.is_empty() {
            // An acknowledgement or a summary: it moves only the sync state, not the document.
            return self.log.read(|tx| {
                tx.existing(doc)?.doc.receive_sync_message(state, message).map_err(invalid)?;
                Ok(0)
            });
        }
        let applied = self.log.write(|tx| {
            let cached = tx.existing(doc)?;
            let before = cached.doc.get_heads();
            cached.doc.receive_sync_message(state, message).map_err(invalid)?;
            let applied = cached.doc.get_changes(&before);
            tx.log(&self.graph, doc, &applied, false)?;
            Ok(applied.len())
        })?;
        if applied > 0 {
            self.link.notify(&[doc]);
        }
        Ok(applied)
    }

    /// How many changes the file has logged (any process): a cheap way to notice new ones.
    pub(crate) fn log_position(&self) -> Result<LogPosition> {
        self.log.read(|tx| tx.position())
    }

    /// An id for this replica's storage, stable for the life of the file; sync peers key what
    /// they remember about this replica by it.
    pub(crate) fn storage_id(&self) -> crate::ids::StorageId {
        format!("cairn-{}", self.log.replica_id()).into()
    }

    /// The heads of one document as this replica holds them.
    pub(crate) fn doc_heads(&self, doc: DocId) -> Result<Vec<ChangeHash>> {
        self.log.read(|tx| Ok(tx.doc(doc)?.map(|d| d.doc.get_heads()).unwrap_or_default()))
    }

    /// How many of this replica's changes to `doc` a peer holding `theirs` lacks (changes it
    /// cannot know about are counted as lacking). The genesis change, identical on every replica
    /// and the only one without dependencies, is never counted: it is not anyone's write.
    pub(crate) fn missing_from(&self, doc: DocId, theirs: &[ChangeHash]) -> Result<usize> {
        self.log.read(|tx| {
            let Some(cached) = tx.doc(doc)? else { return Ok(0) };
            let d = &cached.doc;
            let known: Vec<ChangeHash> = theirs.iter().filter(|h| d.get_change_by_hash(h).is_some()).copied().collect();
            Ok(d.get_changes(&known).iter().filter(|c| !c.deps().is_empty()).count())
        })
    }

    /// Whether this replica holds every change in `heads` for `doc`.
    pub(crate) fn has_heads(&self, doc: DocId, heads: &[ChangeHash]) -> Result<bool> {
        self.log.read(|tx| tx.has_all(&doc, heads))
    }
}

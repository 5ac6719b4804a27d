//! Sync over the automerge-repo protocol, as sans-IO state machines: [`wire`] (the messages),
//! [`ClientSession`] (a replica's side of one connection). The relay's side is in the
//! `cairn-sync` crate (`sync-server/`), and so are the sockets, timers and tasks.

mod session;
pub mod wire;

use automerge::ChangeHash;
use automerge::sync;

use crate::error::Result;
use crate::ids::DocId;

pub use session::{Caught, ClientSession, Effect, Input, SessionConfig};

/// The documents one side of a connection serves, as the sync state machines see them.
///
/// A [`crate::Replica`] serves its graph's documents; the relay serves whatever its storage
/// holds. Each call is one short synchronous step (a replica commits what it receives before
/// returning), so state machines stay free of IO of their own.
pub trait SyncDocs {
    /// Whether the document exists here.
    fn exists(&mut self, doc: &DocId) -> Result<bool>;
    /// The next sync message for a peer, or `None` if there is nothing to say.
    fn generate(&mut self, doc: &DocId, state: &mut sync::State) -> Result<Option<sync::Message>>;
    /// Applies a peer's sync message (creating the document if needed), persisting what it
    /// brought before returning; returns how many changes became applied.
    fn receive(&mut self, doc: &DocId, state: &mut sync::State, message: sync::Message) -> Result<usize>;
    /// Whether every change in `heads` is here.
    fn has_all(&mut self, doc: &DocId, heads: &[ChangeHash]) -> Result<bool>;
    /// The document's current heads (empty if it does not exist).
    fn heads(&mut self, doc: &DocId) -> Result<Vec<ChangeHash>>;
}

impl SyncDocs for &crate::Replica {
    fn exists(&mut self, doc: &DocId) -> Result<bool> {
        Ok(self.docs().kind_of(doc).is_some())
    }

    fn generate(&mut self, doc: &DocId, state: &mut sync::State) -> Result<Option<sync::Message>> {
        self.generate_sync_message(*doc, state)
    }

    fn receive(&mut self, doc: &DocId, state: &mut sync::State, message: sync::Message) -> Result<usize> {
        self.receive_sync_message(*doc, state, message)
    }

    fn has_all(&mut self, doc: &DocId, heads: &[ChangeHash]) -> Result<bool> {
        self.has_heads(*doc, heads)
    }

    fn heads(&mut self, doc: &DocId) -> Result<Vec<ChangeHash>> {
        self.doc_heads(*doc)
    }
}

impl SyncDocs for std::sync::Arc<crate::Replica> {
    fn exists(&mut self, doc: &DocId) -> Result<bool> {
        SyncDocs::exists(&mut &**self, doc)
    }

    fn generate(&mut self, doc: &DocId, state: &mut sync::State) -> Result<Option<sync::Message>> {
        SyncDocs::generate(&mut &**self, doc, state)
    }

    fn receive(&mut self, doc: &DocId, state: &mut sync::State, message: sync::Message) -> Result<usize> {
        SyncDocs::receive(&mut &**self, doc, state, message)
    }

    fn has_all(&mut self, doc: &DocId, heads: &[ChangeHash]) -> Result<bool> {
        SyncDocs::has_all(&mut &**self, doc, heads)
    }

    fn heads(&mut self, doc: &DocId) -> Result<Vec<ChangeHash>> {
        SyncDocs::heads(&mut &**self, doc)
    }
}

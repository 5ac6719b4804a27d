//! Sync over the automerge-repo protocol, as sans-IO state machines: no sockets and no clock
//! (time is an argument), storage injected through [`SyncDocs`]. [`wire`] holds the messages,
//! [`ClientSession`] a replica's side of one connection, and [`Driver`] the session a sync driver
//! runs on a replica, which alone sets the replica's freshness. The relay's side is in the
//! `cairn-sync` crate (`sync-server/`), and so are the sockets, timers and tasks.

mod bounded;
mod chunks;
mod driver;
mod memory;
mod session;
pub mod wire;

use automerge::ChangeHash;
use automerge::sync;

use crate::error::Result;
use crate::ids::DocId;

pub use bounded::MAX_MESSAGE_CHANGE_BYTES;
pub(crate) use bounded::bound;
pub use chunks::{Carried, CarriedChange, ChunkError, Decoded};
pub use driver::{Driver, ReplicaDocs};
pub use memory::MemoryDocs;
pub use session::{ClientSession, Effect, Input, SessionConfig};

/// The documents one side of a connection serves, as the sync state machines see them.
///
/// A replica serves its graph's documents ([`ReplicaDocs`]); the relay serves whatever its
/// storage holds. Each call is one short synchronous step (a replica commits what it receives before
/// returning), so state machines stay free of IO of their own.
pub trait SyncDocs {
    /// Whether the document exists here.
    fn exists(&mut self, doc: &DocId) -> Result<bool>;
    /// The next sync message for a peer, or `None` if there is nothing to say; its changes take
    /// at most [`MAX_MESSAGE_CHANGE_BYTES`] (unless one change alone is larger).
    fn generate(&mut self, doc: &DocId, state: &mut sync::State) -> Result<Option<sync::Message>>;
    /// Applies a peer's sync message (creating the document if needed), persisting what it
    /// brought before returning; returns how many changes became applied. A replica checks the
    /// changes first ([`crate::Error::CorruptChange`], [`crate::Error::Refused`]); storage that
    /// only relays (the relay's, [`MemoryDocs`]) leaves that to its caller, which knows who sent
    /// them.
    fn receive(&mut self, doc: &DocId, state: &mut sync::State, message: sync::Message) -> Result<usize>;
    /// Whether every change in `heads` is here.
    fn has_all(&mut self, doc: &DocId, heads: &[ChangeHash]) -> Result<bool>;
    /// The document's current heads (empty if it does not exist).
    fn heads(&mut self, doc: &DocId) -> Result<Vec<ChangeHash>>;
    /// The schema check's rules for a document held here, if this side knows which graph it
    /// belongs to (see [`crate::integrity::DocRules::of_document`]).
    fn rules(&mut self, doc: &DocId) -> Result<Option<crate::integrity::DocRules>>;
}

/// The default for how much a sync message's changes may take decompressed: far beyond any
/// graph's document, far below what would hurt a server.
pub const DEFAULT_MAX_INFLATED_BYTES: u64 = 128 << 20;

/// Checks that every change a sync message carries decodes and matches its checksum, and that
/// decompressed (each encoded row counted as 64 bytes) they take at most `max_inflated` bytes
/// (checked first, without trusting them: see `chunks.rs`). Automerge drops undecodable or
/// damaged changes from a message with only a warning when it applies them to a document that
/// already has history (and `Change::try_from` does not check the checksum at all); a peer
/// sending them is broken or hostile, and gets a protocol error instead.
pub fn check_changes(message: &sync::Message, max_inflated: u64) -> std::result::Result<(), ChunkError> {
    decode_changes(message, max_inflated).map(drop)
}

/// [`check_changes`], returning what the message carries: its changes decoded (those of a saved
/// document or a bundle one by one), for the schema check ([`crate::integrity`]), and each
/// change's hash, dependencies and cost read from its framing, which a relay needs to hold back
/// changes whose dependencies have not arrived.
pub fn decode_changes(message: &sync::Message, max_inflated: u64) -> std::result::Result<Decoded, ChunkError> {
    let entries: Vec<&[u8]> = message.changes.iter().collect();
    chunks::read(&entries, max_inflated)
}

#[cfg(test)]
mod tests {
    use automerge::sync::SyncDoc;
    use automerge::transaction::Transactable;

    use super::*;

    /// A sync message carrying the changes of `doc` after `known` heads.
    fn message_after(doc: &automerge::Automerge, known: &[ChangeHash]) -> sync::Message {
        let mut state = sync::State::new();
        state.shared_heads = known.to_vec();
        state.their_heads = Some(known.to_vec());
        state.their_have = Some(vec![sync::Have { last_sync: known.to_vec(), bloom: Default::default() }]);
        state.their_need = Some(vec![]);
        doc.generate_sync_message(&mut state).unwrap()
    }

    #[test]
    fn valid_changes_pass_even_without_their_dependencies_and_damaged_ones_fail() {
        let mut doc = automerge::Automerge::new();
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "a", 1).unwrap();
        tx.commit();
        let first = doc.get_heads();
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "b", 2).unwrap();
        tx.commit();
        let later = message_after(&doc, &first);
        assert!(!later.changes.is_empty());
        assert_eq!(
            check_changes(&later, DEFAULT_MAX_INFLATED_BYTES),
            Ok(()),
            "a change whose dependency is not in the message"
        );
        let mut damaged = message_after(&doc, &[]);
        let mut chunks: Vec<Vec<u8>> = damaged.changes.iter().map(<[u8]>::to_vec).collect();
        let n = chunks[0].len() - 3;
        chunks[0][n] ^= 0xff;
        damaged.changes = chunks.into();
        assert!(check_changes(&damaged, DEFAULT_MAX_INFLATED_BYTES).is_err());
    }
}

//! A replica's side of one connection to a relay (or a serving peer), as a state machine:
//! `handle(now, input, docs) -> effects`. It speaks the automerge-repo protocol as a client:
//! join, then one Automerge sync exchange per document, plus head announcements so the replica
//! can tell when it is behind before the changes themselves arrive.

use std::collections::{BTreeMap, BTreeSet};

use automerge::ChangeHash;
use automerge::sync;

use super::SyncDocs;
use super::wire::{Message, PROTOCOL_VERSION};
use crate::error::Result;
use crate::ids::{DocId, PeerId, StorageId};
use crate::model::Millis;

/// What drives a session.
#[derive(Debug, Clone)]
pub enum Input {
    /// The transport connected: start the handshake.
    Connected,
    /// A message arrived.
    Received(Message),
    /// This replica logged changes (its own writes, another process's, an import) to these
    /// documents (`None`: possibly any).
    LocalChange(Option<Vec<DocId>>),
    /// Time passed: retry stalled exchanges, give up on a silent handshake.
    Tick,
    /// The transport went down (or an attempt to connect failed).
    Disconnected,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a message.
    Send(Message),
    /// Close the connection (the driver reconnects later).
    Close {
        /// Why, for the log and the close frame.
        reason: String,
    },
    /// The replica became `behind` (in [`crate::Freshness`]'s words): something the other side
    /// announced is missing here, or the first exchange has not finished.
    Behind,
    /// The replica became `synced`: every head the other side announced, for every document,
    /// is here.
    Synced,
    /// The other side announced the heads it holds for a document.
    RemoteHeads(DocId, Vec<ChangeHash>),
    /// The other side accepts no changes from this one (a read-only token): local changes stay
    /// here. Reported once per connection.
    PeerReadOnly,
}

/// How a session identifies itself and what it syncs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// This side's peer id.
    pub peer_id: PeerId,
    /// This side's storage id (a replica persists documents, so it has one).
    pub storage_id: Option<StorageId>,
    /// The documents to sync.
    pub docs: Vec<DocId>,
    /// How long an exchange may wait for an answer before it is restarted.
    pub resync_after: Millis,
    /// How long the handshake may wait for the other side's `peer` message.
    pub handshake_timeout: Millis,
}

/// Per-document sync state.
#[derive(Debug, Default)]
struct DocState {
    sync: sync::State,
    /// The remote side's heads, as last announced (in a sync message or a head announcement).
    announced: Option<Vec<ChangeHash>>,
    /// When a message for this document last went out.
    sent_at: Millis,
}

#[derive(Debug)]
struct Remote {
    peer: PeerId,
    storage_id: Option<StorageId>,
}

/// One connection's client-side protocol state.
#[derive(Debug)]
pub struct ClientSession {
    config: SessionConfig,
    remote: Option<Remote>,
    connected_at: Millis,
    docs: BTreeMap<DocId, DocState>,
    /// Documents whose announced heads are not all here.
    lacking: BTreeSet<DocId>,
    /// What was last reported: `Some(true)` synced, `Some(false)` behind.
    reported: Option<bool>,
    read_only_reported: bool,
}

impl ClientSession {
    /// A session that has not connected yet.
    pub fn new(config: SessionConfig) -> Self {
        ClientSession {
            config,
            remote: None,
            connected_at: 0,
            docs: BTreeMap::new(),
            lacking: BTreeSet::new(),
            reported: None,
            read_only_reported: false,
        }
    }

    /// Advances the state machine. An `Err` is a local storage failure; protocol faults of the
    /// other side come back as [`Effect::Close`].
    pub fn handle(&mut self, now: Millis, input: Input, docs: &mut impl SyncDocs) -> Result<Vec<Effect>> {
        let mut out = Vec::new();
        match input {
            Input::Connected => {
                // A new connection starts every exchange afresh.
                self.remote = None;
                self.connected_at = now;
                self.docs = self.config.docs.iter().map(|d| (*d, DocState::default())).collect();
                self.lacking.clear();
                self.reported = None;
                self.read_only_reported = false;
                out.push(Effect::Send(Message::Join {
                    sender: self.config.peer_id.clone(),
                    storage_id: self.config.storage_id.clone(),
                    ephemeral: false,
                    versions: Some(vec![PROTOCOL_VERSION.into()]),
                }));
            }
            Input::Received(message) => self.receive(now, message, docs, &mut out)?,
            Input::Disconnected => {
                // Nothing is known of the other side until the next connection's handshake.
                self.remote = None;
                self.reported = None;
            }
            Input::LocalChange(changed) => {
                if self.remote.is_some() {
                    let mut changed = changed.unwrap_or_else(|| self.config.docs.clone());
                    changed.retain(|d| self.docs.contains_key(d));
                    for doc in changed {
                        self.send_sync(now, doc, docs, &mut out)?;
                    }
                    // New local changes may be what a lacking document was waiting for (another
                    // process on this file received them).
                    self.recheck_lacking(docs)?;
                }
            }
            Input::Tick => {
                if self.remote.is_none() {
                    if now - self.connected_at > self.config.handshake_timeout {
                        out.push(Effect::Close { reason: "the other side did not answer the handshake".into() });
                    }
                } else {
                    // An answer that never came (a lost message) would stall an exchange forever:
                    // Automerge waits for a reply before it says more. Forget the wait and retry.
                    for doc in self.config.docs.clone() {
                        let stalled = self
                            .docs
                            .get(&doc)
                            .is_some_and(|s| s.sync.in_flight && now - s.sent_at > self.config.resync_after);
                        if stalled {
                            if let Some(s) = self.docs.get_mut(&doc) {
                                s.sync.in_flight = false;
                            }
                            self.send_sync(now, doc, docs, &mut out)?;
                        }
                    }
                    self.recheck_lacking(docs)?;
                }
            }
        }
        self.report(&mut out);
        Ok(out)
    }

    fn receive(
        &mut self,
        now: Millis,
        message: Message,
        docs: &mut impl SyncDocs,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        match message {
            Message::Peer { sender, storage_id, version, .. } => {
                if version != PROTOCOL_VERSION {
                    out.push(Effect::Close { reason: format!("the other side chose protocol version {version:?}") });
                    return Ok(());
                }
                if let Some(storage) = &storage_id {
                    out.push(Effect::Send(Message::RemoteSubscriptionChange {
                        sender: self.config.peer_id.clone(),
                        target: sender.clone(),
                        add: vec![storage.clone()],
                        remove: vec![],
                    }));
                }
                self.remote = Some(Remote { peer: sender, storage_id });
                for doc in self.config.docs.clone() {
                    self.send_sync(now, doc, docs, out)?;
                }
            }
            Message::Sync { doc, data, .. } | Message::Request { doc, data, .. } => {
                if self.remote.is_none() {
                    out.push(Effect::Close { reason: "sync before the handshake".into() });
                    return Ok(());
                }
                let id = doc;
                if !self.docs.contains_key(&id) {
                    // Not one of ours: nothing to do with it.
                    return Ok(());
                }
                let msg = match sync::Message::decode(&data) {
                    Ok(m) => m,
                    Err(e) => {
                        out.push(Effect::Close { reason: format!("invalid sync data for {doc}: {e}") });
                        return Ok(());
                    }
                };
                let heads = msg.heads.clone();
                out.push(Effect::RemoteHeads(id, heads.clone()));
                let state = self.docs.entry(id).or_default();
                state.announced = Some(heads);
                match docs.receive(&id, &mut state.sync, msg) {
                    Ok(_) => {}
                    Err(crate::Error::CorruptChange(e)) => {
                        out.push(Effect::Close { reason: format!("invalid changes for {doc}: {e}") });
                        return Ok(());
                    }
                    // A relay or peer forwarding what the schema refuses is broken or hostile:
                    // nothing of it was stored; close, and try again later.
                    Err(crate::Error::Refused(v)) => {
                        out.push(Effect::Close { reason: format!("refused what the other side sent for {doc}: {v}") });
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
                if !self.read_only_reported && self.docs.get(&id).is_some_and(|s| s.sync.is_peer_read_only()) {
                    self.read_only_reported = true;
                    out.push(Effect::PeerReadOnly);
                }
                self.send_sync(now, id, docs, out)?;
                self.check(id, docs)?;
            }
            Message::RemoteHeadsChanged { doc, new_heads, .. } => {
                let remote_storage = self.remote.as_ref().and_then(|r| r.storage_id.clone());
                let id = doc;
                if !self.docs.contains_key(&id) {
                    return Ok(());
                }
                if let Some(h) = new_heads.into_iter().find(|h| Some(&h.storage_id) == remote_storage.as_ref()) {
                    out.push(Effect::RemoteHeads(id, h.heads.clone()));
                    self.docs.entry(id).or_default().announced = Some(h.heads);
                    self.check(id, docs)?;
                }
            }
            Message::Error { message, .. } => {
                out.push(Effect::Close { reason: format!("the other side reported an error: {message}") });
            }
            // Nothing for a client to do: a relay never asks a client for documents it did not
            // mention, and presence messages are not Cairn's business.
            Message::DocUnavailable { .. }
            | Message::Ephemeral { .. }
            | Message::Join { .. }
            | Message::Leave { .. }
            | Message::RemoteSubscriptionChange { .. } => {}
        }
        Ok(())
    }

    fn send_sync(&mut self, now: Millis, doc: DocId, docs: &mut impl SyncDocs, out: &mut Vec<Effect>) -> Result<()> {
        let Some(remote) = &self.remote else { return Ok(()) };
        let state = self.docs.entry(doc).or_default();
        if let Some(msg) = docs.generate(&doc, &mut state.sync)? {
            state.sent_at = now;
            out.push(Effect::Send(Message::Sync {
                sender: self.config.peer_id.clone(),
                target: remote.peer.clone(),
                doc,
                data: msg.encode(),
            }));
        }
        Ok(())
    }

    fn check(&mut self, doc: DocId, docs: &mut impl SyncDocs) -> Result<()> {
        let announced = self.docs.get(&doc).and_then(|s| s.announced.clone());
        match announced {
            Some(heads) if !docs.has_all(&doc, &heads)? => self.lacking.insert(doc),
            _ => self.lacking.remove(&doc),
        };
        Ok(())
    }

    fn recheck_lacking(&mut self, docs: &mut impl SyncDocs) -> Result<()> {
        for doc in self.lacking.clone() {
            self.check(doc, docs)?;
        }
        Ok(())
    }

    /// Whether every document's remote heads are known and here.
    pub fn is_synced(&self) -> bool {
        let all_known = self.remote.is_some() && self.docs.values().all(|s| s.announced.is_some());
        all_known && self.lacking.is_empty()
    }

    fn report(&mut self, out: &mut Vec<Effect>) {
        if self.remote.is_none() {
            return;
        }
        let synced = self.is_synced();
        if self.reported != Some(synced) {
            self.reported = Some(synced);
            out.push(if synced { Effect::Synced } else { Effect::Behind });
        }
    }
}

#[cfg(test)]
mod tests {
    //! The client session as a story, with documents in memory and the other side played by hand.

    use automerge::transaction::Transactable;
    use automerge::{Automerge, ROOT};

    use super::*;
    use crate::sync::MemoryDocs;
    use crate::sync::wire::RemoteHeads;

    const DOC: DocId = DocId([1; 16]);

    fn config() -> SessionConfig {
        SessionConfig {
            peer_id: "me".into(),
            storage_id: Some("my-storage".into()),
            docs: vec![DOC],
            resync_after: 5_000,
            handshake_timeout: 1_000,
        }
    }

    /// A document with one change putting `key`.
    fn doc_with(key: &str) -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, key, 1).unwrap();
        tx.commit();
        doc
    }

    fn peer(storage: Option<&str>) -> Message {
        Message::Peer {
            sender: "relay".into(),
            target: "me".into(),
            storage_id: storage.map(StorageId::from),
            ephemeral: false,
            version: PROTOCOL_VERSION.into(),
        }
    }

    /// The sync data of the sync messages among `effects`.
    fn sync_data(effects: &[Effect]) -> Vec<Vec<u8>> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send(Message::Sync { data, .. }) => Some(data.clone()),
                _ => None,
            })
            .collect()
    }

    fn sends(effects: &[Effect]) -> Vec<&'static str> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send(m) => Some(m.kind()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_handshake_then_one_exchange_per_document() {
        let mut docs = MemoryDocs::new();
        docs.insert(DOC, doc_with("a"));
        let mut session = ClientSession::new(config());
        // Step 1: connected, the session introduces itself, and says nothing else yet.
        let effects = session.handle(0, Input::Connected, &mut docs).unwrap();
        assert_eq!(sends(&effects), ["join"]);
        assert_eq!(sends(&session.handle(1, Input::LocalChange(None), &mut docs).unwrap()), Vec::<&str>::new());
        // Step 2: the relay answers; the session subscribes to its heads and starts syncing.
        let effects = session.handle(2, Input::Received(peer(Some("relay-storage"))), &mut docs).unwrap();
        assert_eq!(sends(&effects), ["remote-subscription-change", "sync"]);
        // The relay's heads are not known yet: behind, not synced.
        assert!(effects.contains(&Effect::Behind));
        assert!(!session.is_synced());
    }

    #[test]
    fn announced_heads_it_lacks_make_it_behind_and_their_changes_synced() {
        let mut mine = MemoryDocs::new();
        mine.insert(DOC, Automerge::new());
        let mut theirs = MemoryDocs::new();
        theirs.insert(DOC, doc_with("theirs"));
        let mut session = ClientSession::new(config());
        session.handle(0, Input::Connected, &mut mine).unwrap();
        let mut effects = session.handle(1, Input::Received(peer(Some("relay-storage"))), &mut mine).unwrap();
        let mut outgoing = sync_data(&effects);
        // Step 1: the relay announces heads this side does not have.
        let heads = theirs.heads(&DOC).unwrap();
        let announce = Message::RemoteHeadsChanged {
            sender: "relay".into(),
            target: "me".into(),
            doc: DOC,
            new_heads: vec![RemoteHeads { storage_id: "relay-storage".into(), heads: heads.clone(), timestamp: 1.0 }],
        };
        let announced = session.handle(2, Input::Received(announce), &mut mine).unwrap();
        assert!(announced.contains(&Effect::RemoteHeads(DOC, heads.clone())));
        assert!(!session.is_synced());
        // Step 2: the relay and the session exchange sync messages until the relay is quiet.
        let mut state = sync::State::new();
        let mut reported = Vec::new();
        for round in 0..10 {
            for data in outgoing.drain(..) {
                theirs.receive(&DOC, &mut state, sync::Message::decode(&data).unwrap()).unwrap();
            }
            let Some(reply) = theirs.generate(&DOC, &mut state).unwrap() else { break };
            let sync = Message::Sync { sender: "relay".into(), target: "me".into(), doc: DOC, data: reply.encode() };
            effects = session.handle(3 + round, Input::Received(sync), &mut mine).unwrap();
            outgoing = sync_data(&effects);
            reported.extend(effects);
        }
        let effects = reported;
        assert_eq!(mine.heads(&DOC).unwrap(), heads);
        assert!(session.is_synced());
        assert!(effects.contains(&Effect::Synced));
    }

    #[test]
    fn heads_announced_for_another_storage_are_not_the_relays() {
        let mut docs = MemoryDocs::new();
        docs.insert(DOC, Automerge::new());
        let mut session = ClientSession::new(config());
        session.handle(0, Input::Connected, &mut docs).unwrap();
        session.handle(1, Input::Received(peer(Some("relay-storage"))), &mut docs).unwrap();
        let other = Message::RemoteHeadsChanged {
            sender: "relay".into(),
            target: "me".into(),
            doc: DOC,
            new_heads: vec![RemoteHeads { storage_id: "someone-else".into(), heads: vec![], timestamp: 1.0 }],
        };
        let effects = session.handle(2, Input::Received(other), &mut docs).unwrap();
        assert!(!effects.iter().any(|e| matches!(e, Effect::RemoteHeads(..))));
    }

    #[test]
    fn protocol_faults_close_the_connection() {
        let mut docs = MemoryDocs::new();
        let mut session = ClientSession::new(config());
        session.handle(0, Input::Connected, &mut docs).unwrap();
        // Sync before the handshake.
        let early = Message::Sync { sender: "relay".into(), target: "me".into(), doc: DOC, data: vec![] };
        let effects = session.handle(1, Input::Received(early), &mut docs).unwrap();
        assert!(matches!(effects.as_slice(), [Effect::Close { .. }]));
        // A protocol version it does not speak.
        let mut session = ClientSession::new(config());
        session.handle(0, Input::Connected, &mut docs).unwrap();
        let wrong = Message::Peer {
            sender: "relay".into(),
            target: "me".into(),
            storage_id: None,
            ephemeral: false,
            version: "9".into(),
        };
        let effects = session.handle(1, Input::Received(wrong), &mut docs).unwrap();
        assert!(matches!(effects.as_slice(), [Effect::Close { reason }] if reason.contains("\"9\"")));
        // Sync data that is not a sync message.
        let mut session = ClientSession::new(config());
        session.handle(0, Input::Connected, &mut docs).unwrap();
        session.handle(1, Input::Received(peer(None)), &mut docs).unwrap();
        let garbage = Message::Sync { sender: "relay".into(), target: "me".into(), doc: DOC, data: vec![0xff; 8] };
        let effects = session.handle(2, Input::Received(garbage), &mut docs).unwrap();
        assert!(matches!(effects.last(), Some(Effect::Close { reason }) if reason.contains("invalid sync data")));
    }

    #[test]
    fn a_silent_handshake_is_given_up_and_a_stalled_exchange_retried() {
        let mut docs = MemoryDocs::new();
        docs.insert(DOC, doc_with("a"));
        let mut session = ClientSession::new(config());
        session.handle(0, Input::Connected, &mut docs).unwrap();
        assert_eq!(session.handle(500, Input::Tick, &mut docs).unwrap(), vec![], "within the handshake timeout");
        let effects = session.handle(1_001, Input::Tick, &mut docs).unwrap();
        assert!(matches!(effects.as_slice(), [Effect::Close { .. }]));
        // Once connected, a sync message left unanswered is sent again after `resync_after`.
        let mut session = ClientSession::new(config());
        session.handle(0, Input::Connected, &mut docs).unwrap();
        assert_eq!(sends(&session.handle(10, Input::Received(peer(None)), &mut docs).unwrap()), ["sync"]);
        assert_eq!(sends(&session.handle(4_000, Input::Tick, &mut docs).unwrap()), Vec::<&str>::new());
        assert_eq!(sends(&session.handle(5_011, Input::Tick, &mut docs).unwrap()), ["sync"]);
    }

    #[test]
    fn after_a_disconnect_it_says_nothing_until_the_next_handshake() {
        let mut docs = MemoryDocs::new();
        docs.insert(DOC, doc_with("a"));
        let mut session = ClientSession::new(config());
        session.handle(0, Input::Connected, &mut docs).unwrap();
        session.handle(1, Input::Received(peer(None)), &mut docs).unwrap();
        assert_eq!(session.handle(2, Input::Disconnected, &mut docs).unwrap(), vec![]);
        docs.insert(DOC, doc_with("b"));
        assert_eq!(session.handle(3, Input::LocalChange(Some(vec![DOC])), &mut docs).unwrap(), vec![]);
        assert!(!session.is_synced());
    }
}

//! The relay's routing core, as a state machine: `handle(now, event, docs) -> actions`.
//!
//! It answers handshakes, runs one Automerge sync exchange per (connection, document), forwards
//! what one connection brings to every other connection that has the document open, and
//! announces the heads it holds to connections that subscribed. Sockets, queues and timers are the
//! server adapter's business; storage is behind [`SyncDocs`], which persists a change before
//! `receive` returns — so nothing here forwards what is not durable.

mod gate;

use std::collections::{BTreeSet, HashMap};

use cairn::automerge::sync;
use cairn::integrity::DocRules;
use cairn::sync::SyncDocs;
use cairn::sync::wire::{Message, PROTOCOL_VERSION, RemoteHeads};
use cairn::{DocId, GraphDocs, GraphName, Millis, PeerId, Result, StorageId};

pub use gate::{ActorBook, InMemoryBook};
use outbox::{Outbox, Owed};
use pending::Pending;

/// A connection's number, assigned by the adapter.
pub type ConnId = u64;

/// Which documents a connection may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocScope {
    /// Every document (a relay run without access control, or a peer serving its own graph).
    Any,
    /// Only these, each with the graph it belongs to.
    Only(HashMap<DocId, GraphName>),
}

/// What a connection may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The documents it may see.
    pub scope: DocScope,
    /// Whether its changes are accepted.
    pub write: bool,
    /// Who is writing: the token's id. The first credential to write under an actor id owns it
    /// ([`ActorBook`]); `None` (a relay run without access control) binds nothing.
    pub credential: Option<String>,
    /// The agent names its changes may claim; `None`: any (self-declared).
    pub agents: Option<crate::tokens::AgentPatterns>,
}

impl Access {
    /// Everything, read and write, for anyone (no credential).
    pub fn full() -> Self {
        Access { scope: DocScope::Any, write: true, credential: None, agents: None }
    }

    /// The documents of some graphs.
    pub fn graphs<'a>(graphs: impl IntoIterator<Item = &'a GraphName>, write: bool) -> Self {
        let docs = graphs
            .into_iter()
            .flat_map(|g| GraphDocs::of(g).all().map(|(id, _)| (id, g.clone())).collect::<Vec<_>>())
            .collect();
        Access { scope: DocScope::Only(docs), write, credential: None, agents: None }
    }

    /// The same access, held by `credential`.
    pub fn held_by(mut self, credential: impl Into<String>) -> Self {
        self.credential = Some(credential.into());
        self
    }

    /// The same access, for changes that claim only the agent names `agents` matches.
    pub fn as_agents(mut self, agents: Option<crate::tokens::AgentPatterns>) -> Self {
        self.agents = agents;
        self
    }

    fn sees(&self, doc: &DocId) -> bool {
        match &self.scope {
            DocScope::Any => true,
            DocScope::Only(docs) => docs.contains_key(doc),
        }
    }
}

/// What happens to the hub.
#[derive(Debug)]
pub enum Event {
    /// A connection was accepted with this access.
    Connected {
        /// The connection.
        conn: ConnId,
        /// What it may do.
        access: Access,
    },
    /// A connection sent a message.
    Received {
        /// The connection.
        conn: ConnId,
        /// The message.
        message: Message,
    },
    /// Documents changed outside the protocol (a serving replica's own writes): offer the new
    /// changes to every connection.
    DocsChanged,
    /// These documents changed in storage by another relay node's hand (the bus said so, or
    /// reconciliation found it): offer what is new to the connections that have them open.
    ChangedElsewhere {
        /// The documents.
        docs: Vec<DocId>,
    },
    /// A connection's access changed (a token was revoked: `None` closes it).
    AccessChanged {
        /// The connection.
        conn: ConnId,
        /// The new access, or `None` to close the connection.
        access: Option<Access>,
    },
    /// A connection closed.
    Disconnected {
        /// The connection.
        conn: ConnId,
    },
}

/// What the adapter must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a message on a connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// The message.
        message: Message,
    },
    /// Close a connection (after sending what was queued before this action).
    Close {
        /// The connection.
        conn: ConnId,
        /// Why, for the close frame and the log.
        reason: String,
        /// Whether the other side broke the protocol (as opposed to being shut out).
        protocol_error: bool,
    },
}

#[derive(Debug)]
struct Conn {
    access: Access,
    /// The peer id from `join`; `None` until the handshake.
    peer: Option<PeerId>,
    /// Sync state per open document.
    docs: HashMap<DocId, sync::State>,
    /// Whether it subscribed to this relay's head announcements.
    subscribed: bool,
}

/// The hub's identity and limits.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The relay's peer id (`senderId` of every message it sends).
    pub peer_id: PeerId,
    /// The relay's storage id, under which it announces its heads.
    pub storage_id: StorageId,
    /// Documents one connection may have open (a graph is 33).
    pub max_docs_per_connection: usize,
    /// How much one sync message's changes may take decompressed, each encoded row counted as
    /// 64 bytes, checked before Automerge decodes them (compressed and run-length encoded data
    /// can claim a thousand times its size and more).
    pub max_inflated_bytes: u64,
    /// How much one connection may hold, for one document, of changes whose dependencies have
    /// not arrived (counted as `max_inflated_bytes` counts them); past it, the connection is
    /// refused. They are held outside the document and dropped with the connection
    /// (`pending.rs`).
    pub max_pending_bytes_per_document: u64,
    /// The same, for all of one connection's documents together.
    pub max_pending_bytes_per_connection: u64,
    /// The shortest time between two sync messages to one connection about one document, in
    /// milliseconds. A connection that has been quiet that long is answered at once; under
    /// steady writes, one message carries an interval's worth of changes.
    pub sync_interval: Millis,
}

impl HubConfig {
    /// An identity, with the default limits: 16 graphs' documents per connection,
    /// [`cairn::sync::DEFAULT_MAX_INFLATED_BYTES`] per message, 16 MiB per document and 32 MiB
    /// per connection of changes waiting for their dependencies, and [`DEFAULT_SYNC_INTERVAL`].
    pub fn new(peer_id: impl Into<PeerId>, storage_id: impl Into<StorageId>) -> Self {
        HubConfig {
            peer_id: peer_id.into(),
            storage_id: storage_id.into(),
            max_docs_per_connection: 16 * 33,
            max_inflated_bytes: cairn::sync::DEFAULT_MAX_INFLATED_BYTES,
            max_pending_bytes_per_document: 16 << 20,
            max_pending_bytes_per_connection: 32 << 20,
            sync_interval: DEFAULT_SYNC_INTERVAL,
        }
    }
}

/// The default [`HubConfig::sync_interval`]: 50 ms, half of automerge-repo's own throttle.
pub const DEFAULT_SYNC_INTERVAL: Millis = 50;

/// The routing core.
#[derive(Debug)]
pub struct Hub {
    config: HubConfig,
    conns: HashMap<ConnId, Conn>,
    /// Connections per open document.
    open: HashMap<DocId, BTreeSet<ConnId>>,
    /// Documents that gained changes since the last [`Hub::flush`], with the connection that
    /// brought them (`None`: several, or from outside the protocol).
    dirty: HashMap<DocId, Option<ConnId>>,
    /// The schema check's rules for each document met so far.
    rules: HashMap<DocId, std::sync::Arc<DocRules>>,
    /// Changes whose dependencies have not arrived, per connection and document.
    pending: Pending,
    /// What each (connection, document) pair is owed, and when it may have it.
    outbox: Outbox,
}

impl Hub {
    /// A hub with no connections.
    pub fn new(config: HubConfig) -> Self {
        let pending = Pending::new(config.max_pending_bytes_per_document, config.max_pending_bytes_per_connection);
        let outbox = Outbox::new(config.sync_interval);
        Hub {
            config,
            conns: HashMap::new(),
            open: HashMap::new(),
            dirty: HashMap::new(),
            rules: HashMap::new(),
            pending,
            outbox,
        }
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// How many documents some connection has open.
    pub fn open_docs(&self) -> usize {
        self.open.len()
    }

    /// How many changes are held waiting for their dependencies, over all connections.
    pub fn pending_changes(&self) -> usize {
        self.pending.changes()
    }

    /// What the changes held waiting for their dependencies cost, in bytes (as the per-message
    /// budget counts them).
    pub fn pending_bytes(&self) -> u64 {
        self.pending.cost()
    }

    /// Sends what the connections are owed: answers to their sync messages and the changes that
    /// arrived since, at most one sync message per (connection, document) per flush and per
    /// [`HubConfig::sync_interval`], none when Automerge's sync state says there is nothing new
    /// (`outbox.rs` says why). The adapter calls it after each batch of events, and again at
    /// [`Hub::next_flush`].
    pub fn flush(&mut self, now: Millis, docs: &mut impl SyncDocs) -> Result<Vec<Action>> {
        for (doc, from) in std::mem::take(&mut self.dirty) {
            for conn in self.open.get(&doc).into_iter().flatten() {
                // Subscribers hear the new heads (but the one that brought them).
                let heads = Some(*conn) != from && self.conns.get(conn).is_some_and(|c| c.subscribed);
                self.outbox.changed(*conn, doc, heads);
            }
        }
        let mut out = Vec::new();
        for (pair, owed) in self.outbox.due(now) {
            self.offer(now, pair, owed, docs, &mut out)?;
        }
        // A pair held back whose peer has just shown it holds what the relay holds, and knows
        // it, is owed nothing: it rests, and its next message need not wait.
        for (pair, owed) in self.outbox.held() {
            if !owed.heads && self.at_rest(pair, docs)? {
                self.outbox.rested(pair);
            }
        }
        Ok(out)
    }

    /// When [`Hub::flush`] has something to send that waits for its interval, if anything does.
    pub fn next_flush(&self) -> Option<Millis> {
        self.outbox.next_due()
    }

    /// Advances the hub. Fan-out of new changes waits for [`Hub::flush`]. An `Err` is a storage
    /// failure of the relay itself; whatever the other side did wrong comes back as a
    /// [`Action::Close`] for its connection only.
    pub fn handle(&mut self, now: Millis, event: Event, docs: &mut (impl SyncDocs + ActorBook)) -> Result<Vec<Action>> {
        let mut out = Vec::new();
        match event {
            Event::Connected { conn, access } => {
                self.conns.insert(conn, Conn { access, peer: None, docs: HashMap::new(), subscribed: false });
            }
            Event::Disconnected { conn } => self.drop_conn(conn),
            Event::AccessChanged { conn, access } => match access {
                None => {
                    out.push(Action::Close { conn, reason: "access revoked".into(), protocol_error: false });
                    self.drop_conn(conn);
                }
                Some(access) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.access = access;
                        let hidden: Vec<DocId> = c.docs.keys().filter(|d| !c.access.sees(d)).copied().collect();
                        for doc in hidden {
                            c.docs.remove(&doc);
                            self.pending.forget_doc(conn, doc);
                            if let Some(set) = self.open.get_mut(&doc) {
                                set.remove(&conn);
                            }
                        }
                    }
                }
            },
            Event::DocsChanged => {
                for doc in self.open.keys() {
                    self.dirty.insert(*doc, None);
                }
            }
            Event::ChangedElsewhere { docs } => {
                for doc in docs.into_iter().filter(|d| self.open.contains_key(d)) {
                    self.dirty.insert(doc, None);
                }
            }
            Event::Received { conn, message } => self.receive(now, conn, message, docs, &mut out)?,
        }
        Ok(out)
    }

    fn drop_conn(&mut self, conn: ConnId) {
        self.pending.forget_conn(conn);
        self.outbox.forget(conn);
        for from in self.dirty.values_mut() {
            if *from == Some(conn) {
                *from = None;
            }
        }
        if let Some(c) = self.conns.remove(&conn) {
            for doc in c.docs.keys() {
                if let Some(set) = self.open.get_mut(doc) {
                    set.remove(&conn);
                    if set.is_empty() {
                        self.open.remove(doc);
                    }
                }
            }
        }
    }

    fn send(&self, conn: ConnId, message: Message, out: &mut Vec<Action>) {
        out.push(Action::Send { conn, message });
    }

    fn refuse(&mut self, conn: ConnId, reason: String, out: &mut Vec<Action>) {
        let target = self.conns.get(&conn).and_then(|c| c.peer.clone());
        self.send(
            conn,
            Message::Error { sender: Some(self.config.peer_id.clone()), target, message: reason.clone() },
            out,
        );
        out.push(Action::Close { conn, reason, protocol_error: true });
        self.drop_conn(conn);
    }

    fn receive(
        &mut self,
        now: Millis,
        conn: ConnId,
        message: Message,
        docs: &mut (impl SyncDocs + ActorBook),
        out: &mut Vec<Action>,
    ) -> Result<()> {
        let Some(c) = self.conns.get_mut(&conn) else { return Ok(()) };
        let me = self.config.peer_id.clone();
        let peer = match (&message, &c.peer) {
            (Message::Join { sender, versions, .. }, _) => {
                let speaks = versions.as_ref().is_none_or(|v| v.iter().any(|v| v == PROTOCOL_VERSION));
                if !speaks {
                    self.refuse(conn, "unsupported protocol version".into(), out);
                    return Ok(());
                }
                c.peer = Some(sender.clone());
                let answer = Message::Peer {
                    sender: me,
                    target: sender.clone(),
                    storage_id: Some(self.config.storage_id.clone()),
                    ephemeral: false,
                    version: PROTOCOL_VERSION.into(),
                };
                self.send(conn, answer, out);
                return Ok(());
            }
            (_, None) => {
                self.refuse(conn, format!("{} before join; send join first", message.kind()), out);
                return Ok(());
            }
            (_, Some(peer)) => peer.clone(),
        };
        match message {
            Message::Request { doc, data, .. } => self.sync(conn, &peer, doc, data, true, docs, out)?,
            Message::Sync { doc, data, .. } => self.sync(conn, &peer, doc, data, false, docs, out)?,
            Message::RemoteSubscriptionChange { add, remove, .. } => {
                let mine = &self.config.storage_id;
                let c = self.conns.get_mut(&conn).expect("checked above");
                if add.contains(mine) {
                    c.subscribed = true;
                } else if remove.contains(mine) {
                    c.subscribed = false;
                }
                if c.subscribed {
                    let open: Vec<DocId> = c.docs.keys().copied().collect();
                    for doc in open {
                        let heads = docs.heads(&doc)?;
                        self.send(conn, self.heads_message(now, &peer, doc, heads), out);
                    }
                }
            }
            Message::Ephemeral { doc, count, session, data, sender, .. } => {
                let open = self.conns.get(&conn).is_some_and(|c| c.access.sees(&doc) && c.docs.contains_key(&doc));
                if !open {
                    self.refuse(
                        conn,
                        format!("ephemeral message for {doc}, which this connection has not opened"),
                        out,
                    );
                    return Ok(());
                }
                for other in self.open.get(&doc).cloned().unwrap_or_default() {
                    let Some(target) = self.conns.get(&other).filter(|_| other != conn).and_then(|o| o.peer.clone())
                    else {
                        continue;
                    };
                    let m = Message::Ephemeral {
                        sender: sender.clone(),
                        target,
                        doc,
                        count,
                        session: session.clone(),
                        data: data.clone(),
                    };
                    self.send(other, m, out);
                }
            }
            Message::Leave { .. } => {
                out.push(Action::Close { conn, reason: "peer left".into(), protocol_error: false });
                self.drop_conn(conn);
            }
            Message::Error { message, .. } => {
                out.push(Action::Close { conn, reason: format!("peer reported: {message}"), protocol_error: false });
                self.drop_conn(conn);
            }
            // Announcements from a client are not the relay's concern.
            Message::Peer { .. }
            | Message::DocUnavailable { .. }
            | Message::RemoteHeadsChanged { .. }
            | Message::Join { .. } => {}
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // one sync step needs all of it; a struct would only rename them
    fn sync(
        &mut self,
        conn: ConnId,
        peer: &PeerId,
        id: DocId,
        data: Vec<u8>,
        request: bool,
        docs: &mut (impl SyncDocs + ActorBook),
        out: &mut Vec<Action>,
    ) -> Result<()> {
        let me = self.config.peer_id.clone();
        let unavailable = |doc: DocId| Message::DocUnavailable { sender: me.clone(), target: peer.clone(), doc };
        // A document outside the connection's access is answered exactly like one that does not
        // exist, so that access control does not reveal which documents exist.
        if !self.conns[&conn].access.sees(&id) {
            self.send(conn, unavailable(id), out);
            return Ok(());
        }
        let doc = id;
        let mut msg = match sync::Message::decode(&data) {
            Ok(m) => m,
            Err(e) => {
                self.refuse(conn, format!("invalid sync data for {doc}: {e}"), out);
                return Ok(());
            }
        };
        let carried = if !self.conns[&conn].access.write {
            // A read-only connection's changes go nowhere: drop them undecoded, so that they
            // cost nothing (below, its sync state tells the peer not to send them).
            if !msg.changes.is_empty() {
                tracing::info!(conn, %doc, "ignoring changes from a read-only connection");
            }
            msg.changes = sync::ChunkList::empty();
            Vec::new()
        } else {
            match self.admit(conn, doc, &msg, docs)? {
                Ok(carried) => carried,
                Err(refusal) => {
                    self.refuse(conn, refusal, out);
                    return Ok(());
                }
            }
        };
        let is_new = !self.conns[&conn].docs.contains_key(&id);
        // A graph the connection's grant names is created here, from its genesis, the first
        // time anyone asks for it; one outside any grant (a relay without access control) only
        // from the exact genesis a replica sends (see `gate.rs`).
        let exists = docs.exists(&id)? || self.create_granted_graph(conn, id, docs)?;
        if is_new && (request || msg.heads.is_empty()) && !exists {
            self.send(conn, unavailable(id), out);
            return Ok(());
        }
        let limit = self.config.max_docs_per_connection;
        if is_new && self.conns[&conn].docs.len() >= limit {
            self.refuse(
                conn,
                format!(
                    "too many documents on one connection (the limit is {limit}); open fewer graphs per connection"
                ),
                out,
            );
            return Ok(());
        }
        let c = self.conns.get_mut(&conn).expect("checked above");
        // A read-only connection's sync state would ignore changes too (they were dropped above),
        // and says so in every message back: Automerge's read-only flag tells the peer there is
        // no point sending them.
        let write = c.access.write;
        let mut state =
            c.docs.remove(&id).unwrap_or_else(|| if write { sync::State::new() } else { sync::State::new_read_only() });
        let msg = match self.pending.admit(conn, id, msg, carried, docs)? {
            Ok(msg) => msg,
            Err(reason) => {
                self.refuse(conn, format!("changes for {doc} refused: {reason}"), out);
                return Ok(());
            }
        };
        let applied = match docs.receive(&id, &mut state, msg) {
            Ok(n) => n,
            Err(cairn::Error::CorruptChange(e)) => {
                self.refuse(conn, format!("invalid changes for {doc}: {e}"), out);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let c = self.conns.get_mut(&conn).expect("checked above");
        c.docs.insert(id, state);
        self.open.entry(id).or_default().insert(conn);
        // The answer waits for the flush (see `outbox.rs`).
        self.outbox.answer(conn, id);
        if applied > 0 {
            // Several connections bringing changes to one document: offer to all of them.
            let from = match self.dirty.get(&id) {
                None => Some(conn),
                Some(Some(c)) if *c == conn => Some(conn),
                Some(_) => None,
            };
            self.dirty.insert(id, from);
        }
        Ok(())
    }

    fn heads_message(
        &self,
        now: Millis,
        peer: &PeerId,
        doc: DocId,
        heads: Vec<cairn::automerge::ChangeHash>,
    ) -> Message {
        Message::RemoteHeadsChanged {
            sender: self.config.peer_id.clone(),
            target: peer.clone(),
            doc,
            new_heads: vec![RemoteHeads { storage_id: self.config.storage_id.clone(), heads, timestamp: now as f64 }],
        }
    }

    /// Whether both sides of a pair hold the same heads and each knows the other does: the
    /// peer said it has the relay's heads, and the relay told it so (not just Automerge's
    /// record of it, see [`Hub::offer`]).
    fn at_rest(&self, (conn, doc): (ConnId, DocId), docs: &mut impl SyncDocs) -> Result<bool> {
        let Some(state) = self.conns.get(&conn).and_then(|c| c.docs.get(&doc)) else { return Ok(false) };
        let heads = docs.heads(&doc)?;
        let told = self.outbox.told(&(conn, doc));
        Ok(state.their_heads.as_ref() == Some(&heads) && told == Some(heads.as_slice()))
    }

    /// Sends `conn` what it is owed for `doc`: first the relay's heads, if owed, so that a
    /// subscriber knows it is behind as early as possible; then the sync message its sync state
    /// calls for, if any.
    fn offer(
        &mut self,
        now: Millis,
        (conn, doc): (ConnId, DocId),
        owed: Owed,
        docs: &mut impl SyncDocs,
        out: &mut Vec<Action>,
    ) -> Result<()> {
        let Some(c) = self.conns.get(&conn) else { return Ok(()) };
        let Some(peer) = c.peer.clone() else { return Ok(()) };
        if owed.heads && c.subscribed && c.docs.contains_key(&doc) {
            let heads = docs.heads(&doc)?;
            self.send(conn, self.heads_message(now, &peer, doc, heads), out);
            self.outbox.sent((conn, doc), now, None, false);
        }
        let Some(state) = self.conns.get_mut(&conn).and_then(|c| c.docs.get_mut(&doc)) else { return Ok(()) };
        let mut message = docs.generate(&doc, state)?;
        let told = self.outbox.told(&(conn, doc));
        if message.is_none() && told.is_some_and(|told| told != state.last_sent_heads.as_slice()) {
            // Automerge takes a message without changes whose heads equal ours for proof that
            // the peer knows we are in step, and records those heads as sent. The peer knows
            // only what we told it, though; answered at once, it would have heard our heads
            // already, but an answer held back for the interval may not have. Tell it.
            state.last_sent_heads.clear();
            message = docs.generate(&doc, state)?;
        }
        self.pending.fix_need(conn, doc, message.as_mut(), state, docs)?;
        let Some(m) = message else {
            // Nothing to say. If the exchange has come to rest, the next message need not wait.
            if self.at_rest((conn, doc), docs)? {
                self.outbox.rested((conn, doc));
            }
            return Ok(());
        };
        let (heads, changes) = (m.heads.clone(), !m.changes.is_empty());
        let message = Message::Sync { sender: self.config.peer_id.clone(), target: peer, doc, data: m.encode() };
        out.push(Action::Send { conn, message });
        self.outbox.sent((conn, doc), now, Some(heads), changes);
        Ok(())
    }
}

mod outbox;
mod pending;
#[cfg(test)]
mod tests;

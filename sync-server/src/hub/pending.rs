//! Changes whose dependencies have not arrived, held per (connection, document) outside the
//! document, bounded and released with the connection. Sans-IO, like the hub.
//!
//! Automerge keeps a change whose dependencies it lacks in a queue inside the document (until
//! they arrive), with no bound, and the relay's cached document outlives the connection that
//! sent it: a few frames of such changes would pin memory for good. So before the hub hands a
//! message to the document, [`Pending::admit`] lets through only the changes whose
//! dependencies the document has or that come with them (in the message, or held from earlier
//! messages on the same connection and document), in an order that applies; the others are held
//! here, within a byte bound per (connection, document) and per connection, tried again with
//! each message on that connection and document, and dropped when the connection closes.
//!
//! The sync protocol recovers a missing dependency by asking for it: the receiver names it in the
//! `need` of its next message (which is how a Bloom filter false positive, a change the sender
//! wrongly thought the receiver had, is repaired). Automerge computes `need` from the peer's heads
//! through its own queue; it does not see the changes held here, so it would name the held
//! changes themselves, which the peer has already sent and will not send again (its sync state
//! remembers them), and the exchange would stall. [`Pending::fix_need`] puts what the held changes
//! lack in their place, as Automerge would have had they been in its queue.

use std::collections::{BTreeSet, HashMap, HashSet};

use cairn::DocId;
use cairn::Result;
use cairn::automerge::ChangeHash;
use cairn::automerge::sync;
use cairn::sync::{Carried, CarriedChange, SyncDocs};

use super::ConnId;

/// What one connection holds for one document.
#[derive(Debug, Default)]
struct Held {
    changes: HashMap<ChangeHash, CarriedChange>,
    /// Their cost, as the per-message budget counts it.
    cost: u64,
}

/// The held changes of every connection.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Most one connection may hold for one document.
    per_document: u64,
    /// Most one connection may hold in all.
    per_connection: u64,
    held: HashMap<(ConnId, DocId), Held>,
    /// What each connection holds in all.
    by_conn: HashMap<ConnId, u64>,
}

impl Pending {
    pub(crate) fn new(per_document: u64, per_connection: u64) -> Self {
        Pending { per_document, per_connection, held: HashMap::new(), by_conn: HashMap::new() }
    }

    /// How many changes are held, over all connections.
    pub(crate) fn changes(&self) -> usize {
        self.held.values().map(|h| h.changes.len()).sum()
    }

    /// What the held changes cost, over all connections.
    pub(crate) fn cost(&self) -> u64 {
        self.by_conn.values().sum()
    }

    /// Drops what a closed connection held.
    pub(crate) fn forget_conn(&mut self, conn: ConnId) {
        if self.by_conn.remove(&conn).is_some() {
            self.held.retain(|(c, _), _| *c != conn);
        }
    }

    /// Drops what a connection held for a document it may no longer see.
    pub(crate) fn forget_doc(&mut self, conn: ConnId, doc: DocId) {
        if let Some(h) = self.held.remove(&(conn, doc)) {
            self.release(conn, h.cost);
        }
    }

    fn release(&mut self, conn: ConnId, cost: u64) {
        if let Some(total) = self.by_conn.get_mut(&conn) {
            *total = total.saturating_sub(cost);
            if *total == 0 {
                self.by_conn.remove(&conn);
            }
        }
    }

    /// The message to hand `doc` for `message` from `conn`: the changes that apply (its own and
    /// held ones that now can), in an order that applies; the rest is held. `carried` is what
    /// the message carries, as the door (`gate.rs`, [`cairn::sync::decode_changes`]) read it.
    /// `Ok(Err(reason))` when what would be held passes a bound (the hub refuses the connection).
    pub(crate) fn admit(
        &mut self,
        conn: ConnId,
        doc: DocId,
        mut message: sync::Message,
        carried: Vec<Carried>,
        docs: &mut impl SyncDocs,
    ) -> Result<std::result::Result<sync::Message, String>> {
        let held = self.held.remove(&(conn, doc)).unwrap_or_default();
        if message.changes.is_empty() && held.changes.is_empty() {
            return Ok(Ok(message));
        }
        self.release(conn, held.cost);
        let had_held = !held.changes.is_empty();
        let mut documents = Vec::new();
        let mut candidates = held.changes;
        for c in carried {
            match c {
                Carried::Document(bytes) => documents.push(bytes),
                Carried::Change(c) => {
                    candidates.entry(c.hash).or_insert(c);
                }
            }
        }
        let (ready, rest) = split(candidates, |deps| has(docs, &doc, deps))?;
        if !had_held && rest.is_empty() {
            // The common case: everything applies as it came.
            return Ok(Ok(message));
        }
        let cost: u64 = rest.values().map(|c| c.cost).sum();
        let total = self.by_conn.get(&conn).copied().unwrap_or(0).saturating_add(cost);
        if !rest.is_empty() {
            self.held.insert((conn, doc), Held { changes: rest, cost });
            self.by_conn.insert(conn, total);
        }
        if cost > self.per_document || total > self.per_connection {
            let limit = if cost > self.per_document {
                format!("{} bytes for one document", self.per_document)
            } else {
                format!("{} bytes for one connection", self.per_connection)
            };
            return Ok(Err(format!(
                "changes whose dependencies have not arrived take more than {limit}; send changes with their dependencies"
            )));
        }
        let mut chunks = documents;
        chunks.extend(ready.into_iter().map(|c| c.bytes));
        message.changes = chunks.into();
        Ok(Ok(message))
    }

    /// Rewrites the `need` of a message the hub generated for `conn` on `doc` (with the sync
    /// state it generated it from): each held change named there is replaced with what it lacks
    /// (through other held changes), which is what the peer must still send. Like Automerge, the
    /// message then offers no Bloom filter while it needs something the peer's heads do not name
    /// (the peer answers with just what was asked for).
    pub(crate) fn fix_need(
        &self,
        conn: ConnId,
        doc: DocId,
        message: Option<&mut sync::Message>,
        state: &sync::State,
        docs: &mut impl SyncDocs,
    ) -> Result<()> {
        let (Some(message), Some(held)) = (message, self.held.get(&(conn, doc))) else { return Ok(()) };
        if !message.need.iter().any(|h| held.changes.contains_key(h)) {
            return Ok(());
        }
        let mut missing = BTreeSet::new();
        let mut seen = HashSet::new();
        let mut stack = message.need.clone();
        while let Some(hash) = stack.pop() {
            if !seen.insert(hash) {
                continue;
            }
            match held.changes.get(&hash) {
                Some(change) => stack.extend(change.deps.iter().copied()),
                None if has(docs, &doc, &[hash])? => {}
                None => {
                    missing.insert(hash);
                }
            }
        }
        message.need = missing.into_iter().collect();
        let their_heads = state.their_heads.as_deref().unwrap_or_default();
        if !message.need.iter().all(|h| their_heads.contains(h)) {
            message.have.clear();
        }
        Ok(())
    }
}

fn has(docs: &mut impl SyncDocs, doc: &DocId, hashes: &[ChangeHash]) -> Result<bool> {
    docs.has_all(doc, hashes)
}

/// Splits `candidates` into those that apply, in an order that does (each after its
/// dependencies), and those that still lack a dependency. `has(deps)` says whether the document
/// holds all of `deps`.
fn split(
    mut candidates: HashMap<ChangeHash, CarriedChange>,
    mut has: impl FnMut(&[ChangeHash]) -> Result<bool>,
) -> Result<(Vec<CarriedChange>, HashMap<ChangeHash, CarriedChange>)> {
    // Dependencies outside the candidates: asked of the document all at once (the usual answer
    // is yes), one by one only if not.
    let outside: BTreeSet<ChangeHash> =
        candidates.values().flat_map(|c| c.deps.iter()).filter(|d| !candidates.contains_key(d)).copied().collect();
    let outside: Vec<ChangeHash> = outside.into_iter().collect();
    let absent: HashSet<ChangeHash> = if has(&outside)? {
        HashSet::new()
    } else {
        let mut absent = HashSet::new();
        for d in &outside {
            if !has(std::slice::from_ref(d))? {
                absent.insert(*d);
            }
        }
        absent
    };
    // Kahn's algorithm over the candidates: a change is ready once no dependency is absent and
    // every one among the candidates is ready.
    let mut waiting: HashMap<ChangeHash, usize> = HashMap::new();
    let mut dependents: HashMap<ChangeHash, Vec<ChangeHash>> = HashMap::new();
    let mut free = Vec::new();
    for (hash, c) in &candidates {
        if c.deps.iter().any(|d| absent.contains(d)) {
            continue;
        }
        let inside: HashSet<&ChangeHash> = c.deps.iter().filter(|d| candidates.contains_key(*d)).collect();
        for d in &inside {
            dependents.entry(**d).or_default().push(*hash);
        }
        if inside.is_empty() {
            free.push(*hash);
        } else {
            waiting.insert(*hash, inside.len());
        }
    }
    // Stable order among changes that are free together, so that the outcome does not depend
    // on a hash map's iteration.
    free.sort();
    let mut ready = Vec::new();
    while let Some(hash) = free.pop() {
        for d in dependents.remove(&hash).unwrap_or_default() {
            if let Some(n) = waiting.get_mut(&d) {
                *n -= 1;
                if *n == 0 {
                    waiting.remove(&d);
                    free.push(d);
                }
            }
        }
        ready.push(candidates.remove(&hash).expect("a candidate"));
    }
    Ok((ready, candidates))
}

#[cfg(test)]
mod tests {
    use cairn::automerge::sync::SyncDoc;
    use cairn::automerge::transaction::{CommitOptions, Transactable};
    use cairn::automerge::{ActorId, Automerge, ROOT, ReadDoc};
    use cairn::integrity::DocRules;
    use cairn::sync::MemoryDocs;
    use cairn::sync::wire::Message;
    use cairn::{GraphDocs, GraphName};

    use crate::hub::{Access, Action, Event, Hub, HubConfig, InMemoryBook};

    use super::*;

    /// The shard Alice lives in, of the default graph.
    fn doc() -> DocId {
        GraphDocs::of(&GraphName::default_graph()).shard_for("Alice")
    }

    /// The shard as its genesis makes it, under a fresh actor for the writes to come.
    fn genesis() -> Automerge {
        let rules = DocRules::new(&GraphName::default_graph(), doc()).unwrap();
        rules.genesis().with_actor(ActorId::random())
    }

    /// One Cairn write: Alice's entity record, with type `t<i>`.
    fn write(peer: &mut Automerge, i: i64) {
        let (_, entities) = peer.get(ROOT, "entities").unwrap().unwrap();
        let mut tx = peer.transaction();
        tx.put(&entities, "Alice", format!(r#"{{"type":"t{i}","by":"a","at":1}}"#)).unwrap();
        tx.commit_with(CommitOptions::default().with_message(r#"{"agent":"a"}"#.to_owned()));
    }

    fn sync_frames(actions: Vec<Action>) -> Vec<sync::Message> {
        actions
            .into_iter()
            .filter_map(|a| match a {
                Action::Send { message: Message::Sync { data, .. }, .. } => Some(sync::Message::decode(&data).unwrap()),
                Action::Close { reason, .. } => panic!("closed: {reason}"),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_false_positive_is_repaired_by_asking_for_the_missing_parent() {
        // Step 1: the relay and the peer share ten changes; the peer then writes three more
        // (few enough that it sends them as changes, not as a whole document).
        let mut peer = genesis();
        for i in 0..10 {
            write(&mut peer, i);
        }
        let mut docs = InMemoryBook::new(MemoryDocs::new());
        docs.docs.insert(doc(), peer.fork());
        for i in 10..13 {
            write(&mut peer, i);
        }
        let first_new = peer.get_changes(&[])[11].hash();
        let mut hub = Hub::new(HubConfig::new("relay", "storage"));
        hub.handle(0, Event::Connected { conn: 1, access: Access::full() }, &mut docs).unwrap();
        let join = Message::Join { sender: "peer".into(), storage_id: None, ephemeral: false, versions: None };
        hub.handle(0, Event::Received { conn: 1, message: join }, &mut docs).unwrap();
        // Step 2: sync, with every Bloom filter the relay sends claiming the first new change too,
        // as a false positive would (it is a property of the hashes, so it repeats).
        let mut state = sync::State::new();
        let mut to_peer: Vec<sync::Message> = Vec::new();
        let mut held_once = false;
        for round in 1..=20 {
            // Each round one sync interval after the last, so that every answer is due at its flush.
            let now = round * crate::hub::DEFAULT_SYNC_INTERVAL;
            for mut m in to_peer.drain(..) {
                for have in &mut m.have {
                    let mut claimed = docs
                        .docs
                        .get(&doc())
                        .unwrap()
                        .get_changes(&have.last_sync)
                        .iter()
                        .map(|c| c.hash())
                        .collect::<Vec<_>>();
                    claimed.push(first_new);
                    have.bloom = sync::BloomFilter::from_hashes(claimed.into_iter());
                }
                peer.receive_sync_message(&mut state, m).unwrap();
            }
            let Some(m) = peer.generate_sync_message(&mut state) else { break };
            let message = Message::Sync { sender: "peer".into(), target: "relay".into(), doc: doc(), data: m.encode() };
            let mut actions = hub.handle(now, Event::Received { conn: 1, message }, &mut docs).unwrap();
            actions.extend(hub.flush(now, &mut docs).unwrap());
            to_peer = sync_frames(actions);
            held_once |= hub.pending_changes() > 0;
        }
        assert!(held_once, "the story happened: the new change's descendants were held");
        // Step 3: the relay asked for the missing change, got it, and holds nothing.
        assert_eq!(docs.heads(&doc()).unwrap(), peer.get_heads(), "the relay has everything");
        assert_eq!(hub.pending_changes(), 0);
    }

    #[test]
    fn a_closed_connection_releases_what_it_held() {
        let mut peer = genesis();
        let base = peer.fork();
        for i in 0..3 {
            write(&mut peer, i);
        }
        let changes = peer.get_changes(&[]);
        let mut docs = InMemoryBook::new(MemoryDocs::new());
        docs.docs.insert(doc(), base.clone());
        let mut hub = Hub::new(HubConfig::new("relay", "storage"));
        hub.handle(0, Event::Connected { conn: 1, access: Access::full() }, &mut docs).unwrap();
        let join = Message::Join { sender: "peer".into(), storage_id: None, ephemeral: false, versions: None };
        hub.handle(0, Event::Received { conn: 1, message: join }, &mut docs).unwrap();
        let mut m = Automerge::new().generate_sync_message(&mut sync::State::new()).unwrap();
        m.heads = peer.get_heads();
        m.changes = vec![changes[3].raw_bytes().to_vec(), changes[2].raw_bytes().to_vec()].into();
        let message = Message::Sync { sender: "peer".into(), target: "relay".into(), doc: doc(), data: m.encode() };
        let mut actions = hub.handle(0, Event::Received { conn: 1, message }, &mut docs).unwrap();
        actions.extend(hub.flush(0, &mut docs).unwrap());
        let replies = sync_frames(actions);
        assert_eq!(hub.pending_changes(), 2);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].need, vec![changes[1].hash()], "the relay asks for the missing parent");
        assert_eq!(docs.heads(&doc()).unwrap(), base.get_heads(), "nothing reached the document");
        hub.handle(0, Event::Disconnected { conn: 1 }, &mut docs).unwrap();
        assert_eq!(hub.pending_changes(), 0);
    }
}

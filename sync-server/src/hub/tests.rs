//! The hub as stories, with documents in memory and the connections played by hand.

use cairn::automerge::transaction::{CommitOptions, Transactable};
use cairn::automerge::{ActorId, Automerge, ROOT};
use cairn::sync::MemoryDocs;
use cairn::sync::wire::Message;

use super::*;

/// Documents in memory, with actor bindings in memory.
type Docs = InMemoryBook<MemoryDocs>;

fn docs() -> Docs {
    InMemoryBook::new(MemoryDocs::new())
}

fn graph() -> GraphName {
    GraphName::default_graph()
}

/// The shard Alice lives in: the document these stories sync.
fn doc() -> DocId {
    GraphDocs::of(&graph()).shard_for("Alice")
}

/// A document of the graph as its genesis makes it.
fn genesis(id: DocId) -> Automerge {
    DocRules::new(&graph(), id).expect("a document of the graph").genesis()
}

/// A change on a fork of `doc` under a fresh actor, as a Cairn writer makes it: the entity
/// Alice written with type `entity_type`.
fn edit(doc: &Automerge, entity_type: &str) -> Automerge {
    let record = format!(r#"{{"type":"{entity_type}","by":"alice","at":1}}"#);
    edit_as(doc, ActorId::random(), |tx, entities| tx.put(entities, "Alice", record).unwrap())
}

fn edit_as(
    doc: &Automerge,
    actor: ActorId,
    f: impl FnOnce(&mut cairn::automerge::transaction::Transaction<'_>, &cairn::automerge::ObjId),
) -> Automerge {
    use cairn::automerge::ReadDoc;
    let mut fork = doc.fork().with_actor(actor);
    let (_, entities) = fork.get(ROOT, "entities").unwrap().expect("a shard");
    let mut tx = fork.transaction();
    f(&mut tx, &entities);
    tx.commit_with(CommitOptions::default().with_message(r#"{"agent":"alice"}"#.to_owned()).with_time(0));
    fork
}

fn hub() -> Hub {
    Hub::new(HubConfig::new("relay", "relay-storage"))
}

fn join(peer: &str) -> Message {
    Message::Join { sender: peer.into(), storage_id: None, ephemeral: false, versions: None }
}

/// A sync message from `peer` carrying everything `from` has of `doc`.
fn sync_from(peer: &str, from: &Automerge, state: &mut sync::State) -> Message {
    use cairn::automerge::sync::SyncDoc;
    let data = from.generate_sync_message(state).map(|m| m.encode()).unwrap_or_default();
    Message::Sync { sender: peer.into(), target: "relay".into(), doc: doc(), data }
}

/// The document the stories start from: genesis and one write, the same bytes every run.
fn with_change() -> Automerge {
    let record = r#"{"type":"person","by":"alice","at":1}"#;
    edit_as(&genesis(doc()), ActorId::from([0xba; 16]), |tx, entities| tx.put(entities, "Alice", record).unwrap())
}

fn connect(hub: &mut Hub, docs: &mut Docs, conn: ConnId, access: Access) -> Vec<Action> {
    hub.handle(0, Event::Connected { conn, access }, docs).unwrap();
    hub.handle(0, Event::Received { conn, message: join(&format!("peer{conn}")) }, docs).unwrap()
}

/// What the hub sends to `conn` among `actions`, by message type.
fn sent_to(actions: &[Action], conn: ConnId) -> Vec<&'static str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn: c, message } if *c == conn => Some(message.kind()),
            _ => None,
        })
        .collect()
}

fn closed(actions: &[Action], conn: ConnId) -> bool {
    actions.iter().any(|a| matches!(a, Action::Close { conn: c, .. } if *c == conn))
}

#[test]
fn a_join_is_answered_with_the_relays_identity() {
    let (mut hub, mut docs) = (hub(), docs());
    let actions = connect(&mut hub, &mut docs, 1, Access::full());
    match actions.as_slice() {
        [Action::Send { conn: 1, message: Message::Peer { sender, target, storage_id, .. } }] => {
            assert_eq!((sender.as_str(), target.as_str()), ("relay", "peer1"));
            assert_eq!(storage_id.as_ref().map(StorageId::as_str), Some("relay-storage"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn anything_before_join_is_refused() {
    let (mut hub, mut docs) = (hub(), docs());
    hub.handle(0, Event::Connected { conn: 1, access: Access::full() }, &mut docs).unwrap();
    let early = sync_from("peer1", &with_change(), &mut sync::State::new());
    let actions = hub.handle(0, Event::Received { conn: 1, message: early }, &mut docs).unwrap();
    assert_eq!(sent_to(&actions, 1), ["error"]);
    assert!(closed(&actions, 1));
    assert_eq!(hub.connections(), 0);
}

/// A clock for a story: each step is one sync interval later than the last, so the hub's
/// pacing never holds a message back unless a story says so.
struct Clock(Millis);

impl Clock {
    fn tick(&mut self) -> Millis {
        self.0 += DEFAULT_SYNC_INTERVAL;
        self.0
    }
}

/// A peer played by hand on connection `conn`: its copy of the document and its sync state.
struct Peer {
    conn: ConnId,
    doc: Automerge,
    state: sync::State,
}

impl Peer {
    fn new(conn: ConnId, doc: Automerge) -> Peer {
        // Fixed actors and times: the same change hashes every run, so that Automerge's bloom
        // filters (which have false positives, each costing an extra round) decide the same way
        // every run, and a story's exchange is reproducible.
        Peer { conn, doc: doc.with_actor(ActorId::from([conn as u8; 16])), state: sync::State::new() }
    }

    /// A Cairn write: Alice's entity record, with type `entity_type`.
    fn edit(&mut self, entity_type: &str) {
        use cairn::automerge::ReadDoc;
        let (_, entities) = self.doc.get(ROOT, "entities").unwrap().expect("a shard");
        let mut tx = self.doc.transaction();
        tx.put(&entities, "Alice", format!(r#"{{"type":"{entity_type}","by":"alice","at":1}}"#)).unwrap();
        tx.commit_with(CommitOptions::default().with_message(r#"{"agent":"alice"}"#.to_owned()).with_time(0));
    }

    /// The peer's next sync message, if it has something to say.
    fn message(&mut self) -> Option<Message> {
        use cairn::automerge::sync::SyncDoc;
        let m = self.doc.generate_sync_message(&mut self.state)?;
        Some(Message::Sync {
            sender: format!("peer{}", self.conn).into(),
            target: "relay".into(),
            doc: doc(),
            data: m.encode(),
        })
    }

    /// Takes the hub's sync messages to this peer among `actions`; returns the others.
    fn take(&mut self, actions: Vec<Action>) -> Vec<Action> {
        use cairn::automerge::sync::SyncDoc;
        let mut others = Vec::new();
        for action in actions {
            match action {
                Action::Send { conn, message: Message::Sync { data, .. } } if conn == self.conn => {
                    self.doc.receive_sync_message(&mut self.state, sync::Message::decode(&data).unwrap()).unwrap();
                }
                other => others.push(other),
            }
        }
        others
    }
}

/// Runs the sync protocol between `peer` and the hub until the peer has nothing more to say
/// (bounded), flushing the hub after each message, as the adapter does after each batch.
/// Returns everything the hub did but its sync messages to the peer, which the peer took.
fn exchange(hub: &mut Hub, docs: &mut Docs, peer: &mut Peer, clock: &mut Clock) -> Vec<Action> {
    let mut others = Vec::new();
    for _ in 0..10 {
        let Some(message) = peer.message() else { return others };
        let now = clock.tick();
        let mut actions = hub.handle(now, Event::Received { conn: peer.conn, message }, docs).unwrap();
        actions.extend(hub.flush(now, docs).unwrap());
        others.extend(peer.take(actions));
    }
    panic!("the exchange never went quiet");
}

/// The relay's document, and a peer's copy of it with one more change.
fn base_and_edit() -> (Automerge, Automerge) {
    let base = with_change();
    let edited = edit(&base, "engineer");
    (base, edited)
}

/// A hub whose document Alice (connection 1) and Bob (2) have open, both in step with it.
struct AliceAndBob {
    hub: Hub,
    docs: Docs,
    alice: Peer,
    bob: Peer,
    clock: Clock,
}

fn alice_and_bob() -> AliceAndBob {
    let (mut hub, mut docs) = (hub(), docs());
    let base = with_change();
    docs.docs.insert(doc(), base.clone());
    connect(&mut hub, &mut docs, 1, Access::full());
    connect(&mut hub, &mut docs, 2, Access::full());
    let (mut alice, mut bob, mut clock) = (Peer::new(1, base.fork()), Peer::new(2, base.fork()), Clock(0));
    exchange(&mut hub, &mut docs, &mut alice, &mut clock);
    exchange(&mut hub, &mut docs, &mut bob, &mut clock);
    AliceAndBob { hub, docs, alice, bob, clock }
}

#[test]
fn a_change_is_stored_at_once_and_offered_to_the_others_at_flush() {
    // Step 1: Alice (connection 1) and Bob (2) both have the document open.
    let AliceAndBob { mut hub, mut docs, mut alice, .. } = alice_and_bob();
    // Step 2: Alice sends a change. It is in storage when `handle` returns; Alice's answer and
    // Bob's copy wait for the flush.
    alice.edit("k2");
    let now = 10_000;
    let handled = hub.handle(now, Event::Received { conn: 1, message: alice.message().unwrap() }, &mut docs).unwrap();
    assert!(handled.is_empty(), "nothing is sent before the flush: {handled:?}");
    assert_eq!(
        docs.docs.get(&doc()).unwrap().get_heads(),
        alice.doc.get_heads(),
        "stored before anything is forwarded"
    );
    let flushed = hub.flush(now, &mut docs).unwrap();
    assert_eq!(sent_to(&flushed, 2), ["sync"]);
    assert_eq!(sent_to(&flushed, 1), ["sync"], "one answer to Alice");
}

#[test]
fn many_messages_in_one_batch_get_one_answer_and_a_busy_connection_waits_for_the_interval() {
    let AliceAndBob { mut hub, mut docs, mut alice, mut bob, .. } = alice_and_bob();
    // Step 1: in one batch Alice sends three messages, each with a new change.
    let now = 10_000;
    for key in ["a1", "a2", "a3"] {
        alice.edit(key);
        hub.handle(now, Event::Received { conn: 1, message: alice.message().unwrap() }, &mut docs).unwrap();
    }
    // Step 2: the flush answers Alice once and offers Bob all three changes in one message.
    let flushed = hub.flush(now, &mut docs).unwrap();
    assert_eq!(sent_to(&flushed, 1), ["sync"]);
    assert_eq!(sent_to(&flushed, 2), ["sync"]);
    alice.take(flushed.clone());
    bob.take(flushed);
    assert_eq!(bob.doc.get_heads(), alice.doc.get_heads());
    // Step 3: Alice writes again at once: her change is stored, and Bob's copy waits for his
    // interval (Bob has answered what he had, as a peer does).
    alice.edit("a4");
    let soon = now + 1;
    hub.handle(soon, Event::Received { conn: 1, message: alice.message().unwrap() }, &mut docs).unwrap();
    hub.handle(soon, Event::Received { conn: 2, message: bob.message().unwrap() }, &mut docs).unwrap();
    assert!(hub.flush(soon, &mut docs).unwrap().is_empty(), "both connections had a message 1 ms ago");
    assert_eq!(hub.next_flush(), Some(now + DEFAULT_SYNC_INTERVAL));
    // Step 4: when the interval has passed, the flush sends it.
    let due = hub.flush(now + DEFAULT_SYNC_INTERVAL, &mut docs).unwrap();
    assert_eq!(sent_to(&due, 2), ["sync"]);
    bob.take(due);
    assert_eq!(bob.doc.get_heads(), alice.doc.get_heads());
    assert_eq!(hub.next_flush(), None);
}

#[test]
fn a_reader_that_has_not_answered_its_changes_hears_nothing_more_until_it_does() {
    let AliceAndBob { mut hub, mut docs, mut alice, mut bob, .. } = alice_and_bob();
    // Step 1: Alice writes; Bob is sent it and says nothing (a busy peer).
    let now = 10_000;
    alice.edit("a1");
    hub.handle(now, Event::Received { conn: 1, message: alice.message().unwrap() }, &mut docs).unwrap();
    let flushed = hub.flush(now, &mut docs).unwrap();
    assert_eq!(sent_to(&flushed, 2), ["sync"]);
    alice.take(bob.take(flushed));
    // Step 2: Alice writes again; the interval passes; Bob still has not answered: held.
    alice.edit("a2");
    hub.handle(now + 1, Event::Received { conn: 1, message: alice.message().unwrap() }, &mut docs).unwrap();
    let later = now + 2 * DEFAULT_SYNC_INTERVAL;
    assert!(sent_to(&hub.flush(later, &mut docs).unwrap(), 2).is_empty(), "Bob has not answered a1");
    // Step 3: Bob answers: a2 goes to him at once, the interval having passed.
    hub.handle(later, Event::Received { conn: 2, message: bob.message().unwrap() }, &mut docs).unwrap();
    let flushed = hub.flush(later, &mut docs).unwrap();
    assert_eq!(sent_to(&flushed, 2), ["sync"]);
    bob.take(flushed);
    assert_eq!(bob.doc.get_heads(), alice.doc.get_heads());
}

#[test]
fn a_reader_that_acknowledged_everything_hears_the_next_change_at_once() {
    let AliceAndBob { mut hub, mut docs, mut alice, mut bob, .. } = alice_and_bob();
    // Step 1: Alice writes; Bob has it at the flush and acknowledges it at once.
    let now = 10_000;
    alice.edit("a1");
    hub.handle(now, Event::Received { conn: 1, message: alice.message().unwrap() }, &mut docs).unwrap();
    let flushed = hub.flush(now, &mut docs).unwrap();
    alice.take(bob.take(flushed));
    let ack = bob.message().expect("Bob acknowledges");
    hub.handle(now + 1, Event::Received { conn: 2, message: ack }, &mut docs).unwrap();
    assert!(sent_to(&hub.flush(now + 1, &mut docs).unwrap(), 2).is_empty(), "nothing to tell Bob");
    // Step 2: Alice writes again within Bob's interval: Bob was at rest, so it goes at once.
    alice.edit("a2");
    hub.handle(now + 2, Event::Received { conn: 1, message: alice.message().unwrap() }, &mut docs).unwrap();
    let flushed = hub.flush(now + 2, &mut docs).unwrap();
    assert_eq!(sent_to(&flushed, 2), ["sync"]);
    bob.take(flushed);
    assert_eq!(bob.doc.get_heads(), alice.doc.get_heads());
}

#[test]
fn a_read_only_connection_changes_nothing() {
    let (mut hub, mut docs) = (hub(), docs());
    let (base, reader) = base_and_edit();
    docs.docs.insert(doc(), base.clone());
    connect(&mut hub, &mut docs, 1, Access::graphs([&graph()], false));
    let mut clock = Clock(0);
    exchange(&mut hub, &mut docs, &mut Peer::new(1, reader), &mut clock);
    assert_eq!(docs.docs.get(&doc()).unwrap().get_heads(), base.get_heads(), "the reader's change was not taken");
    assert!(hub.flush(clock.tick(), &mut docs).unwrap().is_empty());
}

#[test]
fn a_document_outside_access_looks_exactly_like_a_missing_one() {
    let (mut hub, mut docs) = (hub(), docs());
    let other_graph: GraphName = "other".parse().unwrap();
    let other = GraphDocs::of(&other_graph).root;
    docs.docs.insert(other, DocRules::new(&other_graph, other).unwrap().genesis());
    connect(&mut hub, &mut docs, 1, Access::graphs([&graph()], true));
    let request = |doc: DocId| Message::Request {
        sender: "peer1".into(),
        target: "relay".into(),
        doc,
        data: {
            use cairn::automerge::sync::SyncDoc;
            Automerge::new().generate_sync_message(&mut sync::State::new()).unwrap().encode()
        },
    };
    let hidden = hub.handle(0, Event::Received { conn: 1, message: request(other) }, &mut docs).unwrap();
    let missing_graph = GraphDocs::of(&"missing".parse().unwrap()).root;
    let missing = hub.handle(0, Event::Received { conn: 1, message: request(missing_graph) }, &mut docs).unwrap();
    assert_eq!(sent_to(&hidden, 1), ["doc-unavailable"]);
    assert_eq!(sent_to(&missing, 1), ["doc-unavailable"]);
}

#[test]
fn too_many_documents_on_one_connection_close_it() {
    let mut config = HubConfig::new("relay", "relay-storage");
    config.max_docs_per_connection = 1;
    let (mut hub, mut docs) = (Hub::new(config), docs());
    connect(&mut hub, &mut docs, 1, Access::full());
    let graph = GraphDocs::of(&graph());
    for (i, id) in graph.shards[..2].iter().enumerate() {
        let data = {
            use cairn::automerge::sync::SyncDoc;
            genesis(*id).generate_sync_message(&mut sync::State::new()).unwrap().encode()
        };
        let message = Message::Sync { sender: "peer1".into(), target: "relay".into(), doc: *id, data };
        let actions = hub.handle(0, Event::Received { conn: 1, message }, &mut docs).unwrap();
        assert_eq!(closed(&actions, 1), i == 1, "document {i}");
    }
}

#[test]
fn subscribers_hear_the_relays_heads_and_revoked_connections_are_closed() {
    let AliceAndBob { mut hub, mut docs, mut alice, mut clock, .. } = alice_and_bob();
    alice.edit("k2");
    let subscribe = Message::RemoteSubscriptionChange {
        sender: "peer2".into(),
        target: "relay".into(),
        add: vec!["relay-storage".into()],
        remove: vec![],
    };
    let actions = hub.handle(clock.tick(), Event::Received { conn: 2, message: subscribe }, &mut docs).unwrap();
    assert_eq!(sent_to(&actions, 2), ["remote-heads-changed"], "the heads it holds now");
    let others = exchange(&mut hub, &mut docs, &mut alice, &mut clock);
    assert_eq!(sent_to(&others, 2)[..2], ["remote-heads-changed", "sync"], "heads first, then the change");
    let revoked = hub.handle(clock.tick(), Event::AccessChanged { conn: 2, access: None }, &mut docs).unwrap();
    assert!(closed(&revoked, 2));
    assert_eq!(hub.connections(), 1);
}

#[test]
fn an_answer_held_back_still_tells_the_peer_the_relays_heads() {
    // Found by the simulation (sync-server/tests/simulation.rs): Alice and Bob hold the same
    // change, which the relay does not have yet.
    let (mut hub, mut docs) = (hub(), docs());
    connect(&mut hub, &mut docs, 1, Access::full());
    connect(&mut hub, &mut docs, 2, Access::full());
    let mut alice = Peer::new(1, with_change());
    let mut bob = Peer::new(2, alice.doc.fork());
    let now = 10_000;
    // Step 1: both say what they have; the relay has nothing and answers each with its needs.
    let bob_first = bob.message().unwrap();
    for (peer, message) in [(1, alice.message().unwrap()), (2, bob_first.clone())] {
        hub.handle(now, Event::Received { conn: peer, message }, &mut docs).unwrap();
    }
    let flushed = hub.flush(now, &mut docs).unwrap();
    let flushed = alice.take(bob.take(flushed));
    assert!(flushed.is_empty(), "{flushed:?}");
    // Step 2: Alice sends the change; then Bob's first message arrives again (a duplicate on
    // the wire): its heads are now the relay's, which Automerge records as known to Bob.
    hub.handle(now + 1, Event::Received { conn: 1, message: alice.message().unwrap() }, &mut docs).unwrap();
    hub.handle(now + 1, Event::Received { conn: 2, message: bob_first }, &mut docs).unwrap();
    assert!(hub.flush(now + 1, &mut docs).unwrap().is_empty(), "both had a message 1 ms ago");
    // Step 3: when Bob's interval has passed, he hears the relay's heads all the same: his last
    // word from the relay said it had nothing.
    let due = hub.flush(now + DEFAULT_SYNC_INTERVAL, &mut docs).unwrap();
    assert_eq!(sent_to(&due, 2), ["sync"]);
    bob.take(due);
    assert_eq!(bob.state.their_heads.as_deref(), Some(alice.doc.get_heads().as_slice()));
}

/// The sync message a peer holding `from` sends first to a relay that has `base`: the changes
/// `from` has beyond `base`.
fn changes_beyond(base: &Automerge, from: &Automerge, conn: ConnId) -> Message {
    let changes: Vec<Vec<u8>> = from.get_changes(&base.get_heads()).iter().map(|c| c.raw_bytes().to_vec()).collect();
    let message = sync::Message {
        heads: from.get_heads(),
        need: Vec::new(),
        have: vec![sync::Have { last_sync: base.get_heads(), bloom: Default::default() }],
        changes: sync::ChunkList::from(changes),
        flags: None,
        version: sync::MessageVersion::V1,
    };
    Message::Sync { sender: format!("peer{conn}").into(), target: "relay".into(), doc: doc(), data: message.encode() }
}

fn error_text(actions: &[Action], conn: ConnId) -> String {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Send { conn: c, message: Message::Error { message, .. } } if *c == conn => Some(message.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[test]
fn a_change_that_breaks_the_schema_is_refused_naming_the_rule_and_goes_nowhere() {
    let AliceAndBob { mut hub, mut docs, .. } = alice_and_bob();
    let base = docs.docs.get(&doc()).unwrap().clone();
    // Mallory, on connection 1, puts a new map at the shard's `entities` key.
    let mut mallory = base.fork().with_actor(ActorId::random());
    let mut tx = mallory.transaction();
    tx.put_object(ROOT, "entities", cairn::automerge::ObjType::Map).unwrap();
    tx.commit_with(CommitOptions::default().with_message(r#"{"agent":"mallory"}"#.to_owned()));
    let actions =
        hub.handle(0, Event::Received { conn: 1, message: changes_beyond(&base, &mallory, 1) }, &mut docs).unwrap();
    let error = error_text(&actions, 1);
    assert!(error.contains("refused") && error.contains("rule \"root\""), "{error} {actions:?}");
    assert!(closed(&actions, 1));
    assert_eq!(docs.docs.get(&doc()).unwrap().get_heads(), base.get_heads(), "nothing stored");
    assert!(hub.flush(0, &mut docs).unwrap().is_empty(), "nothing forwarded to bob");
}

#[test]
fn an_actor_belongs_to_the_credential_that_first_wrote_under_it() {
    let (mut hub, mut docs) = (hub(), docs());
    let base = with_change();
    docs.docs.insert(doc(), base.clone());
    connect(&mut hub, &mut docs, 1, Access::graphs([&graph()], true).held_by("alice-token"));
    connect(&mut hub, &mut docs, 2, Access::graphs([&graph()], true).held_by("mallory-token"));
    let alice_actor = ActorId::random();
    let put = |entity_type: &'static str| {
        move |tx: &mut cairn::automerge::transaction::Transaction<'_>, entities: &cairn::automerge::ObjId| {
            tx.put(entities, "Alice", format!(r#"{{"type":"{entity_type}","by":"alice","at":1}}"#)).unwrap()
        }
    };
    let alice = edit_as(&base, alice_actor.clone(), put("engineer"));
    let ok = hub.handle(0, Event::Received { conn: 1, message: changes_beyond(&base, &alice, 1) }, &mut docs).unwrap();
    assert!(!closed(&ok, 1), "{ok:?}");
    // Mallory builds the next change under Alice's actor (its next sequence number).
    let forged = edit_as(&alice, alice_actor, put("pirate"));
    let actions =
        hub.handle(0, Event::Received { conn: 2, message: changes_beyond(&alice, &forged, 2) }, &mut docs).unwrap();
    let error = error_text(&actions, 2);
    assert!(error.contains("rule \"actor\""), "{error}");
    assert_eq!(docs.docs.get(&doc()).unwrap().get_heads(), alice.get_heads(), "the forged change was not stored");
}

#[test]
fn a_granted_graph_is_created_from_its_genesis_when_first_asked_for() {
    let (mut hub, mut docs) = (hub(), docs());
    connect(&mut hub, &mut docs, 1, Access::graphs([&graph()], false).held_by("reader"));
    let root = GraphDocs::of(&graph()).root;
    let data = {
        use cairn::automerge::sync::SyncDoc;
        Automerge::new().generate_sync_message(&mut sync::State::new()).unwrap().encode()
    };
    let request = Message::Request { sender: "peer1".into(), target: "relay".into(), doc: root, data };
    let mut actions = hub.handle(0, Event::Received { conn: 1, message: request }, &mut docs).unwrap();
    actions.extend(hub.flush(0, &mut docs).unwrap());
    assert_eq!(sent_to(&actions, 1), ["sync"], "answered, not unavailable");
    for (id, _) in GraphDocs::of(&graph()).all() {
        assert_eq!(docs.docs.get(&id).map(|d| d.get_heads()), Some(genesis(id).get_heads()), "every document");
    }
}

#[test]
fn without_a_grant_only_the_exact_genesis_starts_a_document() {
    let (mut hub, mut docs) = (hub(), docs());
    connect(&mut hub, &mut docs, 1, Access::full());
    connect(&mut hub, &mut docs, 2, Access::full());
    // A forged genesis: the computable genesis actor, sequence 1, other operations.
    let real = genesis(doc());
    let actor = real.get_changes(&[])[0].actor_id().clone();
    let mut forged = Automerge::new().with_actor(actor);
    let mut tx = forged.transaction();
    tx.put(ROOT, "graph", graph().as_str()).unwrap();
    tx.commit_with(CommitOptions::default().with_time(0));
    let mut clock = Clock(0);
    let mut forger = Peer { conn: 1, doc: forged, state: sync::State::new() };
    let actions = exchange(&mut hub, &mut docs, &mut forger, &mut clock);
    assert!(error_text(&actions, 1).contains("rule \"genesis\""), "{actions:?}");
    assert!(docs.docs.get(&doc()).is_none_or(|d| d.get_heads().is_empty()), "nothing stored");
    // The real genesis, with a write on it, is taken.
    let mut honest = Peer::new(2, with_change());
    let actions = exchange(&mut hub, &mut docs, &mut honest, &mut clock);
    assert!(!closed(&actions, 2), "{actions:?}");
    assert_eq!(docs.docs.get(&doc()).unwrap().get_heads(), honest.doc.get_heads());
}

#[test]
fn a_token_bound_to_agent_names_cannot_claim_another() {
    let (mut hub, mut docs) = (hub(), docs());
    let base = with_change();
    docs.docs.insert(doc(), base.clone());
    let planners = crate::tokens::AgentPatterns::new(&["planner@*".into()]).unwrap();
    connect(&mut hub, &mut docs, 1, Access::graphs([&graph()], true).held_by("t").as_agents(Some(planners)));
    let claim = |base: &Automerge, agent: &str| {
        let mut fork = base.fork().with_actor(ActorId::random());
        use cairn::automerge::ReadDoc;
        let (_, entities) = fork.get(ROOT, "entities").unwrap().unwrap();
        let mut tx = fork.transaction();
        tx.put(&entities, "Alice", format!(r#"{{"type":"x","by":"{agent}","at":1}}"#)).unwrap();
        tx.commit_with(CommitOptions::default().with_message(format!(r#"{{"agent":"{agent}"}}"#)));
        fork
    };
    let honest = claim(&base, "planner@laptop");
    let ok = hub.handle(0, Event::Received { conn: 1, message: changes_beyond(&base, &honest, 1) }, &mut docs).unwrap();
    assert!(!closed(&ok, 1), "{ok:?}");
    let lying = claim(&honest, "alice");
    let actions =
        hub.handle(0, Event::Received { conn: 1, message: changes_beyond(&honest, &lying, 1) }, &mut docs).unwrap();
    let error = error_text(&actions, 1);
    assert!(error.contains("rule \"agent\"") && error.contains("planner@*"), "{error}");
    assert_eq!(docs.docs.get(&doc()).unwrap().get_heads(), honest.get_heads());
}

//! The hub as stories, with documents in memory and the connections played by hand.

use cairn::automerge::transaction::Transactable;
use cairn::automerge::{Automerge, ROOT};
use cairn::sync::MemoryDocs;
use cairn::sync::wire::Message;

use super::*;

fn graph() -> GraphName {
    GraphName::default_graph()
}

fn doc() -> DocId {
    GraphDocs::of(&graph()).root
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

fn with_change() -> Automerge {
    let mut d = Automerge::new();
    let mut tx = d.transaction();
    tx.put(ROOT, "k", 1).unwrap();
    tx.commit();
    d
}

fn connect(hub: &mut Hub, docs: &mut MemoryDocs, conn: ConnId, access: Access) -> Vec<Action> {
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
    let (mut hub, mut docs) = (hub(), MemoryDocs::new());
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
    let (mut hub, mut docs) = (hub(), MemoryDocs::new());
    hub.handle(0, Event::Connected { conn: 1, access: Access::full() }, &mut docs).unwrap();
    let early = sync_from("peer1", &with_change(), &mut sync::State::new());
    let actions = hub.handle(0, Event::Received { conn: 1, message: early }, &mut docs).unwrap();
    assert_eq!(sent_to(&actions, 1), ["error"]);
    assert!(closed(&actions, 1));
    assert_eq!(hub.connections(), 0);
}

/// Runs the sync protocol between a peer played by hand (`peer`, its document and sync
/// state) and the hub on connection `conn`, until the peer has nothing more to say (bounded).
/// Returns everything the hub did, but its sync replies to `conn`, which the peer took.
fn exchange(hub: &mut Hub, docs: &mut MemoryDocs, conn: ConnId, peer: &mut Automerge) -> Vec<Action> {
    use cairn::automerge::sync::SyncDoc;
    let mut state = sync::State::new();
    let mut others = Vec::new();
    for _ in 0..10 {
        let Some(m) = peer.generate_sync_message(&mut state) else { return others };
        let message = Message::Sync {
            sender: format!("peer{conn}").into(),
            target: "relay".into(),
            doc: doc(),
            data: m.encode(),
        };
        for action in hub.handle(0, Event::Received { conn, message }, docs).unwrap() {
            match action {
                Action::Send { conn: c, message: Message::Sync { data, .. } } if c == conn => {
                    peer.receive_sync_message(&mut state, sync::Message::decode(&data).unwrap()).unwrap();
                }
                other => others.push(other),
            }
        }
    }
    panic!("the exchange never went quiet");
}

/// The relay's document, and a peer's copy of it with one more change.
fn base_and_edit() -> (Automerge, Automerge) {
    let base = with_change();
    let mut edited = base.fork();
    let mut tx = edited.transaction();
    tx.put(ROOT, "k2", 2).unwrap();
    tx.commit();
    (base, edited)
}

/// A hub whose document Alice (connection 1) and Bob (2) have open, and Alice's copy with a
/// change the hub does not have yet.
fn alice_and_bob() -> (Hub, MemoryDocs, Automerge) {
    let (mut hub, mut docs) = (hub(), MemoryDocs::new());
    let (base, alice) = base_and_edit();
    docs.insert(doc(), base.clone());
    connect(&mut hub, &mut docs, 1, Access::full());
    connect(&mut hub, &mut docs, 2, Access::full());
    exchange(&mut hub, &mut docs, 2, &mut base.fork());
    (hub, docs, alice)
}

#[test]
fn a_change_is_stored_at_once_and_offered_to_the_others_at_flush() {
    // Step 1: Alice (connection 1) and Bob (2) both have the document open.
    let (mut hub, mut docs, mut alice) = alice_and_bob();
    // Step 2: Alice sends a change. It is in storage when `handle` returns; Bob hears of it
    // only when the hub flushes.
    let actions = exchange(&mut hub, &mut docs, 1, &mut alice);
    assert_eq!(sent_to(&actions, 2), Vec::<&str>::new());
    assert_eq!(docs.get(&doc()).unwrap().get_heads(), alice.get_heads(), "stored before anything is forwarded");
    let flushed = hub.flush(0, &mut docs).unwrap();
    assert_eq!(sent_to(&flushed, 2), ["sync"]);
    assert_eq!(sent_to(&flushed, 1), Vec::<&str>::new(), "not offered back to the one who brought it");
}

#[test]
fn a_read_only_connection_changes_nothing() {
    let (mut hub, mut docs) = (hub(), MemoryDocs::new());
    let (base, mut reader) = base_and_edit();
    docs.insert(doc(), base.clone());
    connect(&mut hub, &mut docs, 1, Access::graphs([&graph()], false));
    exchange(&mut hub, &mut docs, 1, &mut reader);
    assert_eq!(docs.get(&doc()).unwrap().get_heads(), base.get_heads(), "the reader's change was not taken");
    assert!(hub.flush(0, &mut docs).unwrap().is_empty());
}

#[test]
fn a_document_outside_access_looks_exactly_like_a_missing_one() {
    let (mut hub, mut docs) = (hub(), MemoryDocs::new());
    let other = GraphDocs::of(&"other".parse().unwrap()).root;
    docs.insert(other, with_change());
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
    let missing = hub.handle(0, Event::Received { conn: 1, message: request(doc()) }, &mut docs).unwrap();
    assert_eq!(sent_to(&hidden, 1), ["doc-unavailable"]);
    assert_eq!(sent_to(&missing, 1), ["doc-unavailable"]);
}

#[test]
fn too_many_documents_on_one_connection_close_it() {
    let mut config = HubConfig::new("relay", "relay-storage");
    config.max_docs_per_connection = 1;
    let (mut hub, mut docs) = (Hub::new(config), MemoryDocs::new());
    connect(&mut hub, &mut docs, 1, Access::full());
    let graph = GraphDocs::of(&graph());
    for (i, id) in graph.shards[..2].iter().enumerate() {
        let data = {
            use cairn::automerge::sync::SyncDoc;
            with_change().generate_sync_message(&mut sync::State::new()).unwrap().encode()
        };
        let message = Message::Sync { sender: "peer1".into(), target: "relay".into(), doc: *id, data };
        let actions = hub.handle(0, Event::Received { conn: 1, message }, &mut docs).unwrap();
        assert_eq!(closed(&actions, 1), i == 1, "document {i}");
    }
}

#[test]
fn subscribers_hear_the_relays_heads_and_revoked_connections_are_closed() {
    let (mut hub, mut docs, mut alice) = alice_and_bob();
    let subscribe = Message::RemoteSubscriptionChange {
        sender: "peer2".into(),
        target: "relay".into(),
        add: vec!["relay-storage".into()],
        remove: vec![],
    };
    let actions = hub.handle(0, Event::Received { conn: 2, message: subscribe }, &mut docs).unwrap();
    assert_eq!(sent_to(&actions, 2), ["remote-heads-changed"], "the heads it holds now");
    exchange(&mut hub, &mut docs, 1, &mut alice);
    let flushed = hub.flush(5, &mut docs).unwrap();
    assert_eq!(sent_to(&flushed, 2), ["remote-heads-changed", "sync"], "heads first, then the change");
    let revoked = hub.handle(6, Event::AccessChanged { conn: 2, access: None }, &mut docs).unwrap();
    assert!(closed(&revoked, 2));
    assert_eq!(hub.connections(), 1);
}

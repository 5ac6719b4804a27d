//! Golden fixtures under `tests/fixtures/golden/`, read by this test and by the JavaScript interop
//! script (`clients/js/golden.mjs`, run from `sync-server/tests/js_interop.rs`) alike:
//!
//! * `graph/`: a small graph's documents as Automerge saves them (the root and every shard that
//!   holds data), and `expected.json`, the graph they hold;
//! * `wire/`: protocol messages as CBOR frames, and `expected.json`, each frame's CBOR map as JSON
//!   (byte strings as `{"$bytes": "<hex>"}`).
//!
//! The fixtures are committed; a change to the schema reader, the document ids or the wire codec
//! that changes what they read as fails here. To write them anew (after a deliberate format
//! change, which other implementations must then follow), run
//! `CAIRN_REGENERATE_GOLDEN=1 cargo test -p cairn --test golden`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use cairn::automerge::sync::{self, SyncDoc};
use cairn::automerge::{Automerge, ReadDoc, ScalarValue, Value};
use cairn::sync::wire::{Message, RemoteHeads};
use cairn::sync::{ReplicaDocs, SyncDocs};
use cairn::{DocId, DocKind, Durability, Graph, GraphDocs, GraphName, Op, OpenOptions, Replica, Validity};
use serde_json::{Value as Json, json};

const GRAPH: &str = "golden";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

fn graph_name() -> GraphName {
    GRAPH.parse().unwrap()
}

fn open(dir: &Path, agent: &str) -> Replica {
    let options = OpenOptions::new(agent.parse().unwrap()).graph(graph_name()).durability(Durability::Normal);
    Replica::open_with(dir.join(format!("{agent}.db")), options).unwrap()
}

/// The fixture file stem of a document: `root`, or `shard-<n>`.
fn stem(kind: DocKind) -> String {
    match kind {
        DocKind::Root => "root".into(),
        DocKind::Shard(n) => format!("shard-{n}"),
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        panic!("cannot read golden fixture {}: {e} (CAIRN_REGENERATE_GOLDEN=1 writes the fixtures)", path.display())
    })
}

fn read_json(path: &Path) -> Json {
    serde_json::from_slice(&read(path)).unwrap()
}

fn write_json(path: &Path, value: &Json) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap() + "\n").unwrap();
}

/// Runs the Automerge sync protocol between a replica's document and a plain Automerge document
/// until neither has anything to say (bounded: a handful of rounds is always enough).
fn sync_with(replica: &mut ReplicaDocs, id: DocId, doc: &mut Automerge) {
    let (mut replica_state, mut doc_state) = (sync::State::new(), sync::State::new());
    for _ in 0..20 {
        let mut quiet = true;
        if let Some(m) = replica.generate(&id, &mut replica_state).unwrap() {
            doc.receive_sync_message(&mut doc_state, m).unwrap();
            quiet = false;
        }
        if let Some(m) = doc.generate_sync_message(&mut doc_state) {
            replica.receive(&id, &mut replica_state, m).unwrap();
            quiet = false;
        }
        if quiet {
            return;
        }
    }
    panic!("sync of {id} did not settle");
}

/// Writes the fixtures once per test run, and only when asked to.
fn regenerate_if_asked() {
    static ONCE: Once = Once::new();
    if std::env::var_os("CAIRN_REGENERATE_GOLDEN").is_some_and(|v| v == "1") {
        ONCE.call_once(|| {
            regenerate_graph(&golden_dir().join("graph"));
            regenerate_wire(&golden_dir().join("wire"));
        });
    }
}

/// Two agents build a small graph with every kind of fact the schema has: types, observations
/// (one superseded, one deleted), relations, a non-ASCII name and an unresolved type conflict.
fn regenerate_graph(out: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let alice = open(tmp.path(), "alice@golden");
    let bob = open(tmp.path(), "bob@golden");
    alice
        .write(&[
            Op::create_entity("Alice", "person", &["likes tea"]),
            Op::create_entity("ACME", "company", &["makes anvils", "founded 1949"]),
            Op::create_entity("東京", "city", &["capital of Japan"]),
            Op::create_entity("Pluto", "planet", &[]),
            Op::create_relation("Alice", "works_at", "ACME"),
            Op::AddObservation {
                entity: "Alice".into(),
                text: "lives in Paris".into(),
                validity: Validity { valid_from: Some(1_000), valid_to: None },
            },
        ])
        .unwrap();
    alice.write(&[Op::supersede_observation("Alice", "lives in Paris", "lives in Oslo", Some(5_000))]).unwrap();
    common::merge(&alice, &bob);
    bob.write(&[
        Op::create_entity("Bob", "person", &["drinks coffee"]),
        Op::create_relation("Bob", "knows", "Alice"),
        Op::delete_observation("ACME", "makes anvils"),
    ])
    .unwrap();
    // Concurrent type writes: one wins everywhere, the other stays reported as a conflict.
    alice.write(&[Op::set_entity_type("Pluto", "dwarf planet")]).unwrap();
    bob.write(&[Op::set_entity_type("Pluto", "plutoid")]).unwrap();
    common::merge(&alice, &bob);
    let graph = alice.read_graph_as_of(None).unwrap().data;
    assert_eq!(graph, bob.read_graph_as_of(None).unwrap().data);

    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap();
    let mut documents = BTreeMap::new();
    let alice = std::sync::Arc::new(alice);
    let mut alice_docs = ReplicaDocs::new(alice.clone());
    for (id, kind) in alice.docs().all() {
        let mut doc = Automerge::new();
        sync_with(&mut alice_docs, id, &mut doc);
        // A shard holding nothing but its genesis is the same on every replica: not worth a file.
        if kind == DocKind::Root || doc.get_changes(&[]).len() > 1 {
            std::fs::write(out.join(format!("{}.automerge", stem(kind))), doc.save()).unwrap();
            documents.insert(stem(kind), id.to_string());
        }
    }
    let mut expected = serde_json::to_value(&graph).unwrap();
    expected["graph"] = json!(GRAPH);
    expected["documents"] = json!(documents);
    write_json(&out.join("expected.json"), &expected);
}

#[test]
fn golden_graph_documents_read_as_the_expected_graph() {
    regenerate_if_asked();
    let dir = golden_dir().join("graph");
    let expected = read_json(&dir.join("expected.json"));
    assert_eq!(expected["graph"], GRAPH);
    let docs = GraphDocs::of(&graph_name());
    let tmp = tempfile::tempdir().unwrap();
    let reader = std::sync::Arc::new(open(tmp.path(), "reader"));
    let mut reader_docs = ReplicaDocs::new(reader.clone());
    let documents = expected["documents"].as_object().unwrap();
    assert!(documents.contains_key("root") && documents.len() >= 4, "the root and several shards: {documents:?}");
    for (stem_, id) in documents {
        // Step 1: the document ids in the fixture are the ones derived from the graph's name.
        let (want, kind) = docs.all().find(|(_, kind)| stem(*kind) == *stem_).unwrap();
        assert_eq!(id, &want.to_string(), "document id of {stem_}");
        // Step 2: a fresh replica takes the saved document in, through the sync hooks.
        let mut doc = Automerge::load(&read(&dir.join(format!("{stem_}.automerge")))).unwrap();
        sync_with(&mut reader_docs, want, &mut doc);
        assert_eq!(reader_docs.heads(&want).unwrap(), doc.get_heads(), "{stem_} arrived whole");
        if kind == DocKind::Root {
            // The root names every shard by its automerge-repo URL.
            let (_, shards) = doc.get(cairn::automerge::ROOT, "shards").unwrap().unwrap();
            let urls: Vec<String> = (0..doc.length(&shards))
                .map(|i| match doc.get(&shards, i).unwrap().unwrap().0 {
                    Value::Scalar(s) => match s.as_ref() {
                        ScalarValue::Str(s) => s.to_string(),
                        other => panic!("shard url {other:?}"),
                    },
                    other => panic!("shard url {other:?}"),
                })
                .collect();
            assert_eq!(urls, docs.shards.iter().map(DocId::url).collect::<Vec<_>>());
        }
    }
    // Step 3: it reads them as the graph the fixture says they hold, metadata and all.
    let want: Graph = serde_json::from_value(expected).unwrap();
    let got = reader.read_graph_as_of(None).unwrap().data;
    assert_eq!(got, want);
    // The fixture holds what it is meant to exercise, so the comparison above means something.
    let pluto = want.entities.iter().find(|e| e.name == "Pluto").unwrap();
    assert_eq!(pluto.conflicts.len(), 1, "an unresolved type conflict");
    let alice = want.entities.iter().find(|e| e.name == "Alice").unwrap();
    assert!(alice.observations.iter().any(|o| o.validity.valid_to == Some(5_000)), "a superseded observation");
    assert!(want.entities.iter().any(|e| e.name == "東京"));
    assert!(want.entities.iter().all(|e| !e.created_by.is_empty() && e.created_at > 0));
    assert_eq!(want.relations.len(), 2);
    let acme = want.entities.iter().find(|e| e.name == "ACME").unwrap();
    assert_eq!(acme.observations.len(), 1, "a deleted observation stays deleted");
}

// ---------------------------------------------------------------------------------------------
// Wire messages.

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn head(h: &cairn::automerge::ChangeHash) -> String {
    bs58::encode(h.0).with_check().into_string()
}

/// A number as JSON writes it: an integer when it is one (JavaScript does not tell them apart).
fn number(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() < 9e15 { json!(n as i64) } else { json!(n) }
}

fn metadata(storage_id: &Option<cairn::StorageId>, ephemeral: bool) -> Json {
    let mut m = json!({ "isEphemeral": ephemeral });
    if let Some(s) = storage_id {
        m["storageId"] = json!(s);
    }
    m
}

/// The CBOR map a message is on the wire, as JSON: what any CBOR decoder makes of the frame.
fn describe(m: &Message) -> Json {
    let mut j = json!({ "type": m.kind() });
    match m {
        Message::Join { sender, storage_id, ephemeral, versions } => {
            j["senderId"] = json!(sender);
            j["peerMetadata"] = metadata(storage_id, *ephemeral);
            j["supportedProtocolVersions"] = json!(versions);
        }
        Message::Peer { sender, target, storage_id, ephemeral, version } => {
            j["senderId"] = json!(sender);
            j["targetId"] = json!(target);
            j["peerMetadata"] = metadata(storage_id, *ephemeral);
            j["selectedProtocolVersion"] = json!(version);
        }
        Message::Error { sender, target, message } => {
            j["message"] = json!(message);
            if let Some(s) = sender {
                j["senderId"] = json!(s);
            }
            if let Some(t) = target {
                j["targetId"] = json!(t);
            }
        }
        Message::Request { sender, target, doc, data } | Message::Sync { sender, target, doc, data } => {
            j["senderId"] = json!(sender);
            j["targetId"] = json!(target);
            j["documentId"] = json!(doc.to_string());
            j["data"] = json!({ "$bytes": hex(data) });
        }
        Message::RemoteHeadsChanged { sender, target, doc, new_heads } => {
            j["senderId"] = json!(sender);
            j["targetId"] = json!(target);
            j["documentId"] = json!(doc.to_string());
            let heads: serde_json::Map<String, Json> = new_heads
                .iter()
                .map(|h| {
                    let entry = json!({ "heads": h.heads.iter().map(head).collect::<Vec<_>>(), "timestamp": number(h.timestamp) });
                    (h.storage_id.to_string(), entry)
                })
                .collect();
            j["newHeads"] = Json::Object(heads);
        }
        other => panic!("no golden fixture describes {} messages", other.kind()),
    }
    j
}

/// The golden graph's root document, which the sync fixtures talk about.
fn golden_root() -> Automerge {
    Automerge::load(&read(&golden_dir().join("graph/root.automerge"))).unwrap()
}

fn regenerate_wire(out: &Path) {
    let root = golden_root();
    let doc = GraphDocs::of(&graph_name()).root;
    let (client, relay) = (cairn::PeerId::from("client-7f3a"), cairn::PeerId::from("relay-01"));
    let messages = [
        (
            "join",
            Message::Join {
                sender: client.clone(),
                storage_id: Some("storage-client".into()),
                ephemeral: false,
                versions: Some(vec!["1".into()]),
            },
        ),
        (
            "peer",
            Message::Peer {
                sender: relay.clone(),
                target: client.clone(),
                storage_id: Some("storage-relay".into()),
                ephemeral: false,
                version: "1".into(),
            },
        ),
        (
            // What a peer holding nothing sends first.
            "request",
            Message::Request {
                sender: client.clone(),
                target: relay.clone(),
                doc,
                data: Automerge::new().generate_sync_message(&mut sync::State::new()).unwrap().encode(),
            },
        ),
        (
            // What a peer holding the golden root sends first: its heads.
            "sync",
            Message::Sync {
                sender: relay.clone(),
                target: client.clone(),
                doc,
                data: root.generate_sync_message(&mut sync::State::new()).unwrap().encode(),
            },
        ),
        (
            "remote-heads-changed",
            Message::RemoteHeadsChanged {
                sender: relay.clone(),
                target: client.clone(),
                doc,
                new_heads: vec![RemoteHeads {
                    storage_id: "storage-relay".into(),
                    heads: root.get_heads(),
                    timestamp: 1_767_225_600_000.0,
                }],
            },
        ),
        (
            "error",
            Message::Error { sender: Some(relay), target: Some(client), message: "unknown message type \"x\"".into() },
        ),
    ];
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap();
    let mut expected = serde_json::Map::new();
    for (name, message) in messages {
        std::fs::write(out.join(format!("{name}.bin")), message.encode()).unwrap();
        expected.insert(format!("{name}.bin"), describe(&message));
    }
    write_json(&out.join("expected.json"), &Json::Object(expected));
}

#[test]
fn golden_wire_messages_decode_as_described_and_encode_to_the_same_bytes() {
    regenerate_if_asked();
    let dir = golden_dir().join("wire");
    let expected = read_json(&dir.join("expected.json"));
    let expected = expected.as_object().unwrap();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    files.sort();
    assert_eq!(files, expected.keys().cloned().collect::<Vec<_>>(), "every frame is described");
    let kinds: Vec<&str> = expected.values().map(|v| v["type"].as_str().unwrap()).collect();
    for kind in ["join", "peer", "request", "sync", "remote-heads-changed", "error"] {
        assert!(kinds.contains(&kind), "a {kind} frame");
    }
    let root = golden_root();
    for (file, want) in expected {
        let bytes = read(&dir.join(file));
        let message = Message::decode(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(&describe(&message), want, "{file} decodes as described");
        assert_eq!(message.encode(), bytes, "{file} encodes to the same bytes");
        // The sync data is a real Automerge sync message about the golden root.
        match &message {
            Message::Sync { data, .. } => {
                assert_eq!(sync::Message::decode(data).unwrap().heads, root.get_heads(), "{file}");
            }
            Message::Request { data, .. } => {
                assert!(sync::Message::decode(data).unwrap().heads.is_empty(), "{file}");
            }
            Message::RemoteHeadsChanged { new_heads, .. } => assert_eq!(new_heads[0].heads, root.get_heads()),
            _ => {}
        }
    }
}

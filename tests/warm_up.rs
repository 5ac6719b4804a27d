//! `Replica::warm_up`: a graph's documents loaded on a thread of their own while the replica
//! reads and writes, and while another handle on the same file writes too. Whatever the
//! interleaving, nothing is lost and the warmed replica reads what a cold one reads.

mod common;

use std::time::Duration;

use cairn::ReadOptions;
use common::{entity, observe, open, shape, texts};

const ENTITIES: usize = 2_000;

/// Asserts two graph shapes are equal, naming only the rows that differ.
fn assert_same(got: &[String], expected: &[String], what: &str) {
    let missing: Vec<&String> = expected.iter().filter(|r| !got.contains(r)).collect();
    let extra: Vec<&String> = got.iter().filter(|r| !expected.contains(r)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "{what}: missing {missing:?}, extra {extra:?}");
}

fn fill(dir: &std::path::Path) {
    let writer = open(dir, "g.db", "filler");
    let ops: Vec<_> = (0..ENTITIES).map(|i| entity(&format!("entity-{i}"), "thing", &["first"])).collect();
    writer.write(&ops).unwrap();
}

#[test]
fn a_warmed_replica_loads_every_shard_and_reads_as_a_cold_one() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let warm = open(dir.path(), "g.db", "warm");
    let loaded = warm.warm_up().unwrap().wait(Duration::from_secs(60)).expect("warm-up ended within 60 s");
    // The root was loaded by the open; every shard (the graph's 32) by the warm-up.
    assert!(loaded >= 30, "loaded {loaded} documents");
    warm.write(&[observe("entity-7", "after warm-up")]).unwrap();
    let cold = open(dir.path(), "g.db", "cold");
    assert_same(&shape(&warm.read_graph().unwrap().data), &shape(&cold.read_graph().unwrap().data), "warm vs cold");
    assert_eq!(texts(&cold.read_graph().unwrap().data, "entity-7"), ["after warm-up", "first"]);
}

#[test]
fn writes_during_the_warm_up_from_this_handle_and_another_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let warm = open(dir.path(), "g.db", "warm");
    let other = open(dir.path(), "g.db", "other");
    let warming = warm.warm_up().unwrap();
    // Writes spread over every shard, interleaved with the loading thread: this handle's to
    // one half of the entities, the other's to the other half, so some of the other's land in
    // shards this handle has not touched, which the thread may have read before them.
    let mine = |i: usize| format!("entity-{}", (i * 37) % (ENTITIES / 2));
    let theirs = |i: usize| format!("entity-{}", ENTITIES / 2 + (i * 37) % (ENTITIES / 2));
    for i in 0..100 {
        warm.write(&[observe(&mine(i), &format!("mine {i}"))]).unwrap();
        other.write(&[observe(&theirs(i), &format!("theirs {i}"))]).unwrap();
    }
    warming.wait(Duration::from_secs(60)).expect("warm-up ended within 60 s");
    for i in 100..110 {
        warm.write(&[observe(&mine(i), &format!("mine {i}"))]).unwrap();
        other.write(&[observe(&theirs(i), &format!("theirs {i}"))]).unwrap();
    }
    let cold = open(dir.path(), "g.db", "cold");
    let expected = shape(&cold.read_graph().unwrap().data);
    assert_same(&shape(&warm.read_graph().unwrap().data), &expected, "the warmed handle reads what a cold one does");
    assert_same(&shape(&other.read_graph().unwrap().data), &expected, "the other handle");
    let graph = cold.read_graph().unwrap().data;
    for i in 0..110 {
        assert!(texts(&graph, &mine(i)).contains(&format!("mine {i}").as_str()), "{}", mine(i));
        assert!(texts(&graph, &theirs(i)).contains(&format!("theirs {i}").as_str()), "{}", theirs(i));
    }
    // Reads above come from the derived tables. The warmed handle's documents themselves hold
    // every change too: read at the current version, the graph is read from them.
    let now = warm.read_graph().unwrap().version;
    let options = ReadOptions { at_version: Some(now), include_superseded: true, ..ReadOptions::default() };
    assert_same(&shape(&warm.read_graph_with(&options).unwrap().data), &expected, "read from the documents");
}

#[test]
fn closing_the_replica_ends_the_warm_up() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let warm = open(dir.path(), "g.db", "warm");
    let warming = warm.warm_up().unwrap();
    drop(warm);
    // Ends with whatever it had loaded: the thread stops at the next document.
    assert!(warming.wait(Duration::from_secs(60)).is_some(), "the warm-up ended after the replica closed");
}

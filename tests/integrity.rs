//! The schema check never refuses what Cairn's own writer makes (differentially, over random
//! operations with names and texts at their limits), and its operation budget fits Cairn's
//! largest, most compressible writes. Every change here reaches the check through
//! `Replica::import`, the same door a relay or a peer's changes go through.
//!
//! Seeds are fixed so failures reproduce; set `CAIRN_SEED` and `CAIRN_CASES` to explore.

mod common;

use cairn::{Heads, Op, Replica, Validity};
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

/// Names as users (and the reference memory server) write them: any script, empty, with control
/// characters, sometimes long; never the key separator.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z][a-z]{0,6}",
        2 => "\\PC{1,12}",
        1 => "[a-z\\n\\t\\x00\\x1b]{0,4}",
        1 => Just("é".repeat(128)),
        1 => Just("x".repeat(4096)),
    ]
    .prop_filter("no key separator", |s| !s.contains('\u{1f}') && s.len() <= cairn::MAX_NAME_BYTES)
}

/// Observation texts: anything, the empty text, NUL, newlines and the key separator included,
/// sometimes long.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{1,30}",
        2 => "[a-z \\n\\t\\x00\\x1f\\x1b]{0,20}",
        1 => Just("t".repeat(100 * 1024)),
    ]
}

fn op(names: Vec<String>) -> impl Strategy<Value = Op> {
    let n = names.len();
    let pick = move |i: usize| names[i % n].clone();
    let (p1, p2, p3, p4, p5, p6, p7, p8) =
        (pick.clone(), pick.clone(), pick.clone(), pick.clone(), pick.clone(), pick.clone(), pick.clone(), pick);
    prop_oneof![
        3 => (any::<usize>(), name(), text()).prop_map(move |(i, t, o)| Op::create_entity(p1(i), t, &[o.as_str()])),
        2 => (any::<usize>(), text()).prop_map(move |(i, o)| Op::add_observation(p2(i), o)),
        2 => (any::<usize>(), name(), any::<usize>()).prop_map(move |(i, t, j)| Op::create_relation(p3(i), t, p3(j))),
        1 => (any::<usize>(), name()).prop_map(move |(i, t)| Op::set_entity_type(p4(i), t)),
        1 => any::<usize>().prop_map(move |i| Op::delete_entity(p5(i))),
        1 => (any::<usize>(), text()).prop_map(move |(i, o)| Op::delete_observation(p6(i), o)),
        1 => (any::<usize>(), 1i64..1_000_000, 1i64..1_000_000).prop_map(move |(i, a, b)| {
            let (from, to) = (a.min(b), a.max(b) + 1);
            Op::AddObservation {
                entity: p7(i),
                text: "held for a while".into(),
                validity: Validity { valid_from: Some(from), valid_to: Some(to) },
            }
        }),
        // Supersedes carry the link to the old fact (docs/schema.md, "The supersede link"); one
        // whose old fact is missing writes nothing, one of a fact already superseded is refused.
        1 => (any::<usize>(), text(), text()).prop_map({
            let pick = p8.clone();
            move |(i, old, new)| Op::supersede_observation(pick(i), old, new, None)
        }),
        1 => (any::<usize>(), any::<usize>(), name(), any::<usize>()).prop_map(move |(i, j, t, k)| {
            Op::supersede_relation(
                cairn::Relation::new(p8(i), "works_at", p8(j)),
                cairn::Relation::new(p8(i), t, p8(k)),
                Some(1_000),
            )
        }),
    ]
}

fn scenario() -> impl Strategy<Value = Vec<Vec<Op>>> {
    proptest::collection::vec(name(), 2..6).prop_flat_map(|names| {
        // First create every entity, so later operations find them; then random batches.
        let create: Vec<Op> = names.iter().map(|n| Op::create_entity(n.clone(), "thing", &[])).collect();
        proptest::collection::vec(proptest::collection::vec(op(names), 1..8), 1..6).prop_map(move |mut batches| {
            batches.insert(0, create.clone());
            batches
        })
    })
}

fn seed() -> u64 {
    std::env::var("CAIRN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x1d_7e_61)
}

#[test]
fn every_change_cairns_writer_makes_passes_the_check() {
    let cases = std::env::var("CAIRN_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(24);
    let config = Config { cases, rng_seed: RngSeed::Fixed(seed()), failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    runner
        .run(&scenario(), |batches| {
            let dir = tempfile::tempdir().unwrap();
            let writer = open(dir.path(), "writer.db", "writer@laptop");
            let mut wrote = 0;
            for batch in &batches {
                // A batch the planner refuses (an entity deleted earlier) writes nothing.
                if writer.write(batch).is_ok() {
                    wrote += 1;
                }
            }
            prop_assert!(wrote > 0, "the creating batch always writes");
            // Everything, genesis included, through the door.
            let reader = open(dir.path(), "reader.db", "reader@laptop");
            let bundle = writer.export_since(&Heads::default()).unwrap();
            let report = reader.import(&bundle);
            prop_assert!(report.is_ok(), "refused Cairn's own change: {:?}", report.err());
            prop_assert_eq!(shape(&reader.read_graph().unwrap().data), shape(&writer.read_graph().unwrap().data));
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_largest_most_compressible_write_fits_the_operation_budget() {
    // One write of 20,000 near-identical observations of one entity: one change with the most
    // operations per byte Cairn's writer makes (short keys sharing a prefix, identical records).
    let dir = tempfile::tempdir().unwrap();
    let writer = open(dir.path(), "writer.db", "w");
    let texts: Vec<String> = (0..20_000).map(|i| format!("o{i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    writer.write(&[Op::create_entity("E", "t", &refs)]).unwrap();
    // And rewrite them all (a delete then a put at each key: two operations per key).
    let again: Vec<Op> = texts.iter().map(|t| Op::add_observation("E", t.clone())).collect();
    writer.write(&again).unwrap();
    let reader = open(dir.path(), "reader.db", "r");
    let report = reader.import(&writer.export_since(&reader.heads().unwrap()).unwrap()).unwrap();
    assert!(report.applied >= 1);
    assert_eq!(reader.read_graph().unwrap().data.entities[0].observations.len(), 20_000);
}

#[test]
fn a_bundle_from_another_graph_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let team = Replica::open_with(
        dir.path().join("team.db"),
        cairn::OpenOptions::new("a".parse().unwrap()).graph("team".parse().unwrap()),
    )
    .unwrap();
    team.write(&[entity("Alice", "person", &["x"])]).unwrap();
    let other = open(dir.path(), "other.db", "b");
    let err = other.import(&team.export_since(&Heads::default()).unwrap()).unwrap_err();
    assert!(err.to_string().contains("does not belong to graph default"), "{err}");
    assert!(other.read_graph().unwrap().data.entities.is_empty());
}

//! The documented merge semantics and the replica API, as stories over real SQLite files.

mod common;

use cairn::{Error, Op, Outcome, Relation, Replica, Validity, What};
use common::*;

#[test]
fn concurrent_creation_of_one_entity_keeps_the_union() {
    let dir = tempfile::tempdir().unwrap();
    // Step 1: Alice and Bob, offline, both create "Tea" with different observations.
    let a = open(dir.path(), "a.db", "alice");
    let b = open(dir.path(), "b.db", "bob");
    a.write(&[entity("Tea", "drink", &["hot"]), entity("Cup", "thing", &[]), relate("Tea", "in", "Cup")]).unwrap();
    b.write(&[entity("Tea", "drink", &["green"]), entity("Pot", "thing", &[]), relate("Tea", "from", "Pot")]).unwrap();
    // Step 2: they merge through files.
    merge(&a, &b);
    // Step 3: one Tea, holding both observations and both relations, on both sides.
    for r in [&a, &b] {
        let g = r.read_graph().unwrap().data;
        assert_eq!(names(&g), ["Cup", "Pot", "Tea"]);
        assert_eq!(texts(&g, "Tea"), ["green", "hot"]);
        assert_eq!(g.relations.len(), 2);
        assert!(g.entities.iter().all(|e| e.conflicts.is_empty()), "same type twice is no conflict");
    }
    assert_eq!(shape(&a.read_graph().unwrap().data), shape(&b.read_graph().unwrap().data));
}

#[test]
fn deletes_remove_only_what_the_deleter_saw() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice");
    let b = open(dir.path(), "b.db", "bob");
    a.write(&[entity("Tea", "drink", &["hot"]), entity("Cup", "thing", &[]), relate("Cup", "holds", "Tea")]).unwrap();
    merge(&a, &b);
    // Alice deletes Tea (its observation and the relation to it); Bob concurrently adds to it.
    a.write(&[Op::delete_entity("Tea")]).unwrap();
    b.write(&[observe("Tea", "steeped 3 minutes"), entity("Pot", "thing", &[]), relate("Pot", "pours", "Tea")])
        .unwrap();
    merge(&a, &b);
    for r in [&a, &b] {
        let g = r.read_graph().unwrap().data;
        // Bob's addition survives; what Alice saw is gone.
        assert_eq!(texts(&g, "Tea"), ["steeped 3 minutes"]);
        let tea = g.entities.iter().find(|e| e.name == "Tea").unwrap();
        assert_eq!(tea.entity_type, "", "the deleted record's type is not resurrected");
        let rels: Vec<&Relation> = g.relations.iter().map(|r| &r.relation).collect();
        assert_eq!(rels, [&rel("Pot", "pours", "Tea")]);
    }
    // Writing a type restores the entity fully.
    b.write(&[Op::set_entity_type("Tea", "drink")]).unwrap();
    let g = b.read_graph().unwrap().data;
    assert_eq!(g.entities.iter().find(|e| e.name == "Tea").unwrap().entity_type, "drink");
}

#[test]
fn a_concurrent_re_add_survives_an_observation_delete() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice");
    let b = open(dir.path(), "b.db", "bob");
    a.write(&[entity("Tea", "drink", &["hot"])]).unwrap();
    merge(&a, &b);
    a.write(&[Op::delete_observation("Tea", "hot")]).unwrap();
    // Bob supersedes "hot" at the same time: his write of the observation is not something
    // Alice saw, so it survives her delete.
    b.write(&[Op::supersede_observation("Tea", "hot", "warm", Some(1))]).unwrap();
    merge(&a, &b);
    let all = a.read_graph_as_of(None).unwrap().data;
    assert_eq!(texts(&all, "Tea"), ["hot", "warm"]);
    assert_eq!(shape(&all), shape(&b.read_graph_as_of(None).unwrap().data));
}

#[test]
fn concurrent_type_writes_pick_one_winner_and_report_the_loser() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice");
    let b = open(dir.path(), "b.db", "bob");
    a.write(&[entity("Pluto", "planet", &[])]).unwrap();
    merge(&a, &b);
    a.write(&[Op::set_entity_type("Pluto", "dwarf planet")]).unwrap();
    b.write(&[Op::set_entity_type("Pluto", "plutoid")]).unwrap();
    merge(&a, &b);
    let pa = a.read_graph().unwrap().data.entities.remove(0);
    let pb = b.read_graph().unwrap().data.entities.remove(0);
    assert_eq!(pa.entity_type, pb.entity_type, "same winner everywhere");
    assert_eq!(pa.conflicts, pb.conflicts);
    assert_eq!(pa.conflicts.len(), 1);
    let mut both = [pa.entity_type.as_str(), pa.conflicts[0].entity_type.as_str()];
    both.sort();
    assert_eq!(both, ["dwarf planet", "plutoid"]);
    // The conflict names who wrote the losing value (not who created the entity).
    let loser_writer = if pa.conflicts[0].entity_type == "plutoid" { "bob" } else { "alice" };
    assert_eq!(pa.conflicts[0].by, loser_writer);
    // Writing the winning type resolves the conflict (Automerge records this as a delete of the
    // losing value; it must not read as a deleted entity), and the resolution merges.
    let winner = pa.entity_type.clone();
    a.write(&[Op::set_entity_type("Pluto", winner.clone())]).unwrap();
    merge(&a, &b);
    for r in [&a, &b] {
        let p = r.read_graph().unwrap().data.entities.remove(0);
        assert_eq!(p.entity_type, winner);
        assert!(p.conflicts.is_empty());
        assert_eq!(p.created_by, "alice", "re-typing keeps who created it");
        let last = r.history("Pluto").unwrap().data.pop().unwrap();
        assert_eq!(last.what, What::EntitySet { entity_type: winner.clone() });
    }
    // Writing a losing type resolves it too.
    a.write(&[Op::set_entity_type("Pluto", "x")]).unwrap();
    b.write(&[Op::set_entity_type("Pluto", "y")]).unwrap();
    merge(&a, &b);
    let p = a.read_graph().unwrap().data.entities.remove(0);
    let loser = p.conflicts[0].entity_type.clone();
    b.write(&[Op::set_entity_type("Pluto", loser.clone())]).unwrap();
    merge(&a, &b);
    let p = a.read_graph().unwrap().data.entities.remove(0);
    assert_eq!((p.entity_type, p.conflicts.len()), (loser, 0));
}

#[test]
fn history_reads_back_deleted_facts() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice");
    a.write(&[entity("Tea", "drink", &["hot"]), entity("Cup", "thing", &[]), relate("Tea", "in", "Cup")]).unwrap();
    a.write(&[Op::delete_entity("Tea")]).unwrap();
    assert!(a.read_graph().unwrap().data.entities.iter().all(|e| e.name != "Tea"));
    let history = a.history("Tea").unwrap().data;
    let whats: Vec<&What> = history.iter().map(|c| &c.what).collect();
    assert!(whats.contains(&&What::EntitySet { entity_type: "drink".into() }));
    assert!(whats.contains(&&What::ObservationSet {
        text: "hot".into(),
        validity: Validity::default(),
        replaces: None
    }));
    assert!(whats.contains(&&What::ObservationDeleted { text: "hot".into() }));
    assert!(whats.contains(&&What::RelationDeleted { relation: rel("Tea", "in", "Cup") }));
    assert!(whats.contains(&&What::EntityDeleted));
    assert!(history.iter().all(|c| c.agent == "alice" && c.at > 0));
    // The relation shows in the other end's history too.
    assert!(a.history("Cup").unwrap().data.iter().any(|c| matches!(&c.what, What::RelationSet { .. })));
    // And history survives compaction and reopening.
    a.compact().unwrap();
    drop(a);
    let a = open(dir.path(), "a.db", "alice");
    assert_eq!(a.history("Tea").unwrap().data.len(), history.len());
}

#[test]
fn supersede_keeps_the_past_readable_as_of_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice");
    a.write(&[entity("Alice", "person", &[]), entity("ACME", "company", &[]), entity("Initech", "company", &[])])
        .unwrap();
    a.write(&[
        Op::AddObservation {
            entity: "Alice".into(),
            text: "lives in Paris".into(),
            validity: Validity { valid_from: Some(1_000), valid_to: None },
        },
        relate("Alice", "works_at", "ACME"),
    ])
    .unwrap();
    a.write(&[
        Op::supersede_observation("Alice", "lives in Paris", "lives in Oslo", Some(5_000)),
        Op::supersede_relation(
            Relation::new("Alice", "works_at", "ACME"),
            Relation::new("Alice", "works_at", "Initech"),
            Some(5_000),
        ),
    ])
    .unwrap();
    let now = a.read_graph().unwrap().data;
    assert_eq!(texts(&now, "Alice"), ["lives in Oslo"]);
    assert_eq!(now.relations.iter().map(|r| r.relation.to.as_str()).collect::<Vec<_>>(), ["Initech"]);
    let then = a.read_graph_as_of(Some(2_000)).unwrap().data;
    assert_eq!(texts(&then, "Alice"), ["lives in Paris"]);
    assert_eq!(then.relations.iter().map(|r| r.relation.to.as_str()).collect::<Vec<_>>(), ["ACME"]);
    assert_eq!(texts(&a.read_graph_as_of(None).unwrap().data, "Alice"), ["lives in Oslo", "lives in Paris"]);
}

#[test]
fn duplicates_and_missing_items_are_reported_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice");
    let first = a.write(&[entity("Tea", "drink", &["hot"]), entity("Cup", "thing", &[])]).unwrap();
    assert_eq!(first.outcomes, [Outcome::Applied, Outcome::Applied]);
    let again = a
        .write(&[
            entity("Tea", "something else", &["ignored"]),
            observe("Tea", "hot"),
            observe("Tea", "hot"),
            relate("Tea", "in", "Cup"),
            relate("Tea", "in", "Cup"),
            Op::delete_observation("Tea", "cold"),
            Op::delete_relation("Cup", "in", "Tea"),
            Op::delete_entity("Nobody"),
        ])
        .unwrap();
    use Outcome::*;
    assert_eq!(
        again.outcomes,
        [AlreadyExists, AlreadyExists, AlreadyExists, Applied, AlreadyExists, NotFound, NotFound, NotFound]
    );
    let g = a.read_graph().unwrap().data;
    assert_eq!(g.entities.iter().find(|e| e.name == "Tea").unwrap().entity_type, "drink");
    assert_eq!(texts(&g, "Tea"), ["hot"]);
    // A write that changes nothing does not move the version.
    let v = a.read_graph().unwrap().version;
    assert_eq!(a.write(&[entity("Tea", "drink", &[])]).unwrap().version, v);
}

#[test]
fn a_batch_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice");
    a.write(&[entity("Tea", "drink", &[])]).unwrap();
    let before = a.read_graph().unwrap();
    // The last operation names an unknown entity: nothing of the batch is written.
    let err =
        a.write(&[entity("Cup", "thing", &[]), observe("Tea", "hot"), relate("Tea", "in", "Saucer")]).unwrap_err();
    assert!(matches!(&err, Error::EntityNotFound(n) if n == "Saucer"), "{err}");
    assert!(err.to_string().contains("create it first"));
    let after = a.read_graph().unwrap();
    assert_eq!(after.version, before.version);
    assert_eq!(shape(&after.data), shape(&before.data));
    // And the replica keeps working after the refusal.
    a.write(&[entity("Saucer", "thing", &[]), relate("Tea", "in", "Saucer")]).unwrap();
    assert_eq!(a.read_graph().unwrap().data.relations.len(), 1);
}

#[test]
fn operations_in_a_batch_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice");
    let r = a
        .write(&[
            entity("A", "t", &[]),
            entity("B", "t", &[]),
            relate("A", "r", "B"),
            Op::delete_entity("B"),
            entity("B", "u", &["back"]),
        ])
        .unwrap();
    assert!(r.outcomes.iter().all(|o| *o == Outcome::Applied));
    let g = a.read_graph().unwrap().data;
    assert_eq!(shape(&g), ["A:t:[]:[]", "B:u:[\"back\"]:[]"]);
}

#[test]
fn what_the_reference_server_stores_is_stored_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice");
    let long_name = "名".repeat(100);
    let long_text = "x".repeat(70 * 1024);
    a.write(&[
        entity("", "", &["", "line\nbreak"]),
        entity("tab\there\nand nul\0", "t\u{1b}", &[&long_text]),
        entity(&long_name, "person", &[]),
        relate("", "", &long_name),
    ])
    .unwrap();
    let g = a.read_graph().unwrap().data;
    let names: Vec<&str> = g.entities.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["", "tab\there\nand nul\0", long_name.as_str()]);
    let texts: Vec<&str> = g.entities[0].observations.iter().map(|o| o.text.as_str()).collect();
    assert_eq!(texts, ["", "line\nbreak"]);
    assert_eq!(g.entities[1].entity_type, "t\u{1b}");
    assert_eq!(g.entities[1].observations[0].text, long_text);
    assert_eq!(g.relations.len(), 1);
    let r = &g.relations[0].relation;
    assert_eq!((r.from.as_str(), r.relation_type.as_str(), r.to.as_str()), ("", "", long_name.as_str()));
    // And they survive a round trip through another replica (the schema check on the way in).
    let b = open(dir.path(), "b.db", "bob");
    b.import(&a.export_since(&cairn::Heads::default()).unwrap()).unwrap();
    assert_eq!(b.read_graph().unwrap().data, g);
    // Deleting them works like any other.
    a.write(&[Op::DeleteObservation { entity: "".into(), text: "".into() }]).unwrap();
    a.write(&[Op::DeleteEntity { name: "".into() }]).unwrap();
    assert_eq!(a.read_graph().unwrap().data.entities.len(), 2);
}

#[test]
fn bad_names_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice");
    let v = a.read_graph().unwrap().version;
    let too_long = cairn::MAX_NAME_BYTES + 1;
    let cases: Vec<(Op, String)> = vec![
        (entity(&"x".repeat(too_long), "t", &[]), format!("{too_long} bytes")),
        (entity("a\u{1f}b", "t", &[]), "U+001F".into()),
        (entity("ok", "a\u{1f}b", &[]), "entity type contains U+001F".into()),
        (entity("ok", "t", &[&"x".repeat(cairn::MAX_TEXT_BYTES + 1)]), "limit is 10485760".into()),
        (relate("ok", "bad\u{1f}type", "ok"), "relation type".into()),
        (
            entity("ok", "t", &[&"a".repeat(7 << 20), &"b".repeat(7 << 20)]),
            "one write stores at most 12582912 bytes".into(),
        ),
        (
            Op::AddObservation {
                entity: "ok".into(),
                text: "t".into(),
                validity: Validity { valid_from: Some(10), valid_to: Some(10) },
            },
            "validity interval is empty".into(),
        ),
    ];
    for (op, expect) in cases {
        let err = a.write(&[op]).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains(&expect), "{err} should mention {expect:?}");
    }
    let err = a.write(&[observe("Ghost", "boo")]).unwrap_err();
    assert!(matches!(&err, Error::EntityNotFound(n) if n == "Ghost"));
    assert_eq!(a.read_graph().unwrap().version, v, "nothing was written");
    assert!(Replica::open(dir.path().join("x.db"), "bad\u{7}agent").is_err());
}

#[test]
fn files_that_are_not_cairn_and_corrupt_changes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, "these are my notes, not a database\n".repeat(200)).unwrap();
    let err = Replica::open(&junk, "alice").unwrap_err();
    assert!(matches!(err, Error::NotADatabase { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&junk).unwrap(), "these are my notes, not a database\n".repeat(200));

    let a = open(dir.path(), "a.db", "alice");
    let b = open(dir.path(), "b.db", "bob");
    a.write(&[entity("Tea", "drink", &["hot"])]).unwrap();
    let mut bundle = a.export_since(&b.heads().unwrap()).unwrap();
    let v = b.read_graph().unwrap().version;
    // Flip one byte inside the last change: its checksum no longer matches.
    let n = bundle.len();
    bundle[n - 5] ^= 0xff;
    let err = b.import(&bundle).unwrap_err();
    assert!(matches!(err, Error::CorruptChange(_)), "{err:?}");
    assert!(b.import(b"garbage").is_err());
    assert_eq!(b.read_graph().unwrap().version, v, "nothing was imported");
    // A bundle of another graph is refused too.
    let other = cairn::Replica::open_with(
        dir.path().join("o.db"),
        cairn::OpenOptions::new("carol".parse().unwrap()).graph("other".parse().unwrap()),
    )
    .unwrap();
    other.write(&[entity("X", "t", &[])]).unwrap();
    let err = b.import(&other.export_since(&cairn::Heads::default()).unwrap()).unwrap_err();
    assert!(err.to_string().contains("does not belong to graph default"), "{err}");
}

#[test]
fn search_matches_substrings_and_accepts_any_text() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice");
    a.write(&[
        entity("Alice Smith", "person", &["Loves green tea", "works on project \"Cairn\""]),
        entity("Bob", "person", &["drinks coffee"]),
        entity("Teapot", "thing", &[]),
        relate("Alice Smith", "owns", "Teapot"),
    ])
    .unwrap();
    let found = |q: &str| names(&a.search(q).unwrap().data).into_iter().map(String::from).collect::<Vec<_>>();
    assert_eq!(found("GREEN"), ["Alice Smith"]);
    assert_eq!(found("lic"), ["Alice Smith"]);
    let mut tea = found("tea");
    tea.sort();
    assert_eq!(tea, ["Alice Smith", "Teapot"]);
    assert_eq!(found("person coffee"), ["Bob"]);
    assert_eq!(found("ob"), ["Bob"]);
    assert_eq!(found("\"Cairn\""), ["Alice Smith"]);
    for weird in ["\"", "AND", "OR NOT", "*", "(a", "col:x", "a\"b", "%", "_", "\\", "NEAR(a b)", "^x", "'", ""] {
        a.search(weird).unwrap_or_else(|e| panic!("{weird:?}: {e}"));
    }
    assert_eq!(found("").len(), 3, "an empty query matches everything, like the reference server");
    // Relations touching a match come along.
    assert_eq!(a.search("Teapot").unwrap().data.relations.len(), 1);
    // The index follows deletes and re-typing.
    a.write(&[Op::delete_observation("Bob", "drinks coffee"), Op::set_entity_type("Teapot", "vessel")]).unwrap();
    assert!(found("coffee").is_empty());
    assert_eq!(found("vessel"), ["Teapot"]);
    assert!(found("thing").is_empty());
    a.write(&[Op::delete_entity("Alice Smith")]).unwrap();
    assert!(found("green").is_empty());
    a.reindex().unwrap();
    assert_eq!(found("vessel"), ["Teapot"]);
    assert!(found("green").is_empty());
}

#[test]
fn conditional_writes_check_only_the_entities_they_depend_on() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "shared.db", "alice");
    let b = open(dir.path(), "shared.db", "bob");
    a.write(&[entity("Plan", "doc", &["step 1"]), entity("Other", "doc", &[])]).unwrap();
    let seen = a.read_graph().unwrap().version;
    // Bob changes an unrelated entity: Alice's conditional write still goes through.
    b.write(&[observe("Other", "unrelated")]).unwrap();
    a.write_if(&[observe("Plan", "step 2")], seen, &["Plan".into()]).unwrap();
    // Bob changes the plan: Alice's next write based on the old version is refused.
    b.write(&[observe("Plan", "bob's step")]).unwrap();
    let before = a.read_graph_as_of(None).unwrap().data;
    let err = a.write_if(&[observe("Plan", "step 3")], seen, &["Plan".into()]).unwrap_err();
    let Error::Conflict { changes, .. } = &err else { panic!("{err:?}") };
    assert!(changes.iter().any(|c| c.agent == "bob" && c.entity == "Plan"), "{changes:?}");
    assert!(changes.iter().all(|c| c.entity == "Plan"));
    assert_eq!(shape(&a.read_graph_as_of(None).unwrap().data), shape(&before), "nothing written");
    // Versions from another replica are refused, not misread.
    let c = open(dir.path(), "other.db", "carol");
    let foreign = c.read_graph().unwrap().version;
    assert!(matches!(a.write_if(&[], foreign, &[]), Err(Error::ForeignVersion(_))));
}

#[test]
fn reads_report_what_other_agents_changed_since_the_last_read() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "shared.db", "alice");
    let b = open(dir.path(), "shared.db", "bob");
    b.read_graph().unwrap();
    a.write(&[entity("Tea", "drink", &["hot"])]).unwrap();
    b.write(&[entity("Coffee", "drink", &[])]).unwrap();
    let read = b.read_graph().unwrap();
    assert_eq!(read.unseen.agents, ["alice"]);
    assert_eq!(read.unseen.entities, ["Tea"]);
    assert_eq!(read.unseen.count, 2, "the entity and its observation");
    // Reading moved the cursor.
    assert!(b.read_graph().unwrap().unseen.is_empty());
    // The cursor is persisted per agent: a new handle for bob continues from it.
    a.write(&[observe("Tea", "sweet")]).unwrap();
    drop(b);
    let b = open(dir.path(), "shared.db", "bob");
    assert_eq!(b.status().unwrap().unseen.entities, ["Tea"]);
    let since = b.changes_since(b.read_graph().unwrap().version, 100).unwrap();
    assert!(since.data.is_empty());
}

#[test]
fn the_index_always_equals_a_rebuild_from_the_documents() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice");
    let b = open(dir.path(), "b.db", "bob");
    a.write(&[entity("Tea", "drink", &["hot", "green"]), entity("Cup", "thing", &[]), relate("Tea", "in", "Cup")])
        .unwrap();
    merge(&a, &b);
    a.write(&[Op::delete_entity("Cup"), Op::set_entity_type("Tea", "x")]).unwrap();
    b.write(&[observe("Cup", "chipped"), Op::set_entity_type("Tea", "y")]).unwrap();
    merge(&a, &b);
    for r in [&a, &b] {
        let incremental = shape(&r.read_graph_as_of(None).unwrap().data);
        r.reindex().unwrap();
        assert_eq!(shape(&r.read_graph_as_of(None).unwrap().data), incremental);
    }
}

#[test]
fn compaction_keeps_data_history_and_sync() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice");
    for i in 0..50 {
        a.write(&[entity(&format!("e{i}"), "t", &["x"])]).unwrap();
    }
    let before = shape(&a.read_graph().unwrap().data);
    let heads = a.heads().unwrap();
    assert_eq!(a.compact().unwrap(), 33);
    assert_eq!(a.heads().unwrap(), heads);
    drop(a);
    let a = open(dir.path(), "a.db", "alice");
    assert_eq!(shape(&a.read_graph().unwrap().data), before);
    a.write(&[observe("e1", "after compaction")]).unwrap();
    let b = open(dir.path(), "b.db", "bob");
    merge(&a, &b);
    assert_eq!(texts(&b.read_graph().unwrap().data, "e1"), ["after compaction", "x"]);
    assert_eq!(b.history("e1").unwrap().data.len(), 3);
}

#[test]
fn word_starts_come_first_and_substrings_are_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice");
    a.write(&[
        entity("Teapot", "thing", &[]),
        entity("Instead", "word", &["contains tea in the middle"]),
        entity("Steam", "thing", &["from the kettle"]),
        entity("entity-1234", "id", &[]),
        entity("entity-12345", "id", &[]),
    ])
    .unwrap();
    let found = |q: &str| {
        let mut n: Vec<String> = names(&a.search(q).unwrap().data).into_iter().map(String::from).collect();
        n.sort();
        n
    };
    // "tea" starts a word in Teapot and in Instead's observation; Steam only holds it inside.
    assert_eq!(found("TEA"), ["Instead", "Teapot"]);
    // Nothing starts with "tea" and "kettle" both at once? Steam does ("kettle"), but "tea" is
    // only inside it: no entity matches both at a word start, so substrings answer.
    assert_eq!(found("tea kettle"), ["Steam"]);
    // Nothing starts with "eam": substrings answer.
    assert_eq!(found("eam"), ["Steam"]);
    // Names with `-` stay one word; a prefix finds the longer one too.
    assert_eq!(found("entity-1234"), ["entity-1234", "entity-12345"]);
    assert_eq!(found("entity-12345"), ["entity-12345"]);
    // A word is a run of letters and digits: punctuation around it does not hide it.
    a.write(&[
        entity("Standup", "meeting", &["ask @alice first.", "well-known issue"]),
        entity("Alice", "person", &[]),
        entity("Known Issues", "list", &["first draft"]),
    ])
    .unwrap();
    assert_eq!(found("alice"), ["Alice", "Standup"]);
    assert_eq!(found("known first"), ["Known Issues", "Standup"]);
    // A term with punctuation is looked up word by word and must start a word whole: "tea-pot"
    // starts one in "old tea-pot", not in "oldtea-pot" (which substrings would also return).
    a.write(&[entity("Kettle A", "thing", &["old tea-pot"]), entity("Kettle B", "thing", &["oldtea-pot"])]).unwrap();
    assert_eq!(found("Tea-Pot"), ["Kettle A"]);
    assert_eq!(found("ea-pot"), ["Kettle A", "Kettle B"]);
    // Terms the word index cannot hold as one word go to the substring stage.
    assert_eq!(found(r"kettle\"), Vec::<String>::new());
    assert_eq!(found("pot,"), Vec::<String>::new());
    assert_eq!(found("y-123"), ["entity-1234", "entity-12345"]);
}

#[test]
fn a_database_from_before_the_word_index_gains_it_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let a = open(dir.path(), "old.db", "alice");
        a.write(&[entity("Teapot", "thing", &[]), entity("Steam", "thing", &[])]).unwrap();
    }
    // Make it what migration 1 left: no word index (and none of migration 4's link columns).
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "DROP TABLE words; DROP INDEX observations_by_replaces; DROP INDEX relations_by_replaces;
         ALTER TABLE observations DROP COLUMN replaces; ALTER TABLE relations DROP COLUMN replaces;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(db);
    let a = open(dir.path(), "old.db", "alice");
    // The word index was built from the existing rows: "tea" starts a word only in Teapot (an
    // empty word index would have fallen back to substrings and found Steam too).
    assert_eq!(names(&a.search("tea").unwrap().data), ["Teapot"]);
    let version: i64 =
        rusqlite::Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 5, "migrated to the current version");
}

#[test]
fn opening_a_current_file_needs_no_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    drop(open(dir.path(), "busy.db", "alice"));
    // Another process holds the write lock (as a long import does, transaction after transaction).
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (done, opened) = std::sync::mpsc::channel();
    let where_ = dir.path().to_owned();
    let opener = std::thread::spawn(move || {
        let r = open(&where_, "busy.db", "bob");
        let entities = r.status().unwrap().entities;
        done.send(entities).unwrap();
    });
    // An open that queued for the lock would wait out its 30 s busy timeout.
    let entities = opened.recv_timeout(std::time::Duration::from_secs(10));
    other.execute_batch("ROLLBACK").unwrap();
    opener.join().unwrap();
    assert_eq!(entities, Ok(0), "the open waited for a write lock it does not need");
}

#[test]
fn common_terms_filter_while_rare_terms_rank() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice");
    // 2,100 entities share a common word: more than search ranks by.
    let ops: Vec<Op> = (0..2_000).map(|i| entity(&format!("item {i:04}"), "thing", &["a common word"])).collect();
    a.write(&ops).unwrap();
    let ops: Vec<Op> = (2_000..2_100).map(|i| entity(&format!("item {i:04}"), "thing", &["a common word"])).collect();
    a.write(&ops).unwrap();
    a.write(&[
        observe("item 0007", "zebra stripes"),
        observe("item 1234", "zebra crossing"),
        entity("Zebra Inc", "company", &[]),
        entity("Zebra Crossing Ltd", "company", &["uncommonly busy"]),
    ])
    .unwrap();
    let found = |q: &str| names(&a.search_limit(q, 50).unwrap().data).into_iter().map(String::from).collect::<Vec<_>>();
    // The rare term finds and ranks; the common one filters, at word starts as every term of
    // this stage does (Zebra Inc has no "common"; Zebra Crossing Ltd has it only inside a word).
    let mut both = found("common zebra");
    both.sort();
    assert_eq!(both, ["item 0007", "item 1234"]);
    // A common term alone: the most recently written matches, bounded by the limit.
    let newest = found("COMMON");
    assert_eq!(newest.len(), 50);
    assert!(newest.iter().all(|n| n.as_str() >= "item 2000"), "{newest:?}");
    // Short terms filter too, at word starts ("cr" starts "crossing" in two entities).
    let mut short = found("zebra cr");
    short.sort();
    assert_eq!(short, ["Zebra Crossing Ltd", "item 1234"]);
    // A limit of zero returns nothing.
    assert!(a.search_limit("zebra", 0).unwrap().data.entities.is_empty());
}

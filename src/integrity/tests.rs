//! One test per rule: a change that breaks it is refused naming it, and its honest neighbour
//! passes. Changes are built with Automerge directly, as another implementation would.

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{ActorId, Automerge, Change, ObjType, ROOT, ScalarValue};

use super::*;
use crate::names::{MAX_NAME_BYTES, MAX_TEXT_BYTES};
use crate::schema::{EntityRecord, FactRecord, MapKind, observation_key, relation_key, shard_of};

fn team() -> GraphName {
    "team".parse().unwrap()
}

/// The rules and genesis document of the shard `entity` lives in.
fn shard_of_entity(entity: &str) -> (DocRules, Automerge) {
    let docs = GraphDocs::of(&team());
    let rules = DocRules::new(&team(), docs.shard_for(entity)).unwrap();
    let doc = rules.genesis();
    (rules, doc)
}

/// The change `f` makes on a fork of `doc` under a fresh actor, with `message`.
fn change_with(doc: &Automerge, message: Option<&str>, f: impl FnOnce(&mut Transaction<'_>, &Layout)) -> Change {
    let mut fork = doc.fork().with_actor(ActorId::random());
    let layout = Layout::of(doc).expect("a shard");
    let mut tx = fork.transaction();
    f(&mut tx, &layout);
    let mut opts = CommitOptions::default().with_time(1_767_225_600_000);
    if let Some(m) = message {
        opts = opts.with_message(m.to_owned());
    }
    tx.commit_with(opts);
    fork.get_last_local_change().unwrap().clone()
}

fn change(doc: &Automerge, f: impl FnOnce(&mut Transaction<'_>, &Layout)) -> Change {
    change_with(doc, Some(r#"{"agent":"mallory"}"#), f)
}

fn entity_record(t: &str) -> String {
    EntityRecord { entity_type: t.into(), by: "alice".into(), at: 1, ..EntityRecord::default() }.to_json()
}

fn fact_record() -> String {
    FactRecord { by: "alice".into(), at: 1, ..FactRecord::default() }.to_json()
}

fn refused(rules: &DocRules, change: &Change) -> Rule {
    match rules.check(change) {
        Err(v) => {
            assert_eq!(v.change, change.hash());
            assert!(v.to_string().contains(&format!("rule \"{}\"", v.rule.id())), "{v}");
            v.rule
        }
        Ok(()) => panic!("accepted a change that breaks the schema"),
    }
}

#[test]
fn honest_writes_pass() {
    let (rules, doc) = shard_of_entity("Alice");
    let c = change(&doc, |tx, l| {
        tx.put(&l.entities, "Alice", entity_record("person")).unwrap();
        tx.put(&l.observations, observation_key("Alice", "likes tea\nand \u{1f} cake"), fact_record()).unwrap();
        tx.put(&l.relations, relation_key("Alice", "knows", "Bob"), fact_record()).unwrap();
        tx.delete(&l.observations, observation_key("Alice", "gone")).unwrap();
    });
    assert_eq!(rules.check(&c), Ok(()));
    let genesis = doc.get_changes(&[])[0].clone();
    assert_eq!(rules.check(&genesis), Ok(()), "the genesis itself passes");
}

#[test]
fn structure_breaking_changes_are_refused() {
    let (rules, doc) = shard_of_entity("Alice");
    let map_at_entities = change(&doc, |tx, _| drop(tx.put_object(ROOT, "entities", ObjType::Map).unwrap()));
    assert_eq!(refused(&rules, &map_at_entities), Rule::Root);
    let string_at_entities = change(&doc, |tx, _| tx.put(ROOT, "entities", "oops").unwrap());
    assert_eq!(refused(&rules, &string_at_entities), Rule::Root);
    let delete_maps = change(&doc, |tx, _| tx.delete(ROOT, "relations").unwrap());
    assert_eq!(refused(&rules, &delete_maps), Rule::Root);
    let text = change(&doc, |tx, l| drop(tx.put_object(&l.entities, "Alice", ObjType::Text).unwrap()));
    assert_eq!(refused(&rules, &text), Rule::Object);
    let nested = change(&doc, |tx, l| {
        let m = tx.put_object(&l.entities, "Alice", ObjType::Map).unwrap();
        tx.put(&m, "type", "person").unwrap();
    });
    assert_eq!(refused(&rules, &nested), Rule::Object);
    let counter = change(&doc, |tx, l| tx.put(&l.entities, "Alice", ScalarValue::counter(1)).unwrap());
    assert_eq!(refused(&rules, &counter), Rule::Value);
    let int = change(&doc, |tx, l| tx.put(&l.entities, "Alice", 7).unwrap());
    assert_eq!(refused(&rules, &int), Rule::Value);
}

#[test]
fn the_root_never_changes_after_genesis() {
    let docs = GraphDocs::of(&team());
    let rules = DocRules::new(&team(), docs.root).unwrap();
    let doc = rules.genesis();
    let mut fork = doc.fork().with_actor(ActorId::random());
    let mut tx = fork.transaction();
    tx.put(ROOT, "shard_count", 2).unwrap();
    tx.commit_with(CommitOptions::default().with_message(r#"{"agent":"mallory"}"#.to_owned()));
    let c = fork.get_last_local_change().unwrap().clone();
    assert_eq!(refused(&rules, &c), Rule::Root);
}

#[test]
fn keys_and_names_obey_the_limits_local_writes_obey() {
    let (rules, doc) = shard_of_entity("Alice");
    let put = |key: String| change(&doc, move |tx, l| tx.put(&l.entities, key, entity_record("person")).unwrap());
    for bad in ["Al\u{1f}ice".to_owned(), "x".repeat(MAX_NAME_BYTES + 1)] {
        let c = put(bad.clone());
        let rule = refused(&rules, &c);
        assert_eq!(rule, Rule::Key, "{:?}", bad.chars().take(10).collect::<String>());
    }
    let huge = change(&doc, |tx, l| {
        tx.put(&l.observations, observation_key("Alice", &"y".repeat(MAX_TEXT_BYTES + 1)), fact_record()).unwrap()
    });
    assert_eq!(refused(&rules, &huge), Rule::Key);
    // What the reference memory server stores, Cairn stores: empty names and texts, control
    // characters, long names.
    for name in ["", "Al\0ice", "Al\u{1b}[2Jice", "line\nbreak\ttab", &"名".repeat(1000)] {
        let (rules, doc) = shard_of_entity(name);
        let c = change(&doc, |tx, l| {
            tx.put(&l.entities, name, entity_record("")).unwrap();
            tx.put(&l.observations, observation_key(name, ""), fact_record()).unwrap();
            tx.put(&l.relations, relation_key(name, "", ""), fact_record()).unwrap();
        });
        assert_eq!(rules.check(&c), Ok(()), "{name:?}");
    }
    let two_parts = change(&doc, |tx, l| tx.put(&l.relations, "Alice\u{1f}knows", fact_record()).unwrap());
    assert_eq!(refused(&rules, &two_parts), Rule::Key);
    let no_sep = change(&doc, |tx, l| tx.put(&l.observations, "Alice", fact_record()).unwrap());
    assert_eq!(refused(&rules, &no_sep), Rule::Key);
}

#[test]
fn a_record_lives_in_the_shard_its_entity_hashes_to() {
    let (rules, doc) = shard_of_entity("Alice");
    assert_ne!(shard_of("Bob"), shard_of("Alice"));
    let c = change(&doc, |tx, l| tx.put(&l.entities, "Bob", entity_record("person")).unwrap());
    assert_eq!(refused(&rules, &c), Rule::Shard);
    // A relation lives with its `from` end, wherever `to` lives.
    let ok = change(&doc, |tx, l| tx.put(&l.relations, relation_key("Alice", "knows", "Bob"), fact_record()).unwrap());
    assert_eq!(rules.check(&ok), Ok(()));
    let c = change(&doc, |tx, l| tx.put(&l.relations, relation_key("Bob", "knows", "Alice"), fact_record()).unwrap());
    assert_eq!(refused(&rules, &c), Rule::Shard);
}

#[test]
fn records_are_the_documented_json() {
    let (rules, doc) = shard_of_entity("Alice");
    let entity = |r: &str| {
        let r = r.to_owned();
        change(&doc, move |tx, l| tx.put(&l.entities, "Alice", r).unwrap())
    };
    for bad in [
        "person",
        r#"{"type":7}"#,
        r#"{"by":"alice"}"#,
        r#"{"type":"a\u001fb"}"#,
        r#"{"type":"person","at":"noon"}"#,
        r#"{"type":"person","by":"a\u001bb"}"#,
    ] {
        assert_eq!(refused(&rules, &entity(bad)), Rule::Record, "{bad}");
    }
    let padded = format!(r#"{{"type":"person","pad":"{}"}}"#, "x".repeat(MAX_RECORD_BYTES));
    assert_eq!(refused(&rules, &entity(&padded)), Rule::Record);
    // What the reference memory server stores as a type is stored as it is.
    for ok in [r#"{"type":""}"#, r#"{"type":"line\nbreak\u0000"}"#] {
        assert_eq!(rules.check(&entity(ok)), Ok(()), "{ok}");
    }
    let longest = format!(r#"{{"type":"{}","by":"alice","at":1}}"#, "\\u0001".repeat(MAX_NAME_BYTES));
    assert_eq!(rules.check(&entity(&longest)), Ok(()), "the longest type, every byte escaped");
    assert_eq!(rules.check(&entity(r#"{"type":"person","later_field":[1,2]}"#)), Ok(()), "unknown fields pass");
    let fact = |r: &str| {
        let r = r.to_owned();
        change(&doc, move |tx, l| tx.put(&l.observations, observation_key("Alice", "x"), r).unwrap())
    };
    for bad in [r#"{"valid_from":5,"valid_to":5}"#, r#"{"n":-1}"#, r#"{"valid_to":"soon"}"#, "[]"] {
        assert_eq!(refused(&rules, &fact(bad)), Rule::Record, "{bad}");
    }
    assert_eq!(rules.check(&fact(r#"{"valid_from":5,"valid_to":6,"n":3}"#)), Ok(()));
    assert_eq!(rules.check(&fact("{}")), Ok(()), "every field of a fact record is optional");
}

#[test]
fn a_supersede_link_has_the_documented_shape() {
    let (rules, doc) = shard_of_entity("Alice");
    let at = |map: MapKind, r: &str| {
        let r = r.to_owned();
        change(&doc, move |tx, l| match map {
            MapKind::Observations => tx.put(&l.observations, observation_key("Alice", "new"), r).unwrap(),
            _ => tx.put(&l.relations, relation_key("Alice", "works_at", "Initech"), r).unwrap(),
        })
    };
    let obs = MapKind::Observations;
    let rel = MapKind::Relations;
    for (map, ok) in [
        (obs, r#"{"valid_from":5,"replaces":"works at Acme"}"#),
        (obs, r#"{"replaces":""}"#),
        (rel, r#"{"valid_from":5,"replaces":["Alice","works_at","Acme"]}"#),
        (rel, r#"{"replaces":["","",""]}"#),
    ] {
        assert_eq!(rules.check(&at(map, ok)), Ok(()), "{ok}");
    }
    for (map, bad) in [
        (obs, r#"{"replaces":7}"#),
        (obs, r#"{"replaces":["Alice","works_at","Acme"]}"#),
        (rel, r#"{"replaces":"works at Acme"}"#),
        (rel, r#"{"replaces":["Alice","works_at"]}"#),
        (rel, r#"{"replaces":["Alice","works_at","Acme","x"]}"#),
        (rel, r#"{"replaces":["Alice",1,"Acme"]}"#),
        (rel, r#"{"replaces":["Alice","a\u001fb","Acme"]}"#),
    ] {
        assert_eq!(refused(&rules, &at(map, bad)), Rule::Record, "{bad}");
    }
}

#[test]
fn every_change_names_a_valid_agent() {
    let (rules, doc) = shard_of_entity("Alice");
    let put = |tx: &mut Transaction<'_>, l: &Layout| tx.put(&l.entities, "Alice", entity_record("person")).unwrap();
    for bad in [None, Some("mallory"), Some(r#"{"agent":""}"#), Some("{\"agent\":\"a\\u001b[31m\"}")] {
        let c = change_with(&doc, bad, put);
        assert_eq!(refused(&rules, &c), Rule::Message, "{bad:?}");
    }
}

#[test]
fn genesis_cannot_be_forged() {
    let docs = GraphDocs::of(&team());
    let id = docs.shards[3];
    let rules = DocRules::new(&team(), id).unwrap();
    let real = rules.genesis();
    let genesis_actor = real.get_changes(&[])[0].actor_id().clone();
    // The genesis actor's sequence 1, with different operations.
    let mut forged = Automerge::new().with_actor(genesis_actor.clone());
    let mut tx = forged.transaction();
    tx.put(ROOT, "graph", "team").unwrap();
    tx.commit_with(CommitOptions::default().with_time(0));
    let forged = forged.get_changes(&[])[0].clone();
    assert_eq!(refused(&rules, &forged), Rule::Genesis);
    assert!(DocRules::from_genesis(id, &forged).is_none(), "a forged genesis teaches nothing");
    // Any later change under the genesis actor.
    let mut later = real.fork().with_actor(genesis_actor);
    let mut tx = later.transaction();
    let layout = Layout::of(&real).unwrap();
    tx.put(&layout.entities, "Alice", entity_record("person")).unwrap();
    tx.commit_with(CommitOptions::default().with_message(r#"{"agent":"x"}"#.to_owned()));
    let later = later.get_last_local_change().unwrap().clone();
    // (That entity does not live in shard 3 either, but genesis is checked first.)
    assert_eq!(refused(&rules, &later), Rule::Genesis);
    // A change with no dependencies under another actor.
    let mut orphan = Automerge::new().with_actor(ActorId::random());
    let mut tx = orphan.transaction();
    tx.put_object(ROOT, "entities", ObjType::Map).unwrap();
    tx.commit_with(CommitOptions::default().with_message(r#"{"agent":"x"}"#.to_owned()));
    assert_eq!(refused(&rules, &orphan.get_changes(&[])[0].clone()), Rule::Genesis);
}

#[test]
fn the_real_genesis_identifies_its_document() {
    let docs = GraphDocs::of(&team());
    for (id, kind) in docs.all() {
        let rules = DocRules::new(&team(), id).unwrap();
        let genesis = rules.genesis();
        let change = genesis.get_changes(&[])[0].clone();
        let learned = DocRules::from_genesis(id, &change).expect("identified");
        assert_eq!((learned.graph(), learned.kind()), (&team(), kind));
        assert_eq!(DocRules::of_document(id, &genesis).map(|r| r.kind()), Some(kind));
        // The right genesis for the wrong document teaches nothing.
        let other = if id == docs.root { docs.shards[0] } else { docs.root };
        assert!(DocRules::from_genesis(other, &change).is_none());
    }
    assert!(DocRules::new(&team(), GraphDocs::of(&"other".parse().unwrap()).root).is_none());
}

#[test]
fn sifting_takes_out_what_breaks_the_schema_and_what_builds_on_it() {
    let (rules, genesis) = shard_of_entity("Alice");
    let mut doc = genesis.fork().with_actor(ActorId::random());
    let layout = Layout::of(&genesis).unwrap();
    let commit = |doc: &mut Automerge, f: &dyn Fn(&mut Transaction<'_>)| {
        let mut tx = doc.transaction();
        f(&mut tx);
        tx.commit_with(CommitOptions::default().with_message(r#"{"agent":"a"}"#.to_owned()));
    };
    commit(&mut doc, &|tx| tx.put(&layout.entities, "Alice", entity_record("person")).unwrap());
    assert!(sift(rules.doc(), &doc).is_none(), "nothing to take out");
    let honest = doc.get_heads();
    // An older version stored a planted name holding the key separator, and then an honest write
    // on top of it.
    commit(&mut doc, &|tx| tx.put(&layout.entities, "Al\u{1f}ice", entity_record("x")).unwrap());
    commit(&mut doc, &|tx| tx.put(&layout.observations, observation_key("Alice", "later"), fact_record()).unwrap());
    let sifted = sift(rules.doc(), &doc).expect("something to take out");
    assert_eq!(sifted.doc.get_heads(), honest);
    let rules: Vec<Option<Rule>> = sifted.refused.iter().map(|r| r.rule).collect();
    assert_eq!(rules, [Some(Rule::Key), None]);
    assert!(sifted.refused[1].detail.contains("builds on"));
}

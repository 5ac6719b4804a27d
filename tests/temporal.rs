//! Facts that change over time (docs/temporal.md): supersede, current-by-default reads, as-of on
//! both clocks (world time and version), history, concurrent supersedes as conflicts, and all of
//! it after compaction and reopening. Real SQLite files; replicas merge through bundles.

mod common;

use cairn::{
    Error, FactRef, Graph, InvalidInput, Millis, Op, Outcome, ReadOptions, Relation, Replica, Validity, Version, What,
};
use common::*;

/// World times of the story: Alice joined Acme in 2020, Initech in 2022, Globex in 2024.
const Y2020: Millis = 1_577_836_800_000;
const Y2022: Millis = 1_640_995_200_000;
const Y2024: Millis = 1_704_067_200_000;
const DAY: Millis = 86_400_000;

fn as_of(t: Millis) -> ReadOptions {
    ReadOptions { as_of: Some(t), ..ReadOptions::default() }
}

fn everything() -> ReadOptions {
    ReadOptions { include_superseded: true, ..ReadOptions::default() }
}

fn targets(g: &Graph) -> Vec<String> {
    g.relations.iter().map(|r| format!("{}-{}->{}", r.relation.from, r.relation.relation_type, r.relation.to)).collect()
}

fn employer(text: &str) -> Op {
    Op::AddObservation {
        entity: "Alice".into(),
        text: text.into(),
        validity: Validity { valid_from: Some(Y2020), valid_to: None },
    }
}

fn works_at(company: &str) -> Relation {
    rel("Alice", "works_at", company)
}

/// Step 1 of most stories: Alice, three companies, and where she worked first (from 2020).
fn alice_at_acme(r: &Replica) {
    r.write(&[
        entity("Alice", "person", &["likes tea"]),
        entity("Acme", "company", &[]),
        entity("Initech", "company", &[]),
        entity("Globex", "company", &[]),
        employer("works at Acme"),
        Op::CreateRelation {
            relation: works_at("Acme"),
            validity: Validity { valid_from: Some(Y2020), valid_to: None },
        },
    ])
    .unwrap();
}

/// Alice's employer changes twice: the first change by `first`, the second by `second` (two
/// handles on one file, so history can tell who did what). Returns the version between them.
fn employer_changes_twice(first: &Replica, second: &Replica) -> Version {
    alice_at_acme(first);
    let between = first
        .write(&[
            Op::supersede_observation("Alice", "works at Acme", "works at Initech", Some(Y2022)),
            Op::supersede_relation(works_at("Acme"), works_at("Initech"), Some(Y2022)),
        ])
        .unwrap();
    assert_eq!(between.outcomes, [Outcome::Applied, Outcome::Applied]);
    second
        .write(&[
            Op::supersede_observation("Alice", "works at Initech", "works at Globex", Some(Y2024)),
            Op::supersede_relation(works_at("Initech"), works_at("Globex"), Some(Y2024)),
        ])
        .unwrap();
    between.version
}

/// Everything a reader can ask about the story, as one comparable value.
fn answers(r: &Replica, between: Version) -> Vec<String> {
    let mut out = Vec::new();
    for options in [
        ReadOptions::default(),
        as_of(Y2020 + DAY),
        as_of(Y2022 + DAY),
        as_of(Y2024 + DAY),
        as_of(Y2020 - DAY),
        everything(),
        ReadOptions { at_version: Some(between), ..ReadOptions::default() },
        ReadOptions { at_version: Some(between), as_of: Some(Y2020 + DAY), include_superseded: false },
    ] {
        let g = r.read_graph_with(&options).unwrap().data;
        out.push(format!("{options:?}: {:?} {:?} {:?}", texts(&g, "Alice"), targets(&g), g.left_out));
    }
    for c in r.history("Alice").unwrap().data {
        out.push(format!("{} {} {:?}", c.agent, c.at, c.what));
    }
    out
}

#[test]
fn alices_employer_changes_twice_and_each_clock_answers() {
    let dir = tempfile::tempdir().unwrap();
    let hr = open(dir.path(), "m.db", "hr@office");
    let payroll = open(dir.path(), "m.db", "payroll@office");
    let between = employer_changes_twice(&hr, &payroll);

    // Now: only the current employer, and the read says what it left out.
    let now = hr.read_graph().unwrap().data;
    assert_eq!(texts(&now, "Alice"), ["likes tea", "works at Globex"]);
    assert_eq!(targets(&now), ["Alice-works_at->Globex"]);
    assert_eq!(now.left_out.superseded, 4, "two observations and two relations: {:?}", now.left_out);
    assert_eq!(now.left_out.expired + now.left_out.not_yet_valid, 0);
    assert!(now.conflicts.is_empty());

    // World time: what was true then, at three times, and before anything was.
    for (t, job, company) in [
        (Y2020 + DAY, "works at Acme", "Acme"),
        (Y2022 + DAY, "works at Initech", "Initech"),
        (Y2024 + DAY, "works at Globex", "Globex"),
    ] {
        let g = hr.read_graph_with(&as_of(t)).unwrap().data;
        assert_eq!(texts(&g, "Alice"), ["likes tea", job], "as of {t}");
        assert_eq!(targets(&g), [format!("Alice-works_at->{company}")], "as of {t}");
    }
    let before = hr.read_graph_with(&as_of(Y2020 - DAY)).unwrap().data;
    assert_eq!(texts(&before, "Alice"), ["likes tea"]);
    assert_eq!(before.left_out.not_yet_valid, 6);

    // Everything, with its validity and the links between old and new.
    let all = hr.read_graph_with(&everything()).unwrap().data;
    let alice = all.entities.iter().find(|e| e.name == "Alice").unwrap();
    let chain: Vec<(&str, Validity, Option<&str>)> = alice
        .observations
        .iter()
        .filter(|o| o.text.starts_with("works at"))
        .map(|o| (o.text.as_str(), o.validity, o.replaces.as_deref()))
        .collect();
    assert_eq!(
        chain,
        [
            ("works at Acme", Validity { valid_from: Some(Y2020), valid_to: Some(Y2022) }, None),
            ("works at Initech", Validity { valid_from: Some(Y2022), valid_to: Some(Y2024) }, Some("works at Acme")),
            ("works at Globex", Validity { valid_from: Some(Y2024), valid_to: None }, Some("works at Initech")),
        ]
    );
    let globex = all.relations.iter().find(|r| r.relation == works_at("Globex")).unwrap();
    assert_eq!(globex.replaces, Some(works_at("Initech")));
    assert!(all.left_out.is_empty());

    // Version: what this replica knew between the two changes, alone and with a world time.
    let then = hr.read_graph_with(&ReadOptions { at_version: Some(between), ..ReadOptions::default() }).unwrap();
    assert_eq!(then.version, between, "the read names the version it answers for");
    assert_eq!(texts(&then.data, "Alice"), ["likes tea", "works at Initech"]);
    assert_eq!(targets(&then.data), ["Alice-works_at->Initech"]);
    let both = ReadOptions { at_version: Some(between), as_of: Some(Y2020 + DAY), include_superseded: false };
    assert_eq!(texts(&hr.read_graph_with(&both).unwrap().data, "Alice"), ["likes tea", "works at Acme"]);
    let found = hr.search_with("initech", 10, &ReadOptions { at_version: Some(between), ..ReadOptions::default() });
    assert_eq!(names(&found.unwrap().data), ["Alice", "Initech"]);
    let opened =
        hr.open_nodes_with(&["Alice".into()], &ReadOptions { at_version: Some(between), ..Default::default() });
    assert_eq!(targets(&opened.unwrap().data), ["Alice-works_at->Initech"]);

    // Search and open_nodes are current by default too.
    let found = hr.search("works").unwrap().data;
    assert_eq!(texts(&found, "Alice"), ["likes tea", "works at Globex"]);
    assert_eq!(found.left_out.superseded, 2 + 2);
    let opened = hr.open_nodes(&["Alice".into()]).unwrap().data;
    assert_eq!(targets(&opened), ["Alice-works_at->Globex"]);

    // History: all three, each supersede with its link, who wrote it and when. (A replacement
    // ended later is set again with its end, and its link: that event has a `valid_to`.)
    let history = hr.history("Alice").unwrap().data;
    let supersedes: Vec<(String, String, String)> = history
        .iter()
        .filter_map(|c| match &c.what {
            What::ObservationSet { text, replaces: Some(old), validity } if validity.valid_to.is_none() => {
                Some((c.agent.clone(), old.clone(), text.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        supersedes,
        [
            ("hr@office".into(), "works at Acme".into(), "works at Initech".into()),
            ("payroll@office".into(), "works at Initech".into(), "works at Globex".into()),
        ]
    );
    let relation_supersedes = history
        .iter()
        .filter(
            |c| matches!(&c.what, What::RelationSet { replaces: Some(_), validity, .. } if validity.valid_to.is_none()),
        )
        .count();
    assert_eq!(relation_supersedes, 2);
    let ended: Vec<&str> = history
        .iter()
        .filter_map(|c| match &c.what {
            What::ObservationSet { text, validity: Validity { valid_to: Some(_), .. }, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(ended, ["works at Acme", "works at Initech"]);
    assert!(history.iter().all(|c| c.at > Y2024), "recorded at the wall clock, not at world time");
    assert!(history.iter().any(|c| c.agent == "hr@office") && history.iter().any(|c| c.agent == "payroll@office"));
}

#[test]
fn two_agents_supersede_the_same_fact_apart_and_both_see_the_conflict_until_it_is_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice-agent");
    let b = open(dir.path(), "b.db", "bob-agent");
    alice_at_acme(&a);
    merge(&a, &b);

    // Step 1: apart, each agent learns of a different new employer.
    a.write(&[
        Op::supersede_observation("Alice", "works at Acme", "works at Initech", Some(Y2022)),
        Op::supersede_relation(works_at("Acme"), works_at("Initech"), Some(Y2022)),
    ])
    .unwrap();
    b.write(&[
        Op::supersede_observation("Alice", "works at Acme", "works at Globex", Some(Y2022 + DAY)),
        Op::supersede_relation(works_at("Acme"), works_at("Globex"), Some(Y2022 + DAY)),
    ])
    .unwrap();

    // Step 2: after sync, both replacements are kept, and every replica reports the conflict.
    merge(&a, &b);
    for replica in [&a, &b] {
        let g = replica.read_graph().unwrap().data;
        assert_eq!(texts(&g, "Alice"), ["likes tea", "works at Globex", "works at Initech"]);
        assert_eq!(targets(&g), ["Alice-works_at->Globex", "Alice-works_at->Initech"]);
        let replaced: Vec<&FactRef> = g.conflicts.iter().map(|c| &c.replaced).collect();
        assert_eq!(
            replaced,
            [
                &FactRef::Observation { entity: "Alice".into(), text: "works at Acme".into() },
                &FactRef::Relation { relation: works_at("Acme") },
            ]
        );
        let by: Vec<&str> = g.conflicts[0].replacements.iter().map(|r| r.by.as_str()).collect();
        assert_eq!(by.len(), 2);
        assert!(by.contains(&"alice-agent") && by.contains(&"bob-agent"), "{by:?}");
        assert_eq!(replica.status().unwrap().conflicts, g.conflicts, "status reports the same conflicts");
        let opened = replica.open_nodes(&["Alice".into()]).unwrap().data;
        assert_eq!(opened.conflicts, g.conflicts);
        let history = replica.history("Alice").unwrap().data;
        let links = history
            .iter()
            .filter(|c| matches!(&c.what, What::ObservationSet { replaces: Some(old), .. } if old == "works at Acme"))
            .count();
        assert_eq!(links, 2, "both supersedes are in history");
    }
    // Superseding the forked fact again would fork it further: refused, with what to do.
    let again = a.write(&[Op::supersede_observation("Alice", "works at Acme", "works at Hooli", None)]);
    assert!(matches!(again, Err(Error::AlreadySuperseded { .. })), "{again:?}");

    // Step 3: Bob settles it: Globex was wrong, Initech is right. One supersede each resolves it.
    b.write(&[
        Op::supersede_observation("Alice", "works at Globex", "works at Initech", Some(Y2022 + 2 * DAY)),
        Op::supersede_relation(works_at("Globex"), works_at("Initech"), Some(Y2022 + 2 * DAY)),
    ])
    .unwrap();
    merge(&a, &b);
    for replica in [&a, &b] {
        let g = replica.read_graph().unwrap().data;
        assert_eq!(texts(&g, "Alice"), ["likes tea", "works at Initech"]);
        assert_eq!(targets(&g), ["Alice-works_at->Initech"]);
        assert!(g.conflicts.is_empty(), "{:?}", g.conflicts);
        assert!(replica.status().unwrap().conflicts.is_empty());
        // While both held (the day between), the past still shows the conflict.
        let then = replica.read_graph_with(&as_of(Y2022 + DAY + 1)).unwrap().data;
        assert_eq!(then.conflicts.len(), 2);
    }
}

#[test]
fn a_late_fact_with_an_older_valid_from_is_history_and_does_not_displace_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice-agent");
    let b = open(dir.path(), "b.db", "bob-agent");
    a.write(&[
        entity("Alice", "person", &[]),
        entity("Acme", "company", &[]),
        entity("Initech", "company", &[]),
        Op::AddObservation {
            entity: "Alice".into(),
            text: "works at Initech".into(),
            validity: Validity { valid_from: Some(Y2024), valid_to: None },
        },
    ])
    .unwrap();
    merge(&a, &b);
    // Bob, offline, learns of a job change he dates before the current fact began.
    b.write(&[Op::supersede_observation("Alice", "works at Initech", "works at Acme", Some(Y2022))]).unwrap();
    merge(&a, &b);
    for replica in [&a, &b] {
        let now = replica.read_graph().unwrap().data;
        assert_eq!(texts(&now, "Alice"), ["works at Initech"], "the newer fact stays current");
        assert_eq!(now.left_out.superseded + now.left_out.expired, 1);
        let then = replica.read_graph_with(&as_of(Y2022 + DAY)).unwrap().data;
        assert_eq!(texts(&then, "Alice"), ["works at Acme"], "the late fact is history");
        let all = replica.read_graph_with(&everything()).unwrap().data;
        let validity: Vec<(&str, Validity)> =
            all.entities[1].observations.iter().map(|o| (o.text.as_str(), o.validity)).collect();
        assert_eq!(
            validity,
            [
                ("works at Initech", Validity { valid_from: Some(Y2024), valid_to: None }),
                ("works at Acme", Validity { valid_from: Some(Y2022), valid_to: Some(Y2024) }),
            ],
            "in the order written; Initech untouched"
        );
        assert!(all.conflicts.is_empty());
    }
}

#[test]
fn a_supersede_retires_exactly_the_fact_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice-agent");
    a.write(&[
        entity("Alice", "person", &["works at Acme", "works at Acme (part time)", "likes tea"]),
        entity("Bob", "person", &["works at Acme"]),
        entity("Acme", "company", &[]),
        entity("Initech", "company", &[]),
        relate("Alice", "works_at", "Acme"),
        relate("Bob", "works_at", "Acme"),
        relate("Alice", "knows", "Bob"),
    ])
    .unwrap();
    let before = a.read_graph().unwrap().data;
    a.write(&[
        Op::supersede_observation("Alice", "works at Acme", "works at Initech", None),
        Op::supersede_relation(works_at("Acme"), works_at("Initech"), None),
    ])
    .unwrap();
    let after = a.read_graph_with(&everything()).unwrap().data;
    // Every fact but the two named is exactly as it was, validity included.
    for e in &before.entities {
        for o in &e.observations {
            let now = after.entities.iter().find(|x| x.name == e.name).unwrap();
            let same = now.observations.iter().find(|x| x.text == o.text).unwrap();
            if (e.name.as_str(), o.text.as_str()) == ("Alice", "works at Acme") {
                assert!(same.validity.valid_to.is_some());
            } else {
                assert_eq!(same, o, "{} / {}", e.name, o.text);
            }
        }
    }
    for r in &before.relations {
        let same = after.relations.iter().find(|x| x.relation == r.relation).unwrap();
        if r.relation == works_at("Acme") {
            assert!(same.validity.valid_to.is_some());
        } else {
            assert_eq!(same, r);
        }
    }
    let now = a.read_graph().unwrap().data;
    assert_eq!(texts(&now, "Bob"), ["works at Acme"]);
    assert_eq!(now.left_out.superseded, 2);
}

#[test]
fn history_and_both_clocks_answer_the_same_after_compaction_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let between = {
        let hr = open(dir.path(), "m.db", "hr@office");
        let payroll = open(dir.path(), "m.db", "payroll@office");
        employer_changes_twice(&hr, &payroll)
    };
    let first = answers(&open(dir.path(), "m.db", "reader"), between);
    let compacting = open(dir.path(), "m.db", "reader");
    assert!(compacting.compact().unwrap() > 0);
    assert_eq!(answers(&compacting, between), first, "after compaction");
    compacting.reindex().unwrap();
    assert_eq!(answers(&compacting, between), first, "after a reindex");
    drop(compacting);
    assert_eq!(answers(&open(dir.path(), "m.db", "reader"), between), first, "after reopening");
    // And a replica that received it all through a bundle answers the same for the world clock.
    let other = open(dir.path(), "other.db", "reader");
    merge(&open(dir.path(), "m.db", "reader"), &other);
    let g = other.read_graph_with(&as_of(Y2022 + DAY)).unwrap().data;
    assert_eq!(texts(&g, "Alice"), ["likes tea", "works at Initech"]);
}

#[test]
fn what_a_supersede_cannot_do_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a.db", "alice-agent");
    alice_at_acme(&a);
    let before = a.read_graph_with(&everything()).unwrap().data;
    let itself = a.write(&[Op::supersede_observation("Alice", "works at Acme", "works at Acme", None)]);
    assert!(matches!(itself, Err(Error::Invalid(InvalidInput::ReplacesItself { .. }))), "{itself:?}");
    let same_relation = a.write(&[Op::supersede_relation(works_at("Acme"), works_at("Acme"), None)]);
    assert!(matches!(same_relation, Err(Error::Invalid(InvalidInput::ReplacesItself { .. }))));
    let nobody = a.write(&[Op::supersede_observation("Nobody", "x", "y", None)]);
    assert!(matches!(nobody, Err(Error::EntityNotFound(n)) if n == "Nobody"));
    let nowhere = a.write(&[Op::supersede_relation(works_at("Acme"), works_at("Nowhere"), None)]);
    assert!(matches!(nowhere, Err(Error::EntityNotFound(n)) if n == "Nowhere"));
    // The same instant the old fact began: it would hold for no time at all.
    let empty = a.write(&[Op::supersede_observation("Alice", "works at Acme", "works at Initech", Some(Y2020))]);
    assert!(matches!(empty, Err(Error::Invalid(InvalidInput::EmptyValidity { .. }))), "{empty:?}");
    // A batch that supersedes the same fact twice is refused whole.
    let twice = a.write(&[
        Op::supersede_observation("Alice", "works at Acme", "works at Initech", None),
        Op::supersede_observation("Alice", "works at Acme", "works at Globex", None),
    ]);
    assert!(matches!(twice, Err(Error::AlreadySuperseded { .. })), "{twice:?}");
    assert_eq!(a.read_graph_with(&everything()).unwrap().data, before, "nothing was written");
    // A fact that is not there: reported, not an error.
    let missing = a.write(&[Op::supersede_observation("Alice", "works at Hooli", "works at Initech", None)]).unwrap();
    assert_eq!(missing.outcomes, [Outcome::NotFound]);
    // Versions from elsewhere or from the future are refused by name.
    let b = open(dir.path(), "b.db", "bob-agent");
    let foreign = ReadOptions { at_version: Some(b.read_graph().unwrap().version), ..ReadOptions::default() };
    assert!(matches!(a.read_graph_with(&foreign), Err(Error::ForeignVersion(_))));
    let ahead: Version = format!("v999999.{}", a.read_graph().unwrap().version.replica()).parse().unwrap();
    let ahead = ReadOptions { at_version: Some(ahead), ..ReadOptions::default() };
    assert!(matches!(a.read_graph_with(&ahead), Err(Error::UnknownVersion(..))));
}

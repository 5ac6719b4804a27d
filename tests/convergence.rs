//! Property test: replicas applying random operations and merging in random orders converge to
//! identical graphs, and the graph equals a small reference model of the documented semantics
//! (an observed-remove map per key, where a write replaces and a delete removes exactly the
//! values the writer had seen).
//!
//! Seeds are fixed so failures reproduce; set `CAIRN_SEED` to explore others and
//! `CAIRN_CASES` to run more cases.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use cairn::{Op, Replica};
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

const REPLICAS: usize = 3;
const NAMES: [&str; 3] = ["a", "b", "c"];
const TYPES: [&str; 2] = ["t1", "t2"];
const TEXTS: [&str; 2] = ["x", "y"];

#[derive(Debug, Clone)]
enum Action {
    Create(usize, usize, usize, bool),
    SetType(usize, usize),
    Observe(usize, usize),
    Relate(usize, usize),
    DeleteEntity(usize),
    DeleteObservation(usize, usize),
    DeleteRelation(usize, usize),
    /// `to` imports every change `from` has.
    Merge {
        from: usize,
        to: usize,
    },
    /// Several operations in one atomic write.
    Batch(Vec<Action>),
}

fn action() -> impl Strategy<Value = (usize, Action)> {
    let n = 0..NAMES.len();
    let who = 0..REPLICAS;
    let single = prop_oneof![
        3 => (n.clone(), 0..TYPES.len(), 0..TEXTS.len(), any::<bool>()).prop_map(|(a, b, c, d)| Action::Create(a, b, c, d)),
        1 => (n.clone(), 0..TYPES.len()).prop_map(|(a, b)| Action::SetType(a, b)),
        2 => (n.clone(), 0..TEXTS.len()).prop_map(|(a, b)| Action::Observe(a, b)),
        2 => (n.clone(), n.clone()).prop_map(|(a, b)| Action::Relate(a, b)),
        1 => n.clone().prop_map(Action::DeleteEntity),
        1 => (n.clone(), 0..TEXTS.len()).prop_map(|(a, b)| Action::DeleteObservation(a, b)),
        1 => (n.clone(), n.clone()).prop_map(|(a, b)| Action::DeleteRelation(a, b)),
    ];
    let act = prop_oneof![
        6 => single.clone(),
        1 => proptest::collection::vec(single, 2..5).prop_map(Action::Batch),
        2 => (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Action::Merge { from, to }),
    ];
    (who, act)
}

// ---------------------------------------------------------------------------------------------
// The reference model.

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Entity(usize),
    Observation(usize, usize),
    Relation(usize, usize),
}

#[derive(Debug, Clone)]
struct ModelOp {
    key: Key,
    /// `Some(type index)` for an entity put, `Some(0)` for a fact put, `None` for a delete.
    value: Option<usize>,
    /// The puts this op overwrote or deleted: the ones live in its writer's view.
    kills: BTreeSet<usize>,
}

/// An entity as the model expects it: the live candidate types and the observations.
type Expected = (BTreeSet<&'static str>, Vec<&'static str>);

#[derive(Default, Clone)]
struct Model {
    ops: Vec<ModelOp>,
    known: [BTreeSet<usize>; REPLICAS],
}

impl Model {
    /// Live puts on `key` as seen with knowledge `known`.
    fn live(&self, known: &BTreeSet<usize>, key: &Key) -> BTreeSet<usize> {
        let puts: BTreeSet<usize> =
            known.iter().copied().filter(|&i| self.ops[i].key == *key && self.ops[i].value.is_some()).collect();
        let killed: BTreeSet<usize> = known.iter().flat_map(|&i| self.ops[i].kills.iter().copied()).collect();
        puts.difference(&killed).copied().collect()
    }

    fn present(&self, r: usize, key: &Key) -> bool {
        !self.live(&self.known[r], key).is_empty()
    }

    fn exists(&self, r: usize, n: usize) -> bool {
        self.present(r, &Key::Entity(n))
            || (0..TEXTS.len()).any(|t| self.present(r, &Key::Observation(n, t)))
            || (0..NAMES.len()).any(|m| self.present(r, &Key::Relation(n, m)))
    }

    fn write(&mut self, r: usize, key: Key, value: Option<usize>) {
        let kills = self.live(&self.known[r], &key);
        self.ops.push(ModelOp { key, value, kills });
        let id = self.ops.len() - 1;
        self.known[r].insert(id);
    }

    /// Mirrors the replica's planning rules, on replica `r`'s view. Returns false where the
    /// replica refuses the operation (an entity it needs does not exist).
    fn apply(&mut self, r: usize, action: &Action) -> bool {
        match action {
            Action::Batch(actions) => {
                // All or nothing, each operation seeing the ones before it.
                let mut trial = self.clone();
                if actions.iter().all(|a| trial.apply(r, a)) {
                    *self = trial;
                }
                return true;
            }
            Action::SetType(n, _) | Action::Observe(n, _) if !self.exists(r, *n) => return false,
            Action::Relate(a, b) if !self.exists(r, *a) || !self.exists(r, *b) => return false,
            _ => {}
        }
        match *action {
            Action::Create(n, t, x, with_obs) => {
                if !self.present(r, &Key::Entity(n)) {
                    self.write(r, Key::Entity(n), Some(t));
                    if with_obs && !self.present(r, &Key::Observation(n, x)) {
                        self.write(r, Key::Observation(n, x), Some(0));
                    }
                }
            }
            Action::SetType(n, t) => {
                if self.exists(r, n) {
                    self.write(r, Key::Entity(n), Some(t));
                }
            }
            Action::Observe(n, x) => {
                if self.exists(r, n) && !self.present(r, &Key::Observation(n, x)) {
                    self.write(r, Key::Observation(n, x), Some(0));
                }
            }
            Action::Relate(a, b) => {
                if self.exists(r, a) && self.exists(r, b) && !self.present(r, &Key::Relation(a, b)) {
                    self.write(r, Key::Relation(a, b), Some(0));
                }
            }
            Action::DeleteEntity(n) => {
                if self.exists(r, n) {
                    let mut keys = vec![Key::Entity(n)];
                    keys.extend((0..TEXTS.len()).map(|t| Key::Observation(n, t)));
                    for m in 0..NAMES.len() {
                        keys.push(Key::Relation(n, m));
                        keys.push(Key::Relation(m, n));
                    }
                    keys.sort();
                    keys.dedup();
                    for k in keys {
                        if self.present(r, &k) {
                            self.write(r, k, None);
                        }
                    }
                }
            }
            Action::DeleteObservation(n, x) => {
                if self.present(r, &Key::Observation(n, x)) {
                    self.write(r, Key::Observation(n, x), None);
                }
            }
            Action::DeleteRelation(a, b) => {
                if self.present(r, &Key::Relation(a, b)) {
                    self.write(r, Key::Relation(a, b), None);
                }
            }
            Action::Merge { from, to } => {
                let theirs = self.known[from].clone();
                self.known[to].extend(theirs);
            }
            Action::Batch(_) => unreachable!("handled above"),
        }
        true
    }

    /// The graph everyone should converge to, in the shape of `common::shape` except that an
    /// entity's type is given as the set of live candidate types.
    fn expected(&self) -> (BTreeMap<String, Expected>, Vec<String>) {
        let all: BTreeSet<usize> = (0..self.ops.len()).collect();
        let mut entities = BTreeMap::new();
        let mut relations = Vec::new();
        for (n, name) in NAMES.iter().enumerate() {
            let types: BTreeSet<&str> =
                self.live(&all, &Key::Entity(n)).iter().filter_map(|&i| self.ops[i].value).map(|t| TYPES[t]).collect();
            let obs: Vec<&str> = (0..TEXTS.len())
                .filter(|&t| !self.live(&all, &Key::Observation(n, t)).is_empty())
                .map(|t| TEXTS[t])
                .collect();
            let outgoing = (0..NAMES.len()).any(|m| !self.live(&all, &Key::Relation(n, m)).is_empty());
            if !types.is_empty() || !obs.is_empty() || outgoing {
                entities.insert(name.to_string(), (types, obs));
            }
            for (m, other) in NAMES.iter().enumerate() {
                if !self.live(&all, &Key::Relation(n, m)).is_empty() {
                    relations.push(format!("{name}-r->{other}"));
                }
            }
        }
        (entities, relations)
    }
}

// ---------------------------------------------------------------------------------------------
// The real replicas.

fn to_ops(action: &Action) -> Option<Vec<Op>> {
    match action {
        Action::Batch(actions) => Some(actions.iter().filter_map(to_ops).flatten().collect()),
        Action::Merge { .. } => None,
        single => to_op(single).map(|op| vec![op]),
    }
}

fn to_op(action: &Action) -> Option<Op> {
    Some(match *action {
        Action::Create(n, t, x, obs) => entity(NAMES[n], TYPES[t], if obs { &TEXTS[x..=x] } else { &[] }),
        Action::SetType(n, t) => Op::set_entity_type(NAMES[n], TYPES[t]),
        Action::Observe(n, x) => observe(NAMES[n], TEXTS[x]),
        Action::Relate(a, b) => relate(NAMES[a], "r", NAMES[b]),
        Action::DeleteEntity(n) => Op::delete_entity(NAMES[n]),
        Action::DeleteObservation(n, x) => Op::delete_observation(NAMES[n], TEXTS[x]),
        Action::DeleteRelation(a, b) => Op::delete_relation(NAMES[a], "r", NAMES[b]),
        Action::Merge { .. } | Action::Batch(_) => return None,
    })
}

fn run_case(actions: &[(usize, Action)]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let replicas: Vec<Replica> =
        (0..REPLICAS).map(|i| open(dir.path(), &format!("r{i}.db"), &format!("agent{i}"))).collect();
    let mut model = Model::default();
    for (who, action) in actions {
        match (to_ops(action), action) {
            (Some(ops), _) => match replicas[*who].write(&ops) {
                Ok(_) | Err(cairn::Error::EntityNotFound(_)) => {}
                Err(e) => return Err(TestCaseError::fail(format!("write failed: {e}"))),
            },
            (None, Action::Merge { from, to }) if from != to => {
                let bundle = replicas[*from].export_since(&replicas[*to].heads().unwrap()).unwrap();
                replicas[*to].import(&bundle).unwrap();
            }
            _ => {}
        }
        model.apply(*who, action);
    }
    // Deliver everything everywhere.
    for _ in 0..2 {
        for from in 0..REPLICAS {
            for to in 0..REPLICAS {
                if from != to {
                    let bundle = replicas[from].export_since(&replicas[to].heads().unwrap()).unwrap();
                    replicas[to].import(&bundle).unwrap();
                }
            }
        }
    }
    let graphs: Vec<_> = replicas.iter().map(|r| r.read_graph_as_of(None).unwrap().data).collect();
    for g in &graphs[1..] {
        prop_assert_eq!(shape(g), shape(&graphs[0]), "replicas diverged");
    }
    let (expected_entities, expected_relations) = model.expected();
    let g = &graphs[0];
    prop_assert_eq!(names(g), expected_entities.keys().map(String::as_str).collect::<Vec<_>>());
    for e in &g.entities {
        let (types, obs) = &expected_entities[&e.name];
        prop_assert_eq!(&texts(g, &e.name), obs, "observations of {}", e.name);
        if types.is_empty() {
            prop_assert_eq!(&e.entity_type, "");
        } else {
            prop_assert!(
                types.contains(e.entity_type.as_str()),
                "{} type {} not in {:?}",
                e.name,
                e.entity_type,
                types
            );
            let mut reported: BTreeSet<&str> = e.conflicts.iter().map(|c| c.entity_type.as_str()).collect();
            reported.insert(e.entity_type.as_str());
            prop_assert_eq!(&reported, types, "conflicts of {}", e.name);
        }
    }
    let relations: Vec<String> = g
        .relations
        .iter()
        .map(|r| format!("{}-{}->{}", r.relation.from, r.relation.relation_type, r.relation.to))
        .collect();
    prop_assert_eq!(relations, expected_relations);
    // The incrementally maintained index equals a rebuild.
    replicas[0].reindex().unwrap();
    prop_assert_eq!(shape(&replicas[0].read_graph_as_of(None).unwrap().data), shape(g));
    Ok(())
}

#[test]
fn replicas_converge_to_the_reference_model() {
    let seed = std::env::var("CAIRN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x00ca_1124);
    let cases = std::env::var("CAIRN_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(48);
    let config = Config { cases, rng_seed: RngSeed::Fixed(seed), failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let strategy = proptest::collection::vec(action(), 1..40);
    runner.run(&strategy, |actions| run_case(&actions)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
}

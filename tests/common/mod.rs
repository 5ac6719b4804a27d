//! Helpers shared by the integration tests: short constructors for operations and replicas.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::path::Path;

use cairn::{Durability, Graph, Op, OpenOptions, Relation, Replica};

pub fn open(dir: &Path, file: &str, agent: &str) -> Replica {
    let options = OpenOptions::new(agent.parse().unwrap()).durability(Durability::Normal);
    Replica::open_with(dir.join(file), options).unwrap()
}

/// Creates entity `name` of type `entity_type` with these observations (the same helper, with the
/// same signature, as in `sync-server/tests/common`).
pub fn entity(name: &str, entity_type: &str, observations: &[&str]) -> Op {
    Op::create_entity(name, entity_type, observations)
}

/// Adds observation `text` to `entity`.
pub fn observe(entity: &str, text: &str) -> Op {
    Op::add_observation(entity, text)
}

/// The relation `(from, ty, to)` itself, as reads return it.
pub fn rel(from: &str, ty: &str, to: &str) -> Relation {
    Relation::new(from, ty, to)
}

/// Creates the relation `(from, ty, to)`.
pub fn relate(from: &str, ty: &str, to: &str) -> Op {
    Op::create_relation(from, ty, to)
}

/// Exchanges everything both ways between two replicas, through bundles.
pub fn merge(a: &Replica, b: &Replica) {
    b.import(&a.export_since(&b.heads().unwrap()).unwrap()).unwrap();
    a.import(&b.export_since(&a.heads().unwrap()).unwrap()).unwrap();
}

/// The graph with per-replica metadata normalised away, for comparing replicas.
pub fn shape(g: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    for e in &g.entities {
        let mut obs: Vec<&str> = e.observations.iter().map(|o| o.text.as_str()).collect();
        obs.sort();
        let mut conflicts: Vec<&str> = e.conflicts.iter().map(|c| c.entity_type.as_str()).collect();
        conflicts.sort();
        out.push(format!("{}:{}:{:?}:{:?}", e.name, e.entity_type, obs, conflicts));
    }
    for r in &g.relations {
        out.push(format!("{}-{}->{}", r.relation.from, r.relation.relation_type, r.relation.to));
    }
    out
}

pub fn names(g: &Graph) -> Vec<&str> {
    g.entities.iter().map(|e| e.name.as_str()).collect()
}

pub fn texts<'a>(g: &'a Graph, entity: &str) -> Vec<&'a str> {
    let mut t: Vec<&str> = g
        .entities
        .iter()
        .find(|e| e.name == entity)
        .map(|e| e.observations.iter().map(|o| o.text.as_str()).collect())
        .unwrap_or_default();
    t.sort();
    t
}

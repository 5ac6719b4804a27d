//! Helpers shared by the integration tests: short constructors for operations and replicas.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::path::Path;

use cairn::{Durability, Graph, Op, OpenOptions, Relation, Replica, Validity};

pub fn open(dir: &Path, file: &str, agent: &str) -> Replica {
    let options = OpenOptions::new(agent.parse().unwrap()).durability(Durability::Normal);
    Replica::open_with(dir.join(file), options).unwrap()
}

pub fn entity(name: &str, ty: &str, obs: &[&str]) -> Op {
    Op::CreateEntity {
        name: name.into(),
        entity_type: ty.into(),
        observations: obs.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn observe(entity: &str, text: &str) -> Op {
    Op::AddObservation { entity: entity.into(), text: text.into(), validity: Validity::default() }
}

pub fn rel(from: &str, ty: &str, to: &str) -> Relation {
    Relation { from: from.into(), relation_type: ty.into(), to: to.into() }
}

pub fn relate(from: &str, ty: &str, to: &str) -> Op {
    Op::CreateRelation { relation: rel(from, ty, to), validity: Validity::default() }
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

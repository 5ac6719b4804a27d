//! The graph as this replica held it at an earlier version (`at_version`): the documents read
//! at the heads that version names, through Automerge's historical reads (`keys_at`,
//! `get_all_at`), not through the index, which only knows the present.
//!
//! A version is a log position, and every prefix of the log is causally closed, so the heads of
//! each document as of that position are a state the replica really held. Compaction keeps
//! every change inside its snapshots (and every log row), so the same version answers the same
//! after a compaction or a reopen.

use std::collections::BTreeMap;

use automerge::{Automerge, ChangeHash, ReadDoc, ScalarValue, Value};

use crate::error::{Error, Result};
use crate::ids::LogPosition;
use crate::model::{Entity, Graph, Observation, Relation, RelationFact, TypeConflict, Validity};
use crate::schema::{self, FactRecord, GraphDocs, Layout, split_observation_key, split_relation_key};
use crate::store::Txn;

/// Every entity and fact present at log position `seq`, whatever its validity (the caller
/// sieves them), in the order the index reads them.
pub(crate) fn graph_at(tx: &mut Txn<'_>, docs: &GraphDocs, seq: LogPosition) -> Result<Graph> {
    let mut entities: BTreeMap<String, Entity> = BTreeMap::new();
    let mut observations: Vec<(String, u32, Observation)> = Vec::new();
    let mut relations: BTreeMap<Relation, RelationFact> = BTreeMap::new();
    for id in &docs.shards {
        let heads = tx.heads_at(id, seq)?;
        if heads.is_empty() {
            continue;
        }
        let cached = tx.existing(*id)?;
        let layout = cached.layout.as_ref().ok_or_else(|| Error::CorruptStore {
            doc: id.to_string(),
            reason: "the document is not a Cairn shard".into(),
        })?;
        read_shard(&cached.doc, layout, &heads, &mut entities, &mut observations, &mut relations);
    }
    // Observations keep their entity alive (as the index does): one concurrently added to a
    // deleted entity still shows it, with no type.
    for (entity, _, _) in &observations {
        entities.entry(entity.clone()).or_insert_with(|| bare(entity));
    }
    for r in relations.values() {
        entities.entry(r.relation.from.clone()).or_insert_with(|| bare(&r.relation.from));
    }
    observations.sort_by(|(ea, na, a), (eb, nb, b)| (ea, a.at, na, &a.text).cmp(&(eb, b.at, nb, &b.text)));
    for (entity, _, o) in observations {
        if let Some(e) = entities.get_mut(&entity) {
            e.observations.push(o);
        }
    }
    Ok(Graph {
        entities: entities.into_values().collect(),
        relations: relations.into_values().collect(),
        ..Graph::default()
    })
}

fn bare(name: &str) -> Entity {
    Entity {
        name: name.to_owned(),
        entity_type: String::new(),
        observations: Vec::new(),
        created_by: String::new(),
        created_at: 0,
        conflicts: Vec::new(),
    }
}

fn read_shard(
    doc: &Automerge,
    layout: &Layout,
    heads: &[ChangeHash],
    entities: &mut BTreeMap<String, Entity>,
    observations: &mut Vec<(String, u32, Observation)>,
    relations: &mut BTreeMap<Relation, RelationFact>,
) {
    for name in doc.keys_at(&layout.entities, heads) {
        let records = schema::entity_records_at(doc, layout, &name, Some(heads));
        let Some(winner) = records.first() else { continue };
        let mut conflicts: Vec<TypeConflict> = Vec::new();
        for r in records.iter().skip(1) {
            if r.entity_type != winner.entity_type && !conflicts.iter().any(|c| c.entity_type == r.entity_type) {
                let by = if r.written_by.is_empty() { r.by.clone() } else { r.written_by.clone() };
                conflicts.push(TypeConflict { entity_type: r.entity_type.clone(), by });
            }
        }
        entities.insert(
            name.clone(),
            Entity {
                name,
                entity_type: winner.entity_type.clone(),
                observations: Vec::new(),
                created_by: winner.by.clone(),
                created_at: winner.at,
                conflicts,
            },
        );
    }
    for key in doc.keys_at(&layout.observations, heads) {
        let Some((entity, text)) = split_observation_key(&key) else { continue };
        let r = fact_at(doc, &layout.observations, &key, heads);
        let o = Observation {
            text: text.to_owned(),
            by: r.by,
            at: r.at,
            validity: Validity { valid_from: r.valid_from, valid_to: r.valid_to },
            replaces: r.replaces.as_ref().and_then(schema::Link::text).map(str::to_owned),
        };
        observations.push((entity.to_owned(), r.n, o));
    }
    for key in doc.keys_at(&layout.relations, heads) {
        let Some((from, relation_type, to)) = split_relation_key(&key) else { continue };
        let r = fact_at(doc, &layout.relations, &key, heads);
        let relation = Relation::new(from, relation_type, to);
        relations.insert(
            relation.clone(),
            RelationFact {
                relation,
                by: r.by,
                at: r.at,
                validity: Validity { valid_from: r.valid_from, valid_to: r.valid_to },
                replaces: r.replaces.as_ref().and_then(schema::Link::relation),
            },
        );
    }
}

/// The winning record at `map[key]` as of `heads`; anything but a record string reads as a
/// fact with no metadata (the schema check keeps those out).
fn fact_at(doc: &Automerge, map: &automerge::ObjId, key: &str, heads: &[ChangeHash]) -> FactRecord {
    match doc.get_at(map, key, heads).ok().flatten() {
        Some((Value::Scalar(v), _)) => match v.as_ref() {
            ScalarValue::Str(s) => FactRecord::parse(s),
            _ => FactRecord::default(),
        },
        _ => FactRecord::default(),
    }
}

/// The entities named (unknown names skipped) and the relations touching them.
pub(crate) fn named(mut graph: Graph, names: &[String]) -> Graph {
    let wanted: std::collections::BTreeSet<&str> = names.iter().map(String::as_str).collect();
    graph.entities.retain(|e| wanted.contains(e.name.as_str()));
    let found: std::collections::BTreeSet<&str> = graph.entities.iter().map(|e| e.name.as_str()).collect();
    graph.relations.retain(|r| found.contains(r.relation.from.as_str()) || found.contains(r.relation.to.as_str()));
    graph
}

/// The entities whose name, type or any observation holds every whitespace-separated term of
/// `query` anywhere, case-insensitively (a query of whitespace only: itself; an empty one:
/// everything), the first `limit` by name, and the relations touching them.
pub(crate) fn matching(graph: Graph, query: &str, limit: usize) -> Graph {
    let mut terms: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    if terms.is_empty() && !query.is_empty() {
        terms.push(query.to_lowercase());
    }
    let holds = |e: &Entity| {
        let texts: Vec<String> = [e.name.as_str(), e.entity_type.as_str()]
            .into_iter()
            .chain(e.observations.iter().map(|o| o.text.as_str()))
            .map(str::to_lowercase)
            .collect();
        terms.iter().all(|t| texts.iter().any(|text| text.contains(t.as_str())))
    };
    let names: Vec<String> = graph.entities.iter().filter(|e| holds(e)).take(limit).map(|e| e.name.clone()).collect();
    named(graph, &names)
}

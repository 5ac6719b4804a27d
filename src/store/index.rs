//! The derived index: entities, observations and relations as tables, plus FTS5 search.
//!
//! Refreshed from the documents, key by key, in the same transaction that logs the change, so
//! a reader (in any process) always sees the index and the log agree.

use std::collections::{BTreeMap, BTreeSet};

use automerge::Automerge;
use rusqlite::{Connection, OptionalExtension, params};

use crate::decode::Touched;
use crate::error::Result;
use crate::model::{Entity, Graph, Millis, Observation, Relation, RelationFact, TypeConflict, Validity};
use crate::schema::Link;
use crate::schema::{self, EntityRecord, FactRecord, Layout, MapKind, split_observation_key, split_relation_key};

// ---------------------------------------------------------------------------------------------
// Refresh: document state -> tables.

/// Search rows to write when a transaction ends.
///
/// FTS5 flushes its pending inserts to disk whenever a statement opens a savepoint, so search
/// writes interleaved with the other index writes would cost a flush (and a segment merge) each.
/// They are collected here and written by set-based statements (a delete and an insert per
/// index), last in the transaction.
#[derive(Debug, Default)]
pub(crate) struct SearchUpdates {
    /// Search rows to delete.
    deletes: Vec<i64>,
    /// Search rows to add, and which row they belong to.
    inserts: Vec<PendingRow>,
}

#[derive(Debug)]
struct PendingRow {
    graph: String,
    entity: String,
    text: String,
    /// `Some(text)` for an observation's row, `None` for the entity's name-and-type row.
    observation: Option<String>,
}

/// The two full-text indexes over the same rows (same rowids): substrings and words.
pub(super) const SEARCH_TABLES: [&str; 2] = ["search", "words"];

impl SearchUpdates {
    /// Writes the pending search rows. Call last in the transaction.
    pub(super) fn apply(self, db: &Connection) -> Result<()> {
        if self.deletes.is_empty() && self.inserts.is_empty() {
            return Ok(());
        }
        // Row ids are assigned here and recorded in the owning tables first: every ordinary
        // write precedes the search statements.
        let first: i64 = db
            .prepare_cached("SELECT rowid FROM search ORDER BY rowid DESC LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?
            .unwrap_or(0)
            + 1;
        let mut rows = Vec::with_capacity(self.inserts.len());
        for (id, row) in (first..).zip(&self.inserts) {
            match &row.observation {
                Some(text) => db
                    .prepare_cached("UPDATE observations SET fts = ?1 WHERE graph = ?2 AND entity = ?3 AND text = ?4")?
                    .execute(params![id, row.graph, row.entity, text])?,
                None => db
                    .prepare_cached("UPDATE entities SET fts = ?1 WHERE graph = ?2 AND name = ?3")?
                    .execute(params![id, row.graph, row.entity])?,
            };
            rows.push(serde_json::json!([id, row.graph, row.entity, row.text]));
        }
        // Serialising integers and strings cannot fail.
        if !self.deletes.is_empty() {
            let ids = serde_json::to_string(&self.deletes).unwrap_or_default();
            for table in SEARCH_TABLES {
                db.prepare_cached(&format!("DELETE FROM {table} WHERE rowid IN (SELECT value FROM json_each(?1))"))?
                    .execute([&ids])?;
            }
        }
        if !rows.is_empty() {
            let rows = serde_json::to_string(&rows).unwrap_or_default();
            for table in SEARCH_TABLES {
                db.prepare_cached(&format!(
                    "INSERT INTO {table} (rowid, graph, entity, text)
                     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?1)"
                ))?
                .execute([&rows])?;
            }
        }
        Ok(())
    }

    fn add(&mut self, graph: &str, entity: &str, text: String, observation: Option<&str>) {
        self.inserts.push(PendingRow {
            graph: graph.to_owned(),
            entity: entity.to_owned(),
            text,
            observation: observation.map(str::to_owned),
        });
    }
}

/// Re-derives every row the touched keys affect from the shard document.
pub(super) fn refresh(
    db: &Connection,
    graph: &str,
    doc: &Automerge,
    layout: &Layout,
    touched: &Touched,
    search: &mut SearchUpdates,
) -> Result<()> {
    let fact = |kind: MapKind, map: &automerge::ObjId, key: &str| match touched.written.get(&(kind, key.to_owned())) {
        Some(written) => written.as_deref().map(FactRecord::parse),
        None => schema::fact_record(doc, map, key),
    };
    for key in &touched.observations {
        let Some((entity, text)) = split_observation_key(key) else { continue };
        let existing: Option<Option<i64>> = db
            .prepare_cached("SELECT fts FROM observations WHERE graph = ?1 AND entity = ?2 AND text = ?3")?
            .query_row(params![graph, entity, text], |r| r.get(0))
            .optional()?;
        match (fact(MapKind::Observations, &layout.observations, key), existing) {
            (Some(r), existing) => {
                // The same nine values either way; a new row also gets its search entry.
                let sql = if existing.is_some() {
                    "UPDATE observations SET by = ?4, at = ?5, valid_from = ?6, valid_to = ?7, ord = ?8, replaces = ?9
                     WHERE graph = ?1 AND entity = ?2 AND text = ?3"
                } else {
                    "INSERT INTO observations (graph, entity, text, by, at, valid_from, valid_to, ord, replaces)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                };
                let replaces = r.replaces.as_ref().and_then(Link::text);
                db.prepare_cached(sql)?.execute(params![
                    graph,
                    entity,
                    text,
                    r.by,
                    r.at,
                    r.valid_from,
                    r.valid_to,
                    r.n,
                    replaces
                ])?;
                if existing.is_none() {
                    search.add(graph, entity, text.to_owned(), Some(text));
                }
            }
            (None, Some(fts)) => {
                db.prepare_cached("DELETE FROM observations WHERE graph = ?1 AND entity = ?2 AND text = ?3")?
                    .execute(params![graph, entity, text])?;
                search.deletes.extend(fts);
            }
            (None, None) => {}
        }
    }
    for key in &touched.relations {
        let Some((src, rtype, dst)) = split_relation_key(key) else { continue };
        match fact(MapKind::Relations, &layout.relations, key) {
            Some(r) => {
                let replaces = r.replaces.as_ref().and_then(Link::relation).map(|old| Link::relation_json(&old));
                db.prepare_cached(
                    "INSERT OR REPLACE INTO relations (graph, src, rtype, dst, by, at, valid_from, valid_to, replaces)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    graph,
                    src,
                    rtype,
                    dst,
                    r.by,
                    r.at,
                    r.valid_from,
                    r.valid_to,
                    replaces
                ])?;
            }
            None => {
                db.prepare_cached("DELETE FROM relations WHERE graph = ?1 AND src = ?2 AND rtype = ?3 AND dst = ?4")?
                    .execute(params![graph, src, rtype, dst])?;
            }
        }
    }
    for name in &touched.entities {
        let records = match touched.written.get(&(MapKind::Entities, name.clone())) {
            Some(written) => written.as_deref().map(EntityRecord::parse).into_iter().collect(),
            None => schema::entity_records(doc, layout, name),
        };
        refresh_entity(db, graph, records, name, search)?;
    }
    Ok(())
}

/// An entity is visible while it has a record, or while observations or outgoing relations
/// added concurrently with its deletion keep it alive (they live in its shard, so this is a
/// check of one document's state and converges like it).
fn refresh_entity(
    db: &Connection,
    graph: &str,
    records: Vec<EntityRecord>,
    name: &str,
    search: &mut SearchUpdates,
) -> Result<()> {
    let has_facts: bool = db
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM observations WHERE graph = ?1 AND entity = ?2)
                 OR EXISTS (SELECT 1 FROM relations WHERE graph = ?1 AND src = ?2)",
        )?
        .query_row(params![graph, name], |r| r.get(0))?;
    let existing: Option<(String, Option<i64>)> = db
        .prepare_cached("SELECT type, fts FROM entities WHERE graph = ?1 AND name = ?2")?
        .query_row(params![graph, name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if records.is_empty() && !has_facts {
        if let Some((_, fts)) = existing {
            db.prepare_cached("DELETE FROM entities WHERE graph = ?1 AND name = ?2")?.execute(params![graph, name])?;
            search.deletes.extend(fts);
        }
        return Ok(());
    }
    let winner = records.first();
    let entity_type = winner.map(|r| r.entity_type.as_str()).unwrap_or("");
    let mut losers: Vec<TypeConflict> = Vec::new();
    for r in records.iter().skip(1) {
        if r.entity_type != entity_type && !losers.iter().any(|l| l.entity_type == r.entity_type) {
            let by = if r.written_by.is_empty() { r.by.clone() } else { r.written_by.clone() };
            losers.push(TypeConflict { entity_type: r.entity_type.clone(), by });
        }
    }
    let conflicts = (!losers.is_empty()).then(|| serde_json::to_string(&losers).unwrap_or_default());
    let (by, at) = winner.map(|r| (r.by.as_str(), r.at)).unwrap_or(("", 0));
    db.prepare_cached(
        "INSERT INTO entities (graph, name, type, has_record, created_by, created_at, conflicts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (graph, name) DO UPDATE SET type = excluded.type, has_record = excluded.has_record,
             created_by = excluded.created_by, created_at = excluded.created_at, conflicts = excluded.conflicts",
    )?
    .execute(params![graph, name, entity_type, winner.is_some(), by, at, conflicts])?;
    // The name-and-type search row changes only when the type does.
    match existing {
        Some((old_type, Some(_))) if old_type == entity_type => {}
        Some((_, fts)) => {
            search.deletes.extend(fts);
            search.add(graph, name, format!("{name}\n{entity_type}"), None);
        }
        None => search.add(graph, name, format!("{name}\n{entity_type}"), None),
    }
    Ok(())
}

/// Drops every derived row of a graph (before rebuilding it from the documents).
pub(super) fn clear_graph(db: &Connection, graph: &str) -> Result<()> {
    for table in SEARCH_TABLES.iter().chain(&["entities", "observations", "relations"]) {
        db.execute(&format!("DELETE FROM {table} WHERE graph = ?1"), [graph])?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Point lookups used while planning a write.

/// Whether an entity is visible (has a record, or facts that keep it alive).
pub(crate) fn entity_exists(tx: &super::Txn<'_>, graph: &str, name: &str) -> Result<bool> {
    let db = tx.db();
    Ok(db
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM entities WHERE graph = ?1 AND name = ?2)")?
        .query_row(params![graph, name], |r| r.get(0))?)
}

/// Whether an entity has a record of its own (is not merely kept alive by concurrent additions).
pub(crate) fn entity_has_record(tx: &super::Txn<'_>, graph: &str, name: &str) -> Result<bool> {
    let db = tx.db();
    Ok(db
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM entities WHERE graph = ?1 AND name = ?2 AND has_record)")?
        .query_row(params![graph, name], |r| r.get(0))?)
}

/// The record of an observation, if present.
pub(crate) fn observation(tx: &super::Txn<'_>, graph: &str, entity: &str, text: &str) -> Result<Option<FactRecord>> {
    let db = tx.db();
    Ok(db
        .prepare_cached(
            "SELECT by, at, valid_from, valid_to, ord, replaces FROM observations
             WHERE graph = ?1 AND entity = ?2 AND text = ?3",
        )?
        .query_row(params![graph, entity, text], |r| {
            Ok(FactRecord { n: r.get(4)?, replaces: r.get::<_, Option<String>>(5)?.map(Link::Text), ..fact_row(r)? })
        })
        .optional()?)
}

/// The record of a relation, if present.
pub(crate) fn relation(tx: &super::Txn<'_>, graph: &str, rel: &Relation) -> Result<Option<FactRecord>> {
    let db = tx.db();
    Ok(db
        .prepare_cached(
            "SELECT by, at, valid_from, valid_to, replaces FROM relations
             WHERE graph = ?1 AND src = ?2 AND rtype = ?3 AND dst = ?4",
        )?
        .query_row(params![graph, rel.from, rel.relation_type, rel.to], |r| {
            let replaces = r.get::<_, Option<String>>(4)?.and_then(|j| serde_json::from_str(&j).ok());
            Ok(FactRecord { replaces: replaces.map(Link::Relation), ..fact_row(r)? })
        })
        .optional()?)
}

fn fact_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FactRecord> {
    Ok(FactRecord { by: r.get(0)?, at: r.get(1)?, valid_from: r.get(2)?, valid_to: r.get(3)?, n: 0, replaces: None })
}

/// The observations of `entity` that replace its observation `text` (a supersede).
pub(crate) fn observation_replacements(
    tx: &super::Txn<'_>,
    graph: &str,
    entity: &str,
    text: &str,
) -> Result<Vec<String>> {
    let db = tx.db();
    let mut stmt = db.prepare_cached(
        "SELECT text FROM observations WHERE graph = ?1 AND entity = ?2 AND replaces = ?3 ORDER BY text",
    )?;
    let rows = stmt.query_map(params![graph, entity, text], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The relations that replace `rel` (a supersede).
pub(crate) fn relation_replacements(tx: &super::Txn<'_>, graph: &str, rel: &Relation) -> Result<Vec<Relation>> {
    let db = tx.db();
    let mut stmt = db.prepare_cached(
        "SELECT src, rtype, dst FROM relations WHERE graph = ?1 AND replaces = ?2 ORDER BY src, rtype, dst",
    )?;
    let rows = stmt.query_map(params![graph, Link::relation_json(rel)], |r| {
        Ok(Relation { from: r.get(0)?, relation_type: r.get(1)?, to: r.get(2)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every observation and relation that replaces another and holds at world time `t`: where
/// supersede conflicts can be (`Replica::status`).
pub(crate) fn replacements_holding_at(tx: &super::Txn<'_>, graph: &str, t: Millis) -> Result<Graph> {
    let db = tx.db();
    let holds = "(valid_from IS NULL OR valid_from <= ?2) AND (valid_to IS NULL OR ?2 < valid_to)";
    let mut stmt = db.prepare_cached(&format!(
        "SELECT text, by, at, valid_from, valid_to, replaces, entity FROM observations INDEXED BY observations_by_replaces
         WHERE graph = ?1 AND replaces IS NOT NULL AND {holds} ORDER BY entity, at, ord, text"
    ))?;
    let mut entities: Vec<Entity> = Vec::new();
    for row in stmt.query_map(params![graph, t], |r| Ok((observation_row(r)?, r.get::<_, String>(6)?)))? {
        let (o, name) = row?;
        match entities.last_mut() {
            Some(e) if e.name == name => e.observations.push(o),
            _ => entities.push(Entity {
                name,
                entity_type: String::new(),
                observations: vec![o],
                created_by: String::new(),
                created_at: 0,
                conflicts: Vec::new(),
            }),
        }
    }
    let mut stmt = db.prepare_cached(&format!(
        "SELECT src, rtype, dst, by, at, valid_from, valid_to, replaces FROM relations INDEXED BY relations_by_replaces
         WHERE graph = ?1 AND replaces IS NOT NULL AND {holds} ORDER BY src, rtype, dst"
    ))?;
    let relations = stmt.query_map(params![graph, t], relation_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Graph { entities, relations, ..Graph::default() })
}

/// Who created an entity and when, to carry over when its type is rewritten.
pub(crate) fn entity_created(tx: &super::Txn<'_>, graph: &str, name: &str) -> Result<Option<(String, Millis)>> {
    Ok(tx
        .db()
        .prepare_cached("SELECT created_by, created_at FROM entities WHERE graph = ?1 AND name = ?2 AND has_record")?
        .query_row(params![graph, name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Texts of every observation of an entity.
pub(crate) fn observation_texts(tx: &super::Txn<'_>, graph: &str, entity: &str) -> Result<Vec<String>> {
    let db = tx.db();
    let mut stmt = db.prepare_cached("SELECT text FROM observations WHERE graph = ?1 AND entity = ?2")?;
    let rows = stmt.query_map(params![graph, entity], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every relation from or to an entity.
pub(crate) fn relations_touching(tx: &super::Txn<'_>, graph: &str, entity: &str) -> Result<Vec<Relation>> {
    let db = tx.db();
    let mut stmt = db.prepare_cached(
        "SELECT src, rtype, dst FROM relations WHERE graph = ?1 AND src = ?2
         UNION SELECT src, rtype, dst FROM relations WHERE graph = ?1 AND dst = ?2",
    )?;
    let rows = stmt.query_map(params![graph, entity], |r| {
        Ok(Relation { from: r.get(0)?, relation_type: r.get(1)?, to: r.get(2)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---------------------------------------------------------------------------------------------
// Reads.

fn parse_conflicts(json: Option<String>) -> Vec<TypeConflict> {
    json.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default()
}

/// Loads entities (with their observations) selected by a SQL condition on `entities e`.
fn load_entities(db: &Connection, graph: &str, ids: &[i64]) -> Result<Vec<Entity>> {
    let mut out = Vec::with_capacity(ids.len());
    let mut ent = db.prepare_cached(
        "SELECT name, type, created_by, created_at, conflicts FROM entities WHERE id = ?1 AND graph = ?2",
    )?;
    let mut obs = db.prepare_cached(
        "SELECT text, by, at, valid_from, valid_to, replaces FROM observations
         WHERE graph = ?1 AND entity = ?2 ORDER BY at, ord, text",
    )?;
    for id in ids {
        let Some(mut entity) = ent
            .query_row(params![id, graph], |r| {
                Ok(Entity {
                    name: r.get(0)?,
                    entity_type: r.get(1)?,
                    observations: Vec::new(),
                    created_by: r.get(2)?,
                    created_at: r.get(3)?,
                    conflicts: parse_conflicts(r.get(4)?),
                })
            })
            .optional()?
        else {
            continue;
        };
        let rows = obs.query_map(params![graph, entity.name], observation_row)?;
        entity.observations = rows.collect::<rusqlite::Result<_>>()?;
        out.push(entity);
    }
    Ok(out)
}

fn observation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Observation> {
    Ok(Observation {
        text: r.get(0)?,
        by: r.get(1)?,
        at: r.get(2)?,
        validity: Validity { valid_from: r.get(3)?, valid_to: r.get(4)? },
        replaces: r.get(5)?,
    })
}

fn relation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RelationFact> {
    Ok(RelationFact {
        relation: Relation { from: r.get(0)?, relation_type: r.get(1)?, to: r.get(2)? },
        by: r.get(3)?,
        at: r.get(4)?,
        validity: Validity { valid_from: r.get(5)?, valid_to: r.get(6)? },
        replaces: r
            .get::<_, Option<String>>(7)?
            .and_then(|j| serde_json::from_str::<[String; 3]>(&j).ok())
            .map(|[from, relation_type, to]| Relation { from, relation_type, to }),
    })
}

/// The whole graph, every fact present whatever its validity, in one pass over each table.
pub(crate) fn read_graph(tx: &super::Txn<'_>, graph: &str) -> Result<Graph> {
    let db = tx.db();
    let mut entities: BTreeMap<String, Entity> = BTreeMap::new();
    let mut stmt =
        db.prepare_cached("SELECT name, type, created_by, created_at, conflicts FROM entities WHERE graph = ?1")?;
    for row in stmt.query_map([graph], |r| {
        Ok(Entity {
            name: r.get(0)?,
            entity_type: r.get(1)?,
            observations: Vec::new(),
            created_by: r.get(2)?,
            created_at: r.get(3)?,
            conflicts: parse_conflicts(r.get(4)?),
        })
    })? {
        let e = row?;
        entities.insert(e.name.clone(), e);
    }
    let mut stmt = db.prepare_cached(
        "SELECT text, by, at, valid_from, valid_to, replaces, entity FROM observations WHERE graph = ?1
         ORDER BY entity, at, ord, text",
    )?;
    let mut rows = stmt.query([graph])?;
    while let Some(row) = rows.next()? {
        let o = observation_row(row)?;
        let entity: String = row.get(6)?;
        if let Some(e) = entities.get_mut(&entity) {
            e.observations.push(o);
        }
    }
    let mut stmt = db.prepare_cached(
        "SELECT src, rtype, dst, by, at, valid_from, valid_to, replaces FROM relations WHERE graph = ?1
         ORDER BY src, rtype, dst",
    )?;
    let relations = stmt.query_map([graph], relation_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Graph { entities: entities.into_values().collect(), relations, ..Graph::default() })
}

/// Relations with at least one end among `names` (the reference memory server's rule).
fn relations_touching_any(db: &Connection, graph: &str, names: &BTreeSet<String>) -> Result<Vec<RelationFact>> {
    let mut set = BTreeMap::new();
    let mut from = db.prepare_cached(
        "SELECT src, rtype, dst, by, at, valid_from, valid_to, replaces FROM relations WHERE graph = ?1 AND src = ?2",
    )?;
    // Without statistics SQLite would rather scan the graph's primary-key range than look each
    // row up from the (non-covering) index on `dst`: 8 ms an entity at 100k entities.
    let mut to = db.prepare_cached(
        "SELECT src, rtype, dst, by, at, valid_from, valid_to, replaces FROM relations INDEXED BY relations_by_dst
         WHERE graph = ?1 AND dst = ?2",
    )?;
    for name in names {
        for stmt in [&mut from, &mut to] {
            for r in stmt.query_map(params![graph, name], relation_row)? {
                let r = r?;
                set.insert(r.relation.clone(), r);
            }
        }
    }
    Ok(set.into_values().collect())
}

/// The named entities (unknown names are skipped) and the relations touching them.
pub(crate) fn open_nodes(tx: &super::Txn<'_>, graph: &str, names: &[String]) -> Result<Graph> {
    let wanted: Vec<String> = names.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    graph_of(tx.db(), graph, &wanted)
}

/// The entities named (in this order; unknown names are skipped) and the relations touching them.
pub(super) fn graph_of(db: &Connection, graph: &str, names: &[String]) -> Result<Graph> {
    let mut ids = Vec::with_capacity(names.len());
    let mut stmt = db.prepare_cached("SELECT id FROM entities WHERE graph = ?1 AND name = ?2")?;
    for name in names {
        if let Some(id) = stmt.query_row(params![graph, name], |r| r.get::<_, i64>(0)).optional()? {
            ids.push(id);
        }
    }
    let entities = load_entities(db, graph, &ids)?;
    let found: BTreeSet<String> = entities.iter().map(|e| e.name.clone()).collect();
    let relations = relations_touching_any(db, graph, &found)?;
    Ok(Graph { entities, relations, ..Graph::default() })
}

/// How many entities, observations and relations a graph holds.
pub(crate) fn counts(tx: &super::Txn<'_>, graph: &str) -> Result<(u64, u64, u64)> {
    let db = tx.db();
    let count = |table: &str| -> Result<u64> {
        Ok(db.query_row(&format!("SELECT count(*) FROM {table} WHERE graph = ?1"), [graph], |r| r.get::<_, i64>(0))?
            as u64)
    };
    Ok((count("entities")?, count("observations")?, count("relations")?))
}

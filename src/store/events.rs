//! Entity-level history: what each logged change did to which entity, who did it and when.
//! Serves `history`, `changes_since`, unseen-change reports and conditional-write checks.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;
use crate::freshness::Unseen;
use crate::ids::LogPosition;
use crate::model::{EntityChange, Millis, What};

/// Records the events of one logged change.
pub(super) fn insert(
    db: &Connection,
    seq: i64,
    graph: &str,
    agent: &str,
    at: Millis,
    events: &[(String, What)],
) -> Result<()> {
    let mut stmt =
        db.prepare_cached("INSERT INTO events (seq, graph, entity, what, agent, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
    for (entity, what) in events {
        // Serialising a plain enum of strings and integers cannot fail.
        let what = serde_json::to_string(what).unwrap_or_default();
        stmt.execute(params![seq, graph, entity, what, agent, at])?;
    }
    Ok(())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EntityChange> {
    let what: String = r.get(2)?;
    let what: What = serde_json::from_str(&what)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(EntityChange { seq: LogPosition(r.get(0)?), entity: r.get(1)?, what, agent: r.get(3)?, at: r.get(4)? })
}

/// An entity's whole history, oldest first.
pub(crate) fn history(tx: &super::Txn<'_>, graph: &str, entity: &str) -> Result<Vec<EntityChange>> {
    let db = tx.db();
    let mut stmt = db.prepare_cached(
        "SELECT seq, entity, what, agent, at FROM events WHERE graph = ?1 AND entity = ?2 ORDER BY seq, id",
    )?;
    let rows = stmt.query_map(params![graph, entity], row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Changes logged after `seq`, oldest first, at most `limit`.
pub(crate) fn since(tx: &super::Txn<'_>, graph: &str, seq: LogPosition, limit: usize) -> Result<Vec<EntityChange>> {
    let db = tx.db();
    let mut stmt = db.prepare_cached(
        "SELECT seq, entity, what, agent, at FROM events WHERE graph = ?1 AND seq > ?2 ORDER BY seq, id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![graph, seq.0, limit as i64], row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Changes logged after `seq` that touched any of `entities`.
pub(crate) fn since_touching(
    tx: &super::Txn<'_>,
    graph: &str,
    seq: LogPosition,
    entities: &[String],
) -> Result<Vec<EntityChange>> {
    let db = tx.db();
    let mut stmt = db.prepare_cached(
        "SELECT seq, entity, what, agent, at FROM events WHERE graph = ?1 AND entity = ?2 AND seq > ?3 ORDER BY seq, id",
    )?;
    let mut out = Vec::new();
    for entity in entities.iter().collect::<BTreeSet<_>>() {
        for r in stmt.query_map(params![graph, entity, seq.0], row)? {
            out.push(r?);
        }
    }
    out.sort_by_key(|c| c.seq);
    Ok(out)
}

/// The log position of `agent`'s previous read, if it has read before.
pub(crate) fn cursor(tx: &super::Txn<'_>, graph: &str, agent: &str) -> Result<Option<LogPosition>> {
    let db = tx.db();
    Ok(db
        .prepare_cached("SELECT seq FROM cursors WHERE graph = ?1 AND agent = ?2")?
        .query_row(params![graph, agent], |r| r.get(0).map(LogPosition))
        .optional()?)
}

/// Moves `agent`'s read cursor forward to `seq` (never backward: two sessions of one agent may
/// read concurrently).
pub(crate) fn advance_cursor(tx: &super::Txn<'_>, graph: &str, agent: &str, seq: LogPosition) -> Result<()> {
    let db = tx.db();
    db.prepare_cached(
        "INSERT INTO cursors (graph, agent, seq) VALUES (?1, ?2, ?3)
         ON CONFLICT (graph, agent) DO UPDATE SET seq = max(seq, excluded.seq)",
    )?
    .execute(params![graph, agent, seq.0])?;
    Ok(())
}

/// What other agents changed between log positions `after` and `upto`.
pub(crate) fn unseen(
    tx: &super::Txn<'_>,
    graph: &str,
    agent: &str,
    after: LogPosition,
    upto: LogPosition,
) -> Result<Unseen> {
    let db = tx.db();
    let mut stmt = db.prepare_cached(
        "SELECT entity, agent FROM events WHERE graph = ?1 AND seq > ?2 AND seq <= ?3 AND agent != ?4",
    )?;
    let mut count = 0;
    let mut agents = BTreeSet::new();
    let mut entities = BTreeSet::new();
    for r in stmt
        .query_map(params![graph, after.0, upto.0, agent], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
    {
        let (entity, who) = r?;
        count += 1;
        agents.insert(who);
        entities.insert(entity);
    }
    let more_entities = entities.len().saturating_sub(Unseen::MAX_LISTED);
    Ok(Unseen {
        count,
        agents: agents.into_iter().collect(),
        entities: entities.into_iter().take(Unseen::MAX_LISTED).collect(),
        more_entities,
    })
}

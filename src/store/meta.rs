//! The `meta` table: the file's replica id, and values tools keep in the file (an import's
//! progress, say) under `checkpoint:<key>`.

use rusqlite::{Connection, OptionalExtension};

use crate::error::Result;
use crate::ids::ReplicaId;

/// Gives a new file its replica id (a no-op for a file that has one).
pub(super) fn init_replica_id(db: &Connection) -> Result<()> {
    let id = u32::from_be_bytes(automerge::ActorId::random().to_bytes()[..4].try_into().unwrap_or([0; 4]));
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('replica_id', ?1)", [format!("{id:08x}")])?;
    Ok(())
}

pub(super) fn has_replica_id(db: &Connection) -> Result<bool> {
    Ok(db.query_row("SELECT EXISTS (SELECT 1 FROM meta WHERE key = 'replica_id')", [], |r| r.get(0))?)
}

/// The id versions issued by this file carry.
pub(super) fn replica_id(db: &Connection) -> Result<ReplicaId> {
    Ok(db.query_row("SELECT value FROM meta WHERE key = 'replica_id'", [], |r| {
        let hex: String = r.get(0)?;
        Ok(ReplicaId(u32::from_str_radix(&hex, 16).unwrap_or(0)))
    })?)
}

pub(super) fn checkpoint(db: &Connection, key: &str) -> Result<Option<String>> {
    let key = format!("checkpoint:{key}");
    Ok(db.query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| r.get(0)).optional()?)
}

pub(super) fn set_checkpoint(db: &Connection, key: &str, value: Option<&str>) -> Result<()> {
    let key = format!("checkpoint:{key}");
    match value {
        Some(v) => db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", [&key, v])?,
        None => db.execute("DELETE FROM meta WHERE key = ?1", [&key])?,
    };
    Ok(())
}

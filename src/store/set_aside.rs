//! What `repair` took out of the log because it could not be read: kept here, bytes and all,
//! never dropped.
//!
//! The table is created by the first repair that has something to set aside (a file that never
//! needed one has none), so it needs no migration: a file stays readable by every version.

use rusqlite::{Connection, params};

use super::ledger::Unreadable;
use crate::error::Result;
use crate::model::Millis;

const CREATE: &str = "CREATE TABLE IF NOT EXISTS set_aside (
    id           INTEGER PRIMARY KEY,
    seq          INTEGER,          -- its log position; NULL for a document's snapshot
    doc          BLOB    NOT NULL, -- 16-byte document id (as stored)
    hash         BLOB,             -- the hash the log row named
    deps         BLOB,
    agent        TEXT,
    at           INTEGER,
    bytes        BLOB,             -- what was stored, as it was; NULL if nothing was
    reason       TEXT    NOT NULL,
    set_aside_at INTEGER NOT NULL
)";

/// Moves `items` out of the log (and their history rows) into the table.
pub(super) fn move_out(db: &Connection, items: &[Unreadable], now: Millis) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    create(db)?;
    let mut insert = db.prepare(
        "INSERT INTO set_aside (seq, doc, hash, deps, agent, at, bytes, reason, set_aside_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for item in items {
        match &item.row {
            Some(r) => {
                insert.execute(params![r.seq, r.doc, r.hash, r.deps, r.agent, r.at, r.bytes, item.reason, now])?;
                db.execute("DELETE FROM changes WHERE seq = ?1", [r.seq])?;
                db.execute("DELETE FROM events WHERE seq = ?1", [r.seq])?;
            }
            None => {
                insert.execute(params![
                    None::<i64>,
                    &item.doc.0[..],
                    None::<Vec<u8>>,
                    None::<Vec<u8>>,
                    None::<String>,
                    None::<i64>,
                    item.snapshot,
                    item.reason,
                    now
                ])?;
                if item.snapshot.is_some() {
                    db.execute("DELETE FROM snapshots WHERE doc = ?1", [&item.doc.0[..]])?;
                }
            }
        }
    }
    Ok(())
}

/// Creates the table if the file has none yet.
pub(super) fn create(db: &Connection) -> Result<()> {
    Ok(db.execute_batch(CREATE)?)
}

/// How many rows earlier repairs set aside (0 when none ever did).
pub(super) fn count(db: &Connection) -> Result<u64> {
    let exists: bool =
        db.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'set_aside')", [], |r| r.get(0))?;
    if !exists {
        return Ok(0);
    }
    Ok(db.query_row("SELECT count(*) FROM set_aside", [], |r| r.get::<_, i64>(0))? as u64)
}

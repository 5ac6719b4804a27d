//! The quarantine: changes an older version stored that the schema check refuses, moved out of
//! the log (see `schema_v3.sql`).

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;
use crate::ids::DocId;
use crate::integrity::Refused;
use crate::model::Millis;

/// A quarantined change, as [`crate::Replica::quarantined`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuarantinedChange {
    /// The document it was in (its automerge-repo id).
    pub doc: String,
    /// Its hash, hex.
    pub hash: String,
    /// The writer it names (self-declared).
    pub agent: String,
    /// Its time, ms since the Unix epoch.
    pub at: Millis,
    /// The rule it broke (`docs/schema.md`, "What a change may do"); `None`: it keeps the
    /// schema, but builds on a change that does not.
    pub rule: Option<String>,
    /// What was wrong.
    pub detail: String,
}

/// Moves `refused` changes of `doc` from the log into the quarantine, with their events.
pub(super) fn move_out(db: &Connection, doc: &DocId, refused: &[Refused], now: Millis) -> Result<()> {
    for r in refused {
        let hash = r.change.hash();
        let row: Option<(i64, String, i64)> = db
            .prepare_cached("SELECT seq, agent, at FROM changes WHERE doc = ?1 AND hash = ?2")?
            .query_row(params![&doc.0[..], &hash.0[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        // A change folded into a snapshot before this file logged it has no row: keep it anyway.
        let (seq, agent, at) = row.unwrap_or_else(|| {
            let (agent, at) = crate::schema::change_author(&r.change);
            (0, agent, at)
        });
        db.prepare_cached(
            "INSERT OR IGNORE INTO quarantine (doc, hash, seq, agent, at, rule, detail, bytes, quarantined_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            &doc.0[..],
            &hash.0[..],
            seq,
            agent,
            at,
            r.rule.map(|rule| rule.id()),
            r.detail,
            r.change.raw_bytes(),
            now
        ])?;
        db.prepare_cached("DELETE FROM changes WHERE doc = ?1 AND hash = ?2")?
            .execute(params![&doc.0[..], &hash.0[..]])?;
        db.prepare_cached("DELETE FROM events WHERE seq = ?1")?.execute([seq])?;
    }
    Ok(())
}

/// Every quarantined change of `docs`, oldest first.
pub(super) fn list(db: &Connection, docs: &[DocId]) -> Result<Vec<QuarantinedChange>> {
    let mut stmt =
        db.prepare_cached("SELECT doc, hash, agent, at, rule, detail FROM quarantine ORDER BY seq, quarantined_at")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (doc, hash, agent, at, rule, detail) = row?;
        let Ok(doc) = <[u8; 16]>::try_from(doc.as_slice()).map(DocId) else { continue };
        if docs.contains(&doc) {
            let hash = hash.iter().map(|b| format!("{b:02x}")).collect();
            out.push(QuarantinedChange { doc: doc.to_string(), hash, agent, at, rule, detail });
        }
    }
    Ok(out)
}

//! The change log: append changes, load documents, fold old changes into snapshots.
//!
//! Every document is kept as "latest snapshot + the changes logged after it".

use automerge::{Automerge, Change, ChangeHash};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::ids::DocId;

/// How many loose changes a document may gather before loading it writes a snapshot.
pub(super) const SNAPSHOT_EVERY: i64 = 500;

/// The newest log position in the file (0 when empty).
pub(super) fn max_seq(db: &Connection) -> Result<i64> {
    Ok(db.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM changes")?.query_row([], |r| r.get(0))?)
}

/// Appends a change to a document's log. Returns its position, or `None` if the document
/// already held it (a change is identified by its hash, so re-delivery is harmless).
pub(super) fn append(db: &Connection, doc: &DocId, change: &Change, agent: &str, at: i64) -> Result<Option<i64>> {
    let deps: Vec<u8> = change.deps().iter().flat_map(|h| h.0).collect();
    let inserted = db
        .prepare_cached(
            "INSERT OR IGNORE INTO changes (doc, hash, deps, agent, at, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![&doc.0[..], &change.hash().0[..], deps, agent, at, change.raw_bytes()])?;
    Ok((inserted == 1).then(|| db.last_insert_rowid()))
}

fn corrupt(doc: &DocId, reason: impl std::fmt::Display) -> Error {
    Error::CorruptStore { doc: doc.to_string(), reason: reason.to_string() }
}

/// A document as loaded from the log.
#[derive(Debug)]
pub(super) struct Loaded {
    /// The document.
    pub(super) doc: Automerge,
    /// How many changes were applied on top of the snapshot.
    pub(super) loose: i64,
}

/// Loads a document: its snapshot, then every change logged after it. `None` if the file has
/// nothing of the document.
pub(super) fn load(db: &Connection, doc: &DocId) -> Result<Option<Loaded>> {
    let _span = tracing::debug_span!("load", %doc).entered();
    let snapshot: Option<(i64, Vec<u8>)> = db
        .prepare_cached("SELECT upto_seq, bytes FROM snapshots WHERE doc = ?1")?
        .query_row([&doc.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (upto, mut am) = match &snapshot {
        Some((upto, bytes)) => (*upto, Automerge::load(bytes).map_err(|e| corrupt(doc, e))?),
        None => (0, Automerge::new()),
    };
    let changes = changes_between(db, doc, upto, i64::MAX)?
        .ok_or_else(|| corrupt(doc, "a change after the snapshot has no bytes"))?;
    if snapshot.is_none() && changes.is_empty() {
        return Ok(None);
    }
    let loose = changes.len() as i64;
    am.apply_changes(changes).map_err(|e| corrupt(doc, e))?;
    Ok(Some(Loaded { doc: am, loose }))
}

/// Saves `am` (which must hold every logged change of `doc`) as the document's snapshot and
/// clears the bytes of the changes it folds in. History is kept: the snapshot format holds every
/// change, and the log rows keep their metadata.
pub(super) fn snapshot(db: &Connection, doc: &DocId, am: &Automerge) -> Result<()> {
    let upto: i64 =
        db.query_row("SELECT COALESCE(MAX(seq), 0) FROM changes WHERE doc = ?1", [&doc.0[..]], |r| r.get(0))?;
    db.prepare_cached("INSERT OR REPLACE INTO snapshots (doc, upto_seq, bytes) VALUES (?1, ?2, ?3)")?
        .execute(params![&doc.0[..], upto, am.save()])?;
    db.prepare_cached("UPDATE changes SET bytes = NULL WHERE doc = ?1 AND seq <= ?2 AND bytes IS NOT NULL")?
        .execute(params![&doc.0[..], upto])?;
    Ok(())
}

/// The changes of `doc` logged after `after` and up to `upto`, in log order; `None` if one of
/// them has been folded into a snapshot.
pub(super) fn changes_between(db: &Connection, doc: &DocId, after: i64, upto: i64) -> Result<Option<Vec<Change>>> {
    let mut stmt =
        db.prepare_cached("SELECT bytes FROM changes WHERE doc = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq")?;
    let mut rows = stmt.query(params![&doc.0[..], after, upto])?;
    let mut changes = Vec::new();
    while let Some(row) = rows.next()? {
        let Some(bytes) = row.get::<_, Option<Vec<u8>>>(0)? else { return Ok(None) };
        changes.push(Change::from_bytes(bytes).map_err(|e| corrupt(doc, e))?);
    }
    Ok(Some(changes))
}

/// A logged change of some document, as read back by [`changes_after`].
#[derive(Debug)]
pub(super) struct LoggedChange {
    /// The document.
    pub(super) doc: DocId,
    /// The change, or `None` if it has been folded into a snapshot.
    pub(super) bytes: Option<Vec<u8>>,
}

/// Every change logged after `seq`, in log order.
pub(super) fn changes_after(db: &Connection, seq: i64) -> Result<Vec<LoggedChange>> {
    let mut stmt = db.prepare_cached("SELECT doc, bytes FROM changes WHERE seq > ?1 ORDER BY seq")?;
    let rows = stmt.query_map([seq], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (doc, bytes) = row?;
        let doc: [u8; 16] = doc.try_into().map_err(|_| corrupt(&DocId([0; 16]), "a document id is not 16 bytes"))?;
        out.push(LoggedChange { doc: DocId(doc), bytes });
    }
    Ok(out)
}

/// The heads of `doc` as of log position `seq`: the changes logged at or before `seq` that no
/// other such change depends on.
pub(super) fn heads_at(db: &Connection, doc: &DocId, seq: i64) -> Result<Vec<ChangeHash>> {
    let mut stmt = db.prepare_cached("SELECT hash, deps FROM changes WHERE doc = ?1 AND seq <= ?2")?;
    let mut hashes = std::collections::BTreeSet::new();
    let mut deps = std::collections::HashSet::new();
    let mut rows = stmt.query(params![&doc.0[..], seq])?;
    while let Some(row) = rows.next()? {
        let hash: Vec<u8> = row.get(0)?;
        let dep_bytes: Vec<u8> = row.get(1)?;
        let hash = ChangeHash::try_from(hash.as_slice()).map_err(|e| corrupt(doc, e))?;
        hashes.insert(hash);
        for d in dep_bytes.chunks(32) {
            deps.insert(ChangeHash::try_from(d).map_err(|e| corrupt(doc, e))?);
        }
    }
    Ok(hashes.into_iter().filter(|h| !deps.contains(h)).collect())
}

/// Whether the file holds any change of `doc`.
pub(super) fn holds(db: &Connection, doc: &DocId) -> Result<bool> {
    Ok(db
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM changes WHERE doc = ?1)")?
        .query_row([&doc.0[..]], |r| r.get(0))?)
}

/// Whether the file holds every change in `heads` of `doc`.
pub(super) fn has_all(db: &Connection, doc: &DocId, heads: &[ChangeHash]) -> Result<bool> {
    let mut stmt = db.prepare_cached("SELECT EXISTS (SELECT 1 FROM changes WHERE doc = ?1 AND hash = ?2)")?;
    for h in heads {
        if !stmt.query_row(params![&doc.0[..], &h.0[..]], |r| r.get::<_, bool>(0))? {
            return Ok(false);
        }
    }
    Ok(true)
}

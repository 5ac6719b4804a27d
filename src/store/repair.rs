//! `repair`: rebuild what is derived from the change log, set aside what cannot be read, and
//! move the log out of a file SQLite itself finds damaged. Nothing is dropped: what cannot be
//! read goes to the `set_aside` table with its bytes, and a damaged file is kept beside the new
//! one under a name that says so.
//!
//! Repair needs the file to itself: it opens it in SQLite's exclusive locking mode, which waits
//! for no one and fails at once while any other connection (in any process) has the file open.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use super::audit::{self, Area, CheckReport};
use super::ledger;
use crate::error::{Error, FileFault, Result};

/// A change (or snapshot) `repair` took out of the log because it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SetAside {
    /// The document, by id.
    pub doc: String,
    /// Its log position (`None`: the document's snapshot).
    pub seq: Option<i64>,
    /// Why it could not be read.
    pub reason: String,
}

/// What [`crate::Replica::repair_file`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RepairReport {
    /// The file.
    pub path: PathBuf,
    /// What `check` found before.
    pub before: CheckReport,
    /// When SQLite found the file itself damaged: where the damaged file was kept (the log it
    /// held was moved into a new file at `path`).
    pub damaged_copy: Option<PathBuf>,
    /// Places in the damaged file that could not be read at all (whatever was there is only in
    /// `damaged_copy`).
    pub unreadable: Vec<String>,
    /// What was taken out of the log into the `set_aside` table.
    pub set_aside: Vec<SetAside>,
    /// Damaged genesis changes rebuilt exactly (genesis is the same bytes on every replica).
    pub restored: usize,
    /// Rows the derived tables hold after the rebuild: entities, observations, relations,
    /// history rows.
    pub rebuilt: [u64; 4],
    /// What `check` finds after.
    pub after: CheckReport,
}

pub(crate) fn repair(path: &Path) -> Result<RepairReport> {
    let before = audit::check(path)?;
    let conn = audit::open_existing(path)?;
    take_exclusive(&conn, path)?;
    let sqlite_damaged =
        before.findings.iter().any(|f| f.area == Area::File || f.detail.contains("cannot be read whole"));
    let (damaged_copy, unreadable, outcome) = if sqlite_damaged {
        let (copy, unreadable, outcome) = rebuild_file(path, conn)?;
        (Some(copy), unreadable, outcome)
    } else {
        let outcome = in_place(&conn)?;
        drop(conn);
        (None, Vec::new(), outcome)
    };
    let after = audit::check(path)?;
    let (set_aside, restored, rebuilt) = outcome;
    Ok(RepairReport { path: path.to_owned(), before, damaged_copy, unreadable, set_aside, restored, rebuilt, after })
}

/// Takes the file's lock for good (exclusive locking mode: the first read takes it), or says
/// who has it.
fn take_exclusive(conn: &Connection, path: &Path) -> Result<()> {
    conn.busy_timeout(Duration::from_secs(2))?;
    conn.query_row("PRAGMA locking_mode=EXCLUSIVE", [], |_| Ok(()))?;
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) =>
        {
            Err(Error::File { path: path.to_owned(), fault: FileFault::InUse })
        }
        Err(e) => Err(super::fault::in_file(e.into(), path)),
    }
}

type Outcome = (Vec<SetAside>, usize, [u64; 4]);

/// Repairs a file whose pages are sound: sets aside unreadable log rows (and what builds on
/// them), rebuilds damaged genesis changes, and rebuilds every derived table from the log, in
/// one transaction.
fn in_place(db: &Connection) -> Result<Outcome> {
    let tx = db.unchecked_transaction()?;
    let ledgers = ledger::read_all(&tx, &ledger::known_graphs(&tx))?;
    let mut restored = 0;
    for l in &ledgers {
        for (seq, bytes) in &l.restored {
            tx.execute("UPDATE changes SET bytes = ?1 WHERE seq = ?2", rusqlite::params![bytes, seq])?;
            restored += 1;
        }
    }
    // A document whose readable changes do not apply has nothing more to set aside than its
    // rows already listed; only rows and snapshots move.
    let out: Vec<ledger::Unreadable> = ledgers
        .iter()
        .flat_map(|l| l.unreadable.iter())
        .filter(|u| u.row.is_some() || u.snapshot.is_some())
        .cloned()
        .collect();
    super::set_aside::move_out(&tx, &out, crate::replica::now_millis())?;
    for table in super::index::SEARCH_TABLES {
        // Recreated from its own definition: a damaged full-text index cannot be trusted to
        // delete its rows.
        let sql: String =
            tx.query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| r.get(0))?;
        tx.execute_batch(&format!("DROP TABLE {table}; {sql};"))?;
    }
    for table in ["entities", "observations", "relations", "events"] {
        tx.execute(&format!("DELETE FROM {table}"), [])?;
    }
    ledger::derive(&tx, &ledgers)?;
    let mut rebuilt = [0u64; 4];
    for (n, table) in ["entities", "observations", "relations", "events"].iter().enumerate() {
        rebuilt[n] = tx.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0))? as u64;
    }
    tx.commit()?;
    let set_aside = out
        .iter()
        .map(|u| SetAside { doc: u.doc.to_string(), seq: u.row.as_ref().map(|r| r.seq), reason: u.reason.clone() })
        .collect();
    Ok((set_aside, restored, rebuilt))
}

/// The tables that are not derived, copied out of a damaged file: (table, columns, whether it
/// has rowids to resume a scan from).
const KEPT: [(&str, &str, bool); 6] = [
    ("changes", "seq, doc, hash, deps, agent, at, bytes", true),
    ("snapshots", "doc, upto_seq, bytes", true),
    ("meta", "key, value", true),
    ("quarantine", "doc, hash, seq, agent, at, rule, detail, bytes, quarantined_at", true),
    ("set_aside", "id, seq, doc, hash, deps, agent, at, bytes, reason, set_aside_at", true),
    ("cursors", "graph, agent, seq", false),
];

/// Moves what a damaged file's log holds into a new file at `path`, keeping the damaged one
/// beside it. `damaged` holds the file's lock until the new file is in place.
fn rebuild_file(path: &Path, damaged: Connection) -> Result<(PathBuf, Vec<String>, Outcome)> {
    let fresh_path = sibling(path, &format!("repair-{}", std::process::id()));
    super::backup::remove_if_exists(&fresh_path)?;
    let mut fresh = Connection::open(&fresh_path).map_err(|e| super::fault::in_file(e.into(), &fresh_path))?;
    super::migrate::run(&mut fresh, &fresh_path)?;
    fresh.execute("DELETE FROM meta", [])?;
    let mut unreadable = Vec::new();
    let tx = fresh.unchecked_transaction()?;
    for (table, columns, rowids) in KEPT {
        let exists = damaged
            .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = ?1)", [table], |r| r.get::<_, bool>(0))
            .unwrap_or(true);
        if !exists {
            continue;
        }
        if table == "set_aside" {
            super::set_aside::create(&tx)?;
        }
        copy_table(&damaged, &tx, table, columns, rowids, &mut unreadable);
    }
    // New writes must not reuse a log position the damaged file gave out.
    let issued: i64 =
        damaged.query_row("SELECT seq FROM sqlite_sequence WHERE name = 'changes'", [], |r| r.get(0)).unwrap_or(0);
    tx.execute("UPDATE sqlite_sequence SET seq = max(seq, ?1) WHERE name = 'changes'", [issued])?;
    tx.execute("INSERT INTO sqlite_sequence (name, seq) SELECT 'changes', ?1 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'changes')", [issued])?;
    super::meta::init_replica_id(&tx)?;
    tx.commit()?;
    let outcome = in_place(&fresh)?;
    fresh.query_row("PRAGMA journal_mode=DELETE", [], |_| Ok(()))?;
    drop(fresh);
    std::fs::File::open(&fresh_path)
        .and_then(|f| f.sync_all())
        .map_err(|source| Error::Io { path: fresh_path.clone(), source })?;
    // Closing the damaged file must neither checkpoint into it nor delete its -wal by name
    // (which would by then be the new file's).
    damaged.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    let stamp = crate::replica::now_millis() / 1000;
    let kept = sibling(path, &format!("damaged-{stamp}"));
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to).map_err(|source| Error::Io { path: from.to_owned(), source })
    };
    rename(path, &kept)?;
    for suffix in ["-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        if from.exists() {
            rename(&from, &PathBuf::from(format!("{}{suffix}", kept.display())))?;
        }
    }
    rename(&fresh_path, path)?;
    super::backup::sync_dir(path)?;
    drop(damaged);
    Ok((kept, unreadable, outcome))
}

/// `memory.db` → `memory.db.<what>`.
fn sibling(path: &Path, what: &str) -> PathBuf {
    PathBuf::from(format!("{}.{what}", path.display()))
}

/// How many row ids past a read failure are probed one by one, at most (a table's largest row
/// id, read from a damaged b-tree, may be anything).
const PROBE_LIMIT: i64 = 200_000;

/// Copies every readable row of `table`. A scan stops at a damaged page; the rest is read row
/// id by row id, so one bad page loses only its own rows. Every failure is noted.
fn copy_table(from: &Connection, to: &Connection, table: &str, columns: &str, rowids: bool, notes: &mut Vec<String>) {
    let width = columns.split(',').count();
    let placeholders = vec!["?"; width].join(", ");
    let verb = if table == "meta" { "INSERT OR REPLACE" } else { "INSERT OR IGNORE" };
    let insert = format!("{verb} INTO {table} ({columns}) VALUES ({placeholders})");
    let copy_row = |r: &rusqlite::Row<'_>, offset: usize| -> rusqlite::Result<()> {
        // Values as stored; text that is not UTF-8 is kept as its bytes.
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(match r.get_ref(i + offset)? {
                rusqlite::types::ValueRef::Text(t) => match std::str::from_utf8(t) {
                    Ok(t) => Value::Text(t.to_owned()),
                    Err(_) => Value::Blob(t.to_vec()),
                },
                rusqlite::types::ValueRef::Null => Value::Null,
                rusqlite::types::ValueRef::Integer(n) => Value::Integer(n),
                rusqlite::types::ValueRef::Real(f) => Value::Real(f),
                rusqlite::types::ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            });
        }
        to.prepare_cached(&insert)?.execute(params_from_iter(values))?;
        Ok(())
    };
    if !rowids {
        let scan = (|| -> rusqlite::Result<()> {
            let mut stmt = from.prepare(&format!("SELECT {columns} FROM {table}"))?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                copy_row(r, 0)?;
            }
            Ok(())
        })();
        if let Err(e) = scan {
            notes.push(format!("{table}: rows past a damaged page could not be read ({e})"));
        }
        return;
    }
    // The log's own counter is the better bound: it lives on a page of its own.
    let counter: Option<i64> =
        from.query_row("SELECT seq FROM sqlite_sequence WHERE name = ?1", [table], |r| r.get(0)).ok();
    let upper: Option<i64> =
        counter.or_else(|| from.query_row(&format!("SELECT max(rowid) FROM {table}"), [], |r| r.get(0)).ok().flatten());
    let mut after = i64::MIN;
    let scan = (|| -> rusqlite::Result<()> {
        let mut stmt = from.prepare(&format!("SELECT rowid, {columns} FROM {table} ORDER BY rowid"))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            after = r.get(0)?;
            copy_row(r, 1)?;
        }
        Ok(())
    })();
    let Err(e) = scan else { return };
    // A range scan that met a damaged page fails there every time; a lookup by row id reaches
    // the rows past it through the table's interior pages. Bounded by the largest row id.
    let start = after.saturating_add(1).max(1);
    // The largest row id as read may itself be garbage; never probe more than the bound.
    let end = upper.unwrap_or(i64::MAX).min(start.saturating_add(PROBE_LIMIT));
    let point = format!("SELECT rowid, {columns} FROM {table} WHERE rowid = ?1");
    let (mut failed, mut first, mut last, mut absent) = (0u64, None, 0, 0u64);
    for id in start..=end {
        let got = from.query_row(&point, [id], |r| copy_row(r, 1));
        match got {
            Ok(()) => {}
            Err(rusqlite::Error::QueryReturnedNoRows) => absent += 1,
            Err(_) => {
                failed += 1;
                first.get_or_insert(id);
                last = id;
            }
        }
    }
    notes.push(format!("{table}: a scan failed past row id {} ({e}); the rest was read row by row", start - 1));
    if let Some(first) = first {
        notes.push(format!("{table}: {failed} row id(s) between {first} and {last} could not be read"));
    }
    if absent > 0 {
        notes.push(format!(
            "{table}: {absent} row id(s) between {start} and {end} were not found (gaps, or rows on the damaged page)"
        ));
    }
}

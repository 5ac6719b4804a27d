//! `check`: is the file sound, and does everything derived match the change log?
//!
//! The file is read in one read transaction (one snapshot, while writers carry on): SQLite's own
//! integrity check, every log row decoded and its hash compared, and the derived tables compared
//! with what the log holds, rebuilt by the same code in a scratch database in memory. Only the
//! FTS5 integrity commands run outside it (see [`fts_integrity`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use super::ledger::{self, DocLedger};
use crate::error::{Error, Result};

/// What `check` found wrong, by where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    /// The SQLite file itself (pages, b-trees): `PRAGMA integrity_check`.
    File,
    /// A full-text index (FTS5 `integrity-check`, or its rows against the tables they index).
    Search,
    /// The change log: a row that does not decode, does not match its hash, or builds on one.
    Log,
    /// A derived table (entities, observations, relations, search rows, history) that does not
    /// match what the log holds.
    Derived,
}

/// One thing `check` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Where.
    pub area: Area,
    /// What, in one line.
    pub detail: String,
}

/// What [`crate::Replica::check_file`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckReport {
    /// The file.
    pub path: PathBuf,
    /// Log rows read.
    pub changes: u64,
    /// Documents in the log.
    pub documents: usize,
    /// Graphs the file holds.
    pub graphs: Vec<String>,
    /// Changes an earlier `repair` set aside because they could not be read (kept, not in
    /// the graph).
    pub set_aside: u64,
    /// Everything wrong; empty when the file is sound.
    pub findings: Vec<Finding>,
    /// Checks that could not run, and why (a read-only file cannot run FTS5's own command,
    /// say); not damage.
    pub skipped: Vec<String>,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Opens `path` for checking or repairing: never created, never migrated. Read-write when the
/// file allows it (SQLite falls back to read-only otherwise), because FTS5's integrity command
/// is an `INSERT`.
pub(super) fn open_existing(path: &Path) -> Result<Connection> {
    if !path.exists() {
        return Err(Error::Io {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no replica file here"),
        });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| super::fault::in_file(e.into(), path))?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(|e| super::fault::in_file(e.into(), path))?;
    Ok(conn)
}

/// Checks the file at `path`. Damage is a finding, not an error; an error means the check
/// could not run (no file, not a Cairn file, no permission).
pub(crate) fn check(path: &Path) -> Result<CheckReport> {
    let conn = open_existing(path)?;
    // The last connection to close a WAL file checkpoints into it; a check writes nothing, to a
    // damaged file least of all.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    let mut report = CheckReport {
        path: path.to_owned(),
        changes: 0,
        documents: 0,
        graphs: Vec::new(),
        set_aside: 0,
        findings: Vec::new(),
        skipped: Vec::new(),
    };
    match super::migrate::check_owner(&conn, path) {
        Ok(()) => {}
        Err(Error::NotADatabase { .. }) => {
            report.findings.push(file_finding("the file is not readable as a SQLite database (its header is damaged)"));
            return Ok(report);
        }
        Err(e) => return Err(e),
    }
    let tx = conn.unchecked_transaction()?;
    integrity(&tx, &mut report.findings);
    match ledger::read_all(&tx, &ledger::known_graphs(&tx)) {
        Ok(ledgers) => {
            summarise(&ledgers, &mut report);
            derived(&tx, &ledgers, &mut report.findings);
        }
        Err(e) => report.findings.push(Finding {
            area: Area::Log,
            detail: format!("the change log cannot be read whole ({}); nothing derived was compared", plain(&e)),
        }),
    }
    links(&tx, &mut report.findings);
    report.set_aside = super::set_aside::count(&tx).unwrap_or(0);
    // Nothing was written; ending the snapshot cannot lose anything, and on a damaged file
    // SQLite may report the damage again here.
    let _ = tx.rollback();
    fts_integrity(&conn, &mut report);
    Ok(report)
}

fn file_finding(detail: impl Into<String>) -> Finding {
    Finding { area: Area::File, detail: detail.into() }
}

/// An error's text without the file name (the report names the file once).
fn plain(e: &Error) -> String {
    match e {
        Error::Storage(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

/// SQLite's own check of every page and b-tree (and, since SQLite 3.44, of FTS5 indexes).
fn integrity(db: &Connection, out: &mut Vec<Finding>) {
    let lines = (|| -> rusqlite::Result<Vec<String>> {
        let mut stmt = db.prepare("PRAGMA integrity_check(50)")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect()
    })();
    match lines {
        Ok(lines) => {
            // Since SQLite 3.44 the pragma also runs FTS5's own check: damage to a full-text
            // index is the search index's (rebuilt in place), not the file's.
            out.extend(lines.into_iter().filter(|l| l != "ok").map(|l| {
                let area = if l.to_ascii_lowercase().contains("fts5") { Area::Search } else { Area::File };
                Finding { area, detail: format!("integrity_check: {l}") }
            }))
        }
        Err(e) => out.push(file_finding(format!("integrity_check could not run: {e}"))),
    }
}

fn summarise(ledgers: &[DocLedger], report: &mut CheckReport) {
    let mut graphs = std::collections::BTreeSet::new();
    for l in ledgers {
        report.changes += (l.good.len() + l.unreadable.iter().filter(|u| u.row.is_some()).count()) as u64;
        if let Some((g, _)) = &l.place {
            graphs.insert(g.to_string());
        } else if !l.good.is_empty() {
            report.findings.push(Finding {
                area: Area::Log,
                detail: format!("document {} belongs to no graph the file names", l.doc),
            });
        }
        for u in &l.unreadable {
            let at = match &u.row {
                Some(r) => format!("change at log position {} of document {}", r.seq, u.doc),
                None => format!("document {}", u.doc),
            };
            report.findings.push(Finding { area: Area::Log, detail: format!("{at}: {}", u.reason) });
        }
        for (seq, _) in &l.restored {
            report.findings.push(Finding {
                area: Area::Log,
                detail: format!(
                    "genesis change at log position {seq} of document {} is damaged (repair rebuilds it exactly)",
                    l.doc
                ),
            });
        }
    }
    report.documents = ledgers.iter().filter(|l| l.place.is_some() || !l.good.is_empty()).count();
    report.graphs = graphs.into_iter().collect();
}

/// The derived tables, each compared as a multiset of rows (row ids and search row ids left
/// out: they depend on the order things were written in).
const DERIVED: [(&str, &str); 6] = [
    ("entities", "SELECT graph, name, type, has_record, created_by, created_at, conflicts FROM entities"),
    ("observations", "SELECT graph, entity, text, by, at, valid_from, valid_to, ord, replaces FROM observations"),
    ("relations", "SELECT graph, src, rtype, dst, by, at, valid_from, valid_to, replaces FROM relations"),
    ("history (events)", "SELECT seq, graph, entity, what, agent, at FROM events"),
    ("substring search rows (search)", "SELECT graph, entity, text FROM search"),
    ("word search rows (words)", "SELECT graph, entity, text FROM words"),
];

fn derived(db: &Connection, ledgers: &[DocLedger], out: &mut Vec<Finding>) {
    let scratch = match scratch(ledgers) {
        Ok(s) => s,
        Err(e) => {
            out.push(Finding { area: Area::Derived, detail: format!("could not rebuild from the log: {}", plain(&e)) });
            return;
        }
    };
    for (name, sql) in DERIVED {
        let area = if name.contains("search") { Area::Search } else { Area::Derived };
        let found = match rows(db, sql) {
            Ok(r) => r,
            Err(e) => {
                out.push(Finding { area, detail: format!("{name}: cannot be read ({e})") });
                continue;
            }
        };
        let expected = match rows(&scratch, sql) {
            Ok(r) => r,
            Err(e) => {
                out.push(Finding { area, detail: format!("{name}: could not be rebuilt ({e})") });
                continue;
            }
        };
        if let Some(detail) = diff(name, found, expected) {
            out.push(Finding { area, detail });
        }
    }
}

/// A database in memory holding what the log says the derived tables hold.
fn scratch(ledgers: &[DocLedger]) -> Result<Connection> {
    let db = Connection::open_in_memory()?;
    for sql in super::migrate::MIGRATIONS {
        db.execute_batch(sql)?;
    }
    let tx = db.unchecked_transaction()?;
    ledger::derive(&tx, ledgers)?;
    tx.commit()?;
    Ok(db)
}

fn rows(db: &Connection, sql: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = db.prepare(sql)?;
    let width = stmt.column_count();
    let mut out = Vec::new();
    let mut q = stmt.query([])?;
    while let Some(r) = q.next()? {
        let mut cells = Vec::with_capacity(width);
        for i in 0..width {
            cells.push(match r.get::<_, Value>(i)? {
                Value::Null => "NULL".to_owned(),
                Value::Integer(n) => n.to_string(),
                Value::Real(f) => f.to_string(),
                Value::Text(t) => format!("{t:?}"),
                Value::Blob(b) => format!("x'{}'", ledger::hex(&b)),
            });
        }
        out.push(cells.join(" | "));
    }
    Ok(out)
}

/// How two multisets of rows differ, in one line with a few examples; `None` if they do not.
fn diff(name: &str, found: Vec<String>, expected: Vec<String>) -> Option<String> {
    let mut count: BTreeMap<String, i64> = BTreeMap::new();
    for r in found {
        *count.entry(r).or_default() += 1;
    }
    for r in expected {
        *count.entry(r).or_default() -= 1;
    }
    let extra: Vec<&String> = count.iter().filter(|(_, n)| **n > 0).map(|(r, _)| r).collect();
    let missing: Vec<&String> = count.iter().filter(|(_, n)| **n < 0).map(|(r, _)| r).collect();
    if extra.is_empty() && missing.is_empty() {
        return None;
    }
    let n_extra: i64 = count.values().filter(|n| **n > 0).sum();
    let n_missing: i64 = -count.values().filter(|n| **n < 0).sum::<i64>();
    let example = |list: &[&String]| list.iter().take(2).map(|s| format!("[{s}]")).collect::<Vec<_>>().join(", ");
    let mut s = format!("{name}: {n_missing} row(s) the log holds are missing, {n_extra} row(s) the log does not hold");
    if !missing.is_empty() {
        s.push_str(&format!("; missing e.g. {}", example(&missing)));
    }
    if !extra.is_empty() {
        s.push_str(&format!("; extra e.g. {}", example(&extra)));
    }
    Some(s)
}

/// Search rows must belong to the rows they index, and the two indexes hold the same rows.
const LINKS: [(&str, &str); 4] = [
    (
        "entities whose search row is missing or not theirs",
        "SELECT count(*) FROM entities e LEFT JOIN search s ON s.rowid = e.fts
         WHERE s.rowid IS NULL OR s.graph IS NOT e.graph OR s.entity IS NOT e.name
            OR s.text IS NOT e.name || char(10) || e.type",
    ),
    (
        "observations whose search row is missing or not theirs",
        "SELECT count(*) FROM observations o LEFT JOIN search s ON s.rowid = o.fts
         WHERE s.rowid IS NULL OR s.graph IS NOT o.graph OR s.entity IS NOT o.entity OR s.text IS NOT o.text",
    ),
    (
        "substring search rows the word index lacks",
        "SELECT count(*) FROM (SELECT rowid, graph, entity, text FROM search
                               EXCEPT SELECT rowid, graph, entity, text FROM words)",
    ),
    (
        "word index rows the substring index lacks",
        "SELECT count(*) FROM (SELECT rowid, graph, entity, text FROM words
                               EXCEPT SELECT rowid, graph, entity, text FROM search)",
    ),
];

fn links(db: &Connection, out: &mut Vec<Finding>) {
    for (what, sql) in LINKS {
        match db.query_row(sql, [], |r| r.get::<_, i64>(0)) {
            Ok(0) => {}
            Ok(n) => out.push(Finding { area: Area::Search, detail: format!("{n} {what}") }),
            Err(e) => out.push(Finding { area: Area::Search, detail: format!("{what}: cannot be read ({e})") }),
        }
    }
}

/// FTS5's own check of each full-text index against its rows. It is spelled as an `INSERT`, so
/// SQLite takes the write lock for it: each runs alone, outside the read transaction, so
/// writers wait for one index's check at a time rather than for the whole of `check`.
fn fts_integrity(db: &Connection, report: &mut CheckReport) {
    for table in super::index::SEARCH_TABLES {
        match db.execute(&format!("INSERT INTO {table} ({table}) VALUES ('integrity-check')"), []) {
            Ok(_) => {}
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly) => report.skipped.push(format!(
                "FTS5 integrity-check of {table}: the file is read-only (PRAGMA integrity_check covered it)"
            )),
            Err(e) => report
                .findings
                .push(Finding { area: Area::Search, detail: format!("{table}: FTS5 integrity-check: {e}") }),
        }
    }
}

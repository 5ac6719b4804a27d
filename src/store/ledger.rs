//! The change log read row by row, tolerating damage: what `check` and `repair` build on.
//!
//! [`super::log::load`] stops at the first row that does not decode, which is right for a
//! replica at work (it must not write on top of a document it could not read whole). An
//! operator needs the opposite: every row judged on its own, the readable ones kept, and a list
//! of the others with why.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use automerge::{Automerge, Change, ChangeHash, ROOT, ReadDoc};
use rusqlite::Connection;

use crate::error::Result;
use crate::ids::DocId;
use crate::names::GraphName;
use crate::schema::{self, DocKind, GraphDocs};

/// One row of `changes`, as stored.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) seq: i64,
    pub(super) doc: Vec<u8>,
    pub(super) hash: Vec<u8>,
    pub(super) deps: Vec<u8>,
    pub(super) agent: String,
    pub(super) at: i64,
    pub(super) bytes: Option<Vec<u8>>,
}

/// Something of the log that cannot be read.
#[derive(Debug, Clone)]
pub(super) struct Unreadable {
    /// The log row (`None`: the document's snapshot).
    pub(super) row: Option<Row>,
    /// The document.
    pub(super) doc: DocId,
    /// A snapshot's bytes, kept when the snapshot is what cannot be read.
    pub(super) snapshot: Option<Vec<u8>>,
    /// Why.
    pub(super) reason: String,
}

/// A logged change that reads back well.
#[derive(Debug)]
pub(super) struct Good {
    pub(super) seq: i64,
    pub(super) agent: String,
    pub(super) at: i64,
    /// The change; `None` when it lives in the snapshot (look it up by `hash`).
    pub(super) change: Option<Change>,
    pub(super) hash: ChangeHash,
}

/// One document as the log holds it: everything readable applied, the rest listed.
#[derive(Debug)]
pub(super) struct DocLedger {
    pub(super) doc: DocId,
    /// The graph and what the document is in it, when known.
    pub(super) place: Option<(GraphName, DocKind)>,
    /// Snapshot plus every readable change.
    pub(super) automerge: Automerge,
    /// The readable changes, in log order.
    pub(super) good: Vec<Good>,
    /// What cannot be read, and what builds on it.
    pub(super) unreadable: Vec<Unreadable>,
    /// Rows whose bytes were rebuilt from the graph's deterministic genesis: their `seq` and
    /// the bytes.
    pub(super) restored: Vec<(i64, Vec<u8>)>,
}

/// Reads every document of the file. `graphs` are graph names already known (from the file's
/// meta and derived tables); documents name their own graph too (genesis writes it).
pub(super) fn read_all(db: &Connection, graphs: &BTreeSet<String>) -> Result<Vec<DocLedger>> {
    let mut rows: BTreeMap<Vec<u8>, Vec<Row>> = BTreeMap::new();
    let mut stmt = db.prepare("SELECT seq, doc, hash, deps, agent, at, bytes FROM changes ORDER BY seq")?;
    let mut q = stmt.query([])?;
    while let Some(r) = q.next()? {
        // Every column read as whatever it holds: a value of the wrong type is damage to report
        // (its row then fails to decode or to match its hash), not a reason to stop reading.
        let raw = |i| r.get_ref(i).map(as_bytes);
        let row = Row {
            seq: r.get(0)?,
            doc: raw(1)?.unwrap_or_default(),
            hash: raw(2)?.unwrap_or_default(),
            deps: raw(3)?.unwrap_or_default(),
            agent: String::from_utf8_lossy(&raw(4)?.unwrap_or_default()).into_owned(),
            at: r.get_ref(5)?.as_i64().unwrap_or(0),
            bytes: raw(6)?,
        };
        rows.entry(row.doc.clone()).or_default().push(row);
    }
    let mut snapshots: BTreeMap<Vec<u8>, (i64, Vec<u8>)> = BTreeMap::new();
    let mut stmt = db.prepare("SELECT doc, upto_seq, bytes FROM snapshots")?;
    let mut q = stmt.query([])?;
    while let Some(r) = q.next()? {
        snapshots.insert(r.get(0)?, (r.get(1)?, r.get(2)?));
    }
    // Which graph each document id belongs to, from the names known so far.
    let mut places: BTreeMap<DocId, (GraphName, DocKind)> = BTreeMap::new();
    let learn = |places: &mut BTreeMap<DocId, (GraphName, DocKind)>, name: &str| {
        if let Ok(graph) = name.parse::<GraphName>() {
            for (id, kind) in GraphDocs::of(&graph).all() {
                places.insert(id, (graph.clone(), kind));
            }
        }
    };
    for g in graphs {
        learn(&mut places, g);
    }
    let ids: BTreeSet<Vec<u8>> = rows.keys().chain(snapshots.keys()).cloned().collect();
    let mut out = Vec::new();
    let mut misplaced = Vec::new();
    for raw in ids {
        let doc_rows = rows.remove(&raw).unwrap_or_default();
        let Ok(id) = <[u8; 16]>::try_from(raw.as_slice()).map(DocId) else {
            // Not a document id at all: nothing of it can be read.
            for row in doc_rows {
                let reason = "its document id is not 16 bytes".to_owned();
                out_bad(&mut misplaced, DocId([0; 16]), row, reason);
            }
            continue;
        };
        let ledger = read_doc(id, places.get(&id).cloned(), doc_rows, snapshots.remove(&raw));
        if ledger.place.is_none()
            && let Ok(Some((automerge::Value::Scalar(v), _))) = ledger.automerge.get(ROOT, "graph")
            && let Some(name) = v.as_str()
        {
            learn(&mut places, name);
        }
        out.push(ledger);
    }
    // Documents read before their graph's name was learnt from another one.
    for ledger in &mut out {
        if ledger.place.is_none() {
            ledger.place = places.get(&ledger.doc).cloned();
        }
    }
    if !misplaced.is_empty() {
        out.push(DocLedger {
            doc: DocId([0; 16]),
            place: None,
            automerge: Automerge::new(),
            good: Vec::new(),
            unreadable: misplaced,
            restored: Vec::new(),
        });
    }
    Ok(out)
}

fn out_bad(list: &mut Vec<Unreadable>, doc: DocId, row: Row, reason: String) {
    list.push(Unreadable { row: Some(row), doc, snapshot: None, reason });
}

/// The genesis change of `doc`, if `hash` is its hash (genesis is the same bytes everywhere).
fn genesis_change(place: &Option<(GraphName, DocKind)>, doc: DocId, hash: &[u8]) -> Option<Change> {
    let (graph, kind) = place.as_ref()?;
    let genesis = schema::genesis(graph, doc, *kind);
    let change = genesis.get_changes(&[]).into_iter().next()?.clone();
    (change.hash().0[..] == *hash).then_some(change)
}

fn read_doc(
    doc: DocId,
    place: Option<(GraphName, DocKind)>,
    rows: Vec<Row>,
    snapshot: Option<(i64, Vec<u8>)>,
) -> DocLedger {
    let mut unreadable = Vec::new();
    let mut restored = Vec::new();
    let (upto, mut am) = match snapshot {
        Some((upto, bytes)) => match Automerge::load(&bytes) {
            Ok(am) => (upto, Some(am)),
            Err(e) => {
                let reason = format!("the document's snapshot does not load ({e})");
                unreadable.push(Unreadable { row: None, doc, snapshot: Some(bytes), reason });
                (upto, None)
            }
        },
        None => (0, None),
    };
    let snapshot_ok = am.is_some();
    let base = am.get_or_insert_with(Automerge::new);
    let mut known: HashSet<ChangeHash> = HashSet::new();
    let mut good = Vec::new();
    let mut loose = Vec::new();
    for row in rows {
        let Ok(hash) = ChangeHash::try_from(row.hash.as_slice()) else {
            out_bad(&mut unreadable, doc, row, "its hash is not 32 bytes".into());
            continue;
        };
        let change = match &row.bytes {
            None if snapshot_ok && row.seq <= upto && base.get_change_by_hash(&hash).is_some() => None,
            None if !snapshot_ok && row.seq <= upto => {
                out_bad(&mut unreadable, doc, row, "its bytes were in the snapshot that does not load".into());
                continue;
            }
            None => {
                out_bad(&mut unreadable, doc, row, "it has no bytes and no snapshot holds it".into());
                continue;
            }
            Some(bytes) => match Change::from_bytes(bytes.clone()) {
                Ok(c) if c.hash() == hash => Some(c),
                decoded => {
                    let why = match decoded {
                        Ok(_) => "its bytes do not match its hash".to_owned(),
                        Err(e) => format!("its bytes do not decode ({e})"),
                    };
                    match genesis_change(&place, doc, &row.hash) {
                        Some(g) => {
                            restored.push((row.seq, g.raw_bytes().to_vec()));
                            Some(g)
                        }
                        None => {
                            out_bad(&mut unreadable, doc, row, why);
                            continue;
                        }
                    }
                }
            },
        };
        let deps: Vec<ChangeHash> = match &change {
            Some(c) => c.deps().to_vec(),
            None => Vec::new(),
        };
        if let Some(c) = &change {
            let stored: Vec<u8> = c.deps().iter().flat_map(|d| d.0).collect();
            if stored != row.deps {
                out_bad(&mut unreadable, doc, row, "its stored dependencies do not match its bytes".into());
                continue;
            }
        }
        // The log is causally closed: a change whose dependency is not readable cannot be applied.
        if let Some(missing) = deps.iter().find(|d| !known.contains(d) && base.get_change_by_hash(d).is_none()) {
            let why = format!("it builds on change {} that cannot be read", hex(&missing.0[..8]));
            out_bad(&mut unreadable, doc, row, why);
            continue;
        }
        known.insert(hash);
        if let Some(c) = &change {
            loose.push(c.clone());
        }
        good.push(Good { seq: row.seq, agent: row.agent, at: row.at, change, hash });
    }
    let mut automerge = am.unwrap_or_default();
    if let Err(e) = automerge.apply_changes(loose) {
        unreadable.push(Unreadable {
            row: None,
            doc,
            snapshot: None,
            reason: format!("its changes do not apply ({e})"),
        });
    }
    DocLedger { doc, place, automerge, good, unreadable, restored }
}

/// Graph names the file mentions outside its documents (graphs opened by this version, and
/// names in the derived tables), each read on its own so that one damaged table hides nothing.
pub(super) fn known_graphs(db: &Connection) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let queries = [
        "SELECT substr(key, length('checkpoint:integrity/v1/') + 1) FROM meta WHERE key LIKE 'checkpoint:integrity/v1/%'",
        "SELECT DISTINCT graph FROM entities",
        "SELECT DISTINCT graph FROM events",
    ];
    for sql in queries {
        let Ok(mut stmt) = db.prepare(sql) else { continue };
        let Ok(mut rows) = stmt.query([]) else { continue };
        while let Ok(Some(r)) = rows.next() {
            if let Ok(name) = r.get::<_, String>(0) {
                out.insert(name);
            }
        }
    }
    out
}

/// Writes what the log holds into the derived tables of `db` (which must be empty): the index
/// and search rows of every shard, and the history of every readable change. The same code
/// fills a scratch database for `check` and the file itself for `repair`.
pub(super) fn derive(db: &Connection, ledgers: &[DocLedger]) -> Result<()> {
    let mut search = super::index::SearchUpdates::default();
    for ledger in ledgers {
        let Some((graph, DocKind::Shard(_))) = &ledger.place else { continue };
        let Ok(layout) = schema::Layout::of(&ledger.automerge) else { continue };
        let doc = &ledger.automerge;
        let everything = crate::decode::Touched::everything(doc, &layout);
        super::index::refresh(db, graph.as_str(), doc, &layout, &everything, &mut search)?;
        for good in &ledger.good {
            let change = match &good.change {
                Some(c) => c.clone(),
                None => match doc.get_change_by_hash(&good.hash) {
                    Some(c) => c.clone(),
                    None => continue,
                },
            };
            let happened = crate::decode::decode(&change, doc, &layout, false, &mut Default::default());
            super::events::insert(db, good.seq, graph.as_str(), &good.agent, good.at, &happened)?;
        }
    }
    search.apply(db)
}

/// A stored value's bytes, whatever its type (`None` for NULL).
pub(super) fn as_bytes(v: rusqlite::types::ValueRef<'_>) -> Option<Vec<u8>> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => None,
        ValueRef::Blob(b) | ValueRef::Text(b) => Some(b.to_vec()),
        ValueRef::Integer(n) => Some(n.to_string().into_bytes()),
        ValueRef::Real(f) => Some(f.to_string().into_bytes()),
    }
}

/// Lowercase hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

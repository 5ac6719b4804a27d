//! The relay's storage in one SQLite file (`relay.db` in the data directory): every document as
//! a change log (latest snapshot + the changes after it), and the tokens.
//!
//! The relay is the only writer of documents to its file, so a document it has loaded stays
//! current: it is read from the file once and then kept. The token commands
//! (`cairn relay token ...`) write the same file from another process, through
//! [`SqliteTokens`], which reads the file afresh on every call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn::automerge::sync::{self, SyncDoc};
use cairn::automerge::{Automerge, Change, ChangeHash};
use cairn::sync::{MemoryDocs, SyncDocs};
use cairn::{DocId, Durability, Error, Millis, Result};
use rusqlite::{Connection, OptionalExtension, params};

use super::migrate::{self, SchemaError};
use super::{StorageError, TokenRecord, TokenStore};

/// How many loose changes a document may gather before loading it writes a snapshot.
const SNAPSHOT_EVERY: i64 = 500;

/// Opens (creating and migrating if needed) a relay file.
fn open_file(path: &Path, durability: Durability) -> Result<Connection, SchemaError> {
    let mut conn = Connection::open(path)?;
    // The token commands and the relay share the file: wait for the other's short
    // transaction instead of failing.
    conn.busy_timeout(Duration::from_secs(10))?;
    // The first read of the file: where a file that is not SQLite at all is told apart.
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).map_err(|e| migrate::not_sqlite(path, e))?;
    conn.pragma_update(None, "synchronous", durability.sqlite_synchronous())?;
    // As a replica's file: a checkpoint every 16 MiB of log rather than every 4 MiB, so that
    // fewer writes pay for one.
    conn.pragma_update(None, "wal_autocheckpoint", 4000)?;
    migrate::run(&mut conn, path)?;
    Ok(conn)
}

fn schema_error(e: SchemaError) -> Error {
    Error::Storage(Box::new(e))
}

fn corrupt(doc: &DocId, reason: impl std::fmt::Display) -> Error {
    Error::CorruptStore { doc: doc.to_string(), reason: reason.to_string() }
}

/// The relay's documents.
#[derive(Debug)]
pub struct RelayStore {
    conn: Connection,
    /// The data directory's lock: one relay per directory (`lock.rs`).
    _lock: super::lock::DirLock,
    /// The documents read from the file so far. The relay is its file's only writer of
    /// documents, so once read they stay current; every sync step but logging is theirs.
    loaded: MemoryDocs,
    metrics: Option<Arc<crate::Metrics>>,
}

impl RelayStore {
    /// The database file inside a relay data directory.
    pub fn file_in(dir: &Path) -> PathBuf {
        dir.join("relay.db")
    }

    /// Opens (creating if needed) the store in `dir`, holding the directory's lock for as long
    /// as the store lives: a directory another relay holds is refused with
    /// [`RelayError::InUse`](crate::RelayError::InUse), naming the holder's pid. (The token
    /// commands share the file through [`SqliteTokens`], which takes no lock.)
    pub fn open(dir: &Path, durability: Durability) -> Result<RelayStore, crate::RelayError> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
        let lock = match super::lock::DirLock::acquire(dir) {
            Ok(lock) => lock,
            Err(super::LockError::InUse(held)) => return Err(held.into()),
            Err(other) => return Err(Error::Storage(Box::new(other)).into()),
        };
        let conn = open_file(&Self::file_in(dir), durability).map_err(schema_error)?;
        Ok(RelayStore { conn, _lock: lock, loaded: MemoryDocs::new(), metrics: None })
    }

    /// Counts storage writes and their latency into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Reads document `id` from the file into memory, the first time it is asked for (if the
    /// file has anything of it).
    fn load(&mut self, id: &DocId) -> Result<()> {
        if self.loaded.get(id).is_none()
            && let Some(doc) = load(&self.conn, id)?
        {
            self.loaded.insert(*id, doc);
        }
        Ok(())
    }

    /// Applies `message` to the document (new if needed) and logs what it brought, in one
    /// transaction.
    fn receive_and_log(&mut self, id: &DocId, state: &mut sync::State, message: sync::Message) -> Result<usize> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if self.loaded.get(id).is_none()
            && let Some(doc) = load(&tx, id)?
        {
            self.loaded.insert(*id, doc);
        }
        if self.loaded.get(id).is_none() {
            // A document this version starts holds nothing the check refuses.
            mark_sifted(&tx, id)?;
        }
        let doc = self.loaded.get_or_create(id);
        let before = doc.get_heads();
        doc.receive_sync_message(state, message).map_err(|e| Error::CorruptChange(e.to_string()))?;
        let applied = doc.get_changes(&before);
        for change in &applied {
            append(&tx, id, change)?;
        }
        tx.commit()?;
        Ok(applied.len())
    }
}

impl SyncDocs for RelayStore {
    fn exists(&mut self, doc: &DocId) -> Result<bool> {
        self.load(doc)?;
        self.loaded.exists(doc)
    }

    fn generate(&mut self, doc: &DocId, state: &mut sync::State) -> Result<Option<sync::Message>> {
        self.load(doc)?;
        self.loaded.generate(doc, state)
    }

    fn receive(&mut self, doc: &DocId, state: &mut sync::State, message: sync::Message) -> Result<usize> {
        // A message without changes (an acknowledgement, a bloom filter) changes only the sync
        // state: no write transaction for it.
        self.load(doc)?;
        if message.changes.is_empty() && self.loaded.get(doc).is_some() {
            return self.loaded.receive(doc, state, message);
        }
        let started = std::time::Instant::now();
        let result = self.receive_and_log(doc, state, message);
        if result.is_err() {
            // The document may hold changes the file rolled back: read it again from the file.
            self.loaded.remove(doc);
        }
        if let Some(m) = &self.metrics {
            crate::Metrics::add(&m.storage_writes, 1);
            crate::Metrics::add(&m.storage_write_micros, started.elapsed().as_micros() as u64);
        }
        result
    }

    fn has_all(&mut self, doc: &DocId, heads: &[ChangeHash]) -> Result<bool> {
        self.load(doc)?;
        self.loaded.has_all(doc, heads)
    }

    fn heads(&mut self, doc: &DocId) -> Result<Vec<ChangeHash>> {
        self.load(doc)?;
        self.loaded.heads(doc)
    }

    fn rules(&mut self, doc: &DocId) -> Result<Option<cairn::integrity::DocRules>> {
        self.load(doc)?;
        self.loaded.rules(doc)
    }
}

impl crate::hub::ActorBook for RelayStore {
    fn owner(&mut self, actor: &cairn::automerge::ActorId) -> Result<Option<String>> {
        let owner = self
            .conn
            .query_row("SELECT credential FROM actors WHERE actor = ?1", [actor.to_bytes()], |r| r.get(0))
            .optional()?;
        Ok(owner)
    }

    fn bind(&mut self, actor: &cairn::automerge::ActorId, credential: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO actors (actor, credential, bound_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![actor.to_bytes(), credential, cairn::now_millis()],
        )?;
        Ok(())
    }
}

/// Appends a change to a document's log (a change already there is skipped: re-delivery is
/// harmless).
fn append(db: &Connection, doc: &DocId, change: &Change) -> Result<()> {
    let deps: Vec<u8> = change.deps().iter().flat_map(|h| h.0).collect();
    let (agent, at) = cairn::schema::change_author(change);
    db.prepare_cached(
        "INSERT OR IGNORE INTO changes (doc, hash, deps, agent, at, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![&doc.as_bytes()[..], &change.hash().0[..], deps, agent, at, change.raw_bytes()])?;
    Ok(())
}

/// Loads a document (its snapshot, then the changes after it), saving a new snapshot when many
/// changes gathered. `None` if the file has nothing of it.
fn load(db: &Connection, doc: &DocId) -> Result<Option<Automerge>> {
    let id = &doc.as_bytes()[..];
    let snapshot: Option<(i64, Vec<u8>)> = db
        .prepare_cached("SELECT upto_seq, bytes FROM snapshots WHERE doc = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (upto, mut am) = match &snapshot {
        Some((upto, bytes)) => (*upto, Automerge::load(bytes).map_err(|e| corrupt(doc, e))?),
        None => (0, Automerge::new()),
    };
    let mut changes = Vec::new();
    let mut newest = upto;
    let mut stmt = db.prepare_cached("SELECT seq, bytes FROM changes WHERE doc = ?1 AND seq > ?2 ORDER BY seq")?;
    let mut rows = stmt.query(params![id, upto])?;
    while let Some(row) = rows.next()? {
        newest = row.get(0)?;
        let bytes: Option<Vec<u8>> = row.get(1)?;
        let bytes = bytes.ok_or_else(|| corrupt(doc, "a change after the snapshot has no bytes"))?;
        changes.push(Change::from_bytes(bytes).map_err(|e| corrupt(doc, e))?);
    }
    if snapshot.is_none() && changes.is_empty() {
        return Ok(None);
    }
    let loose = changes.len() as i64;
    am.apply_changes(changes).map_err(|e| corrupt(doc, e))?;
    if !is_sifted(db, doc)? {
        am = sift(db, doc, am, newest)?;
    } else if loose > SNAPSHOT_EVERY {
        // A snapshot is only an optimisation (the file may be busy with a token command): a
        // failure to save one is not the load's failure.
        if let Err(e) = snapshot_at(db, doc, &am, newest) {
            tracing::warn!(%doc, error = %e, "could not save a snapshot");
        }
    }
    Ok(Some(am))
}

fn is_sifted(db: &Connection, doc: &DocId) -> Result<bool> {
    let found = db
        .prepare_cached("SELECT 1 FROM sifted WHERE doc = ?1")?
        .query_row([&doc.as_bytes()[..]], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

fn mark_sifted(db: &Connection, doc: &DocId) -> rusqlite::Result<()> {
    db.prepare_cached("INSERT OR IGNORE INTO sifted (doc) VALUES (?1)")?.execute([&doc.as_bytes()[..]])?;
    Ok(())
}

/// Sifts a document stored before the relay checked changes (see `relay_v2.sql`): what the
/// schema check refuses moves to the quarantine, and the document is saved without it. Returns
/// the document to serve. If the file cannot take the move now, the sifted document is served
/// anyway (nothing refused is forwarded) and the move is tried again at the next load.
fn sift(db: &Connection, doc: &DocId, am: Automerge, upto: i64) -> Result<Automerge> {
    let Some(sifted) = cairn::integrity::sift(*doc, &am) else {
        if let Err(e) = mark_sifted(db, doc) {
            tracing::warn!(%doc, error = %e, "could not record a sifted document");
        }
        return Ok(am);
    };
    tracing::warn!(%doc, changes = sifted.refused.len(), "quarantined stored changes the schema check refuses");
    let id = &doc.as_bytes()[..];
    db.execute_batch("SAVEPOINT sift")?;
    let moved = (|| -> rusqlite::Result<()> {
        for r in &sifted.refused {
            let (agent, at) = cairn::schema::change_author(&r.change);
            let hash = r.change.hash();
            db.prepare_cached(
                "INSERT OR IGNORE INTO quarantine (doc, hash, agent, at, rule, detail, bytes, quarantined_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                id,
                &hash.0[..],
                agent,
                at,
                r.rule.map(|rule| rule.id()),
                r.detail,
                r.change.raw_bytes(),
                cairn::now_millis()
            ])?;
            db.prepare_cached("DELETE FROM changes WHERE doc = ?1 AND hash = ?2")?.execute(params![id, &hash.0[..]])?;
        }
        snapshot_at(db, doc, &sifted.doc, upto)?;
        mark_sifted(db, doc)
    })();
    match moved {
        Ok(()) => db.execute_batch("RELEASE sift")?,
        Err(e) => {
            let _ = db.execute_batch("ROLLBACK TO sift; RELEASE sift");
            tracing::warn!(%doc, error = %e, "could not move refused changes to the quarantine; will retry at the next load");
        }
    }
    Ok(sifted.doc)
}

/// Saves `am` (holding every change of `doc` logged up to `upto`) as its snapshot and clears
/// the bytes of the changes it folds in; their rows stay. Both or neither: a savepoint, which
/// nests inside a write transaction and is a transaction of its own outside one.
fn snapshot_at(db: &Connection, doc: &DocId, am: &Automerge, upto: i64) -> rusqlite::Result<()> {
    let id = &doc.as_bytes()[..];
    db.execute_batch("SAVEPOINT snapshot")?;
    let saved = db
        .prepare_cached("INSERT OR REPLACE INTO snapshots (doc, upto_seq, bytes) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![id, upto, am.save()]))
        .and_then(|_| {
            db.prepare_cached("UPDATE changes SET bytes = NULL WHERE doc = ?1 AND seq <= ?2 AND bytes IS NOT NULL")?
                .execute(params![id, upto])
        });
    match saved {
        Ok(_) => db.execute_batch("RELEASE snapshot"),
        Err(e) => {
            let _ = db.execute_batch("ROLLBACK TO snapshot; RELEASE snapshot");
            Err(e)
        }
    }
}

/// The relay's tokens, in its data file.
#[derive(Debug)]
pub struct SqliteTokens {
    db: Mutex<Connection>,
}

impl SqliteTokens {
    /// Opens the tokens of the relay file at `path` (created and migrated if needed).
    pub fn open(path: &Path) -> Result<SqliteTokens, StorageError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StorageError(Box::new(e)))?;
        }
        let db = open_file(path, Durability::Full).map_err(|e| StorageError(Box::new(e)))?;
        Ok(SqliteTokens { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A connection holds no half-done state between statements: a panic elsewhere leaves it usable.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        hash: r.get(1)?,
        graphs: r.get(2)?,
        role: r.get(3)?,
        label: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
        revoked_at: r.get(7)?,
        agents: r.get(8)?,
    })
}

const TOKEN_COLUMNS: &str = "id, hash, graphs, role, label, created_at, expires_at, revoked_at, agents";

impl TokenStore for SqliteTokens {
    fn insert(&self, t: &TokenRecord) -> Result<(), StorageError> {
        self.db().execute(
            &format!("INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![t.id, t.hash, t.graphs, t.role, t.label, t.created_at, t.expires_at, t.revoked_at, t.agents],
        )?;
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<TokenRecord>, StorageError> {
        Ok(self
            .db()
            .prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"))?
            .query_row([id], token_row)
            .optional()?)
    }

    fn list(&self) -> Result<Vec<TokenRecord>, StorageError> {
        let db = self.db();
        let mut stmt = db.prepare(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at DESC, id"))?;
        let rows = stmt.query_map([], token_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn revoke(&self, id: &str, now: Millis) -> Result<bool, StorageError> {
        let n = self
            .db()
            .execute("UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1", params![id, now])?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_relay_file_has_no_replica_tables() {
        let dir = tempfile::tempdir().unwrap();
        drop(RelayStore::open(dir.path(), Durability::Normal).unwrap());
        let db = Connection::open(RelayStore::file_in(dir.path())).unwrap();
        let mut tables: Vec<String> = db
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        tables.sort();
        assert_eq!(tables, ["actors", "changes", "meta", "quarantine", "sifted", "snapshots", "tokens"]);
        let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, migrate::MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_relay_file_from_before_its_own_schema_converts_keeping_documents_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let file = RelayStore::file_in(dir.path());
        // What older relays wrote: a replica file (its migrations, its application id) with a
        // tokens table beside, and documents in `changes`.
        let replica = cairn::Replica::open(&file, "relay").unwrap();
        drop(replica);
        let genesis_rows: i64 = {
            let db = Connection::open(&file).unwrap();
            db.execute_batch(
                "CREATE TABLE tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL, graphs TEXT NOT NULL,
                     role TEXT NOT NULL, label TEXT, created_at INTEGER NOT NULL, expires_at INTEGER,
                     revoked_at INTEGER);
                 INSERT INTO tokens VALUES ('abcd', 'h', '[\"team\"]', 'write', NULL, 1, NULL, NULL);
                 DELETE FROM events; DELETE FROM entities; DELETE FROM cursors;",
            )
            .unwrap();
            db.query_row("SELECT count(*) FROM changes", [], |r| r.get(0)).unwrap()
        };
        assert!(genesis_rows > 0);
        let mut store = RelayStore::open(dir.path(), Durability::Normal).unwrap();
        let root = cairn::GraphDocs::of(&cairn::GraphName::default_graph()).root;
        assert!(store.exists(&root).unwrap(), "the documents are still served");
        let tokens = SqliteTokens::open(&file).unwrap();
        assert_eq!(tokens.get("abcd").unwrap().map(|t| t.role), Some("write".to_owned()));
        let db = Connection::open(&file).unwrap();
        let entities: i64 =
            db.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'entities'", [], |r| r.get(0)).unwrap();
        assert_eq!(entities, 0, "the replica's tables are gone");
    }

    /// Every change of `doc` in one message, as a peer that knows the relay has nothing sends it.
    fn everything(doc: &Automerge) -> sync::Message {
        let mut state = sync::State::new();
        state.their_heads = Some(vec![]);
        state.their_have = Some(vec![sync::Have { last_sync: vec![], bloom: Default::default() }]);
        state.their_need = Some(vec![]);
        doc.generate_sync_message(&mut state).unwrap()
    }

    #[test]
    fn a_document_with_many_loose_changes_is_snapshotted_on_load_and_reads_the_same() {
        use cairn::automerge::transaction::Transactable;
        let dir = tempfile::tempdir().unwrap();
        let id = DocId::from_bytes([5; 16]);
        let mut source = Automerge::new();
        for i in 0..(SNAPSHOT_EVERY + 20) {
            let mut tx = source.transaction();
            tx.put(cairn::automerge::ROOT, "n", i).unwrap();
            tx.commit();
        }
        let message = everything(&source);
        let mut store = RelayStore::open(dir.path(), Durability::Normal).unwrap();
        assert_eq!(store.receive(&id, &mut sync::State::new(), message).unwrap(), SNAPSHOT_EVERY as usize + 20);
        drop(store);
        let mut store = RelayStore::open(dir.path(), Durability::Normal).unwrap();
        assert_eq!(store.heads(&id).unwrap(), source.get_heads(), "loaded whole");
        let db = Connection::open(RelayStore::file_in(dir.path())).unwrap();
        let (snapshots, folded): (i64, i64) = db
            .query_row(
                "SELECT (SELECT count(*) FROM snapshots), (SELECT count(*) FROM changes WHERE bytes IS NULL)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((snapshots, folded), (1, SNAPSHOT_EVERY + 20), "the load saved a snapshot");
        drop(store);
        let mut again = RelayStore::open(dir.path(), Durability::Normal).unwrap();
        assert_eq!(again.heads(&id).unwrap(), source.get_heads(), "and the snapshot loads");
    }

    #[test]
    fn a_replica_with_data_is_not_taken_for_a_relay_file() {
        let dir = tempfile::tempdir().unwrap();
        let replica = cairn::Replica::open(RelayStore::file_in(dir.path()), "someone").unwrap();
        replica
            .write(&[cairn::Op::CreateEntity { name: "A".into(), entity_type: "t".into(), observations: vec![] }])
            .unwrap();
        drop(replica);
        let err = RelayStore::open(dir.path(), Durability::Normal).unwrap_err().to_string();
        assert!(err.contains("replica's database, not a relay's"), "{err}");
    }

    #[test]
    fn a_document_an_older_relay_stored_is_sifted_once_and_never_serves_what_the_check_refuses() {
        use cairn::automerge::ReadDoc;
        use cairn::automerge::transaction::{CommitOptions, Transactable};
        let dir = tempfile::tempdir().unwrap();
        let graph = cairn::GraphName::default_graph();
        let id = cairn::GraphDocs::of(&graph).shard_for("Alice");
        let mut doc = cairn::integrity::DocRules::new(&graph, id).unwrap().genesis();
        doc.set_actor(cairn::automerge::ActorId::random());
        let (_, entities) = doc.get(cairn::automerge::ROOT, "entities").unwrap().unwrap();
        let commit = |doc: &mut Automerge, key: &str| {
            let mut tx = doc.transaction();
            tx.put(&entities, key, r#"{"type":"person","by":"a","at":1}"#).unwrap();
            tx.commit_with(CommitOptions::default().with_message(r#"{"agent":"a"}"#.to_owned()));
        };
        commit(&mut doc, "Alice");
        let honest = doc.get_heads();
        commit(&mut doc, "Al\u{1f}ice"); // a name holding the key separator, which an older relay stored
        commit(&mut doc, "Alicia"); // and a write on top of it (a valid name, wrong shard: no matter)
        let message = everything(&doc);
        let mut store = RelayStore::open(dir.path(), Durability::Normal).unwrap();
        store.receive(&id, &mut sync::State::new(), message).unwrap();
        drop(store);
        let db = Connection::open(RelayStore::file_in(dir.path())).unwrap();
        db.execute("DELETE FROM sifted", []).unwrap(); // as an older relay left it

        let mut store = RelayStore::open(dir.path(), Durability::Normal).unwrap();
        assert_eq!(store.heads(&id).unwrap(), honest, "served without the refused change and what builds on it");
        let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
        let rules: Vec<(Option<String>, String)> = db
            .prepare("SELECT rule, detail FROM quarantine")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert_eq!(count("SELECT count(*) FROM quarantine WHERE rule = 'key'"), 1, "{rules:?}");
        assert_eq!(count("SELECT count(*) FROM changes"), 2, "genesis and the honest write stay in the log");
        drop(store);
        let mut again = RelayStore::open(dir.path(), Durability::Normal).unwrap();
        assert_eq!(again.heads(&id).unwrap(), honest, "and it stays that way");
        assert_eq!(count("SELECT count(*) FROM quarantine"), 2, "sifted once");
    }
}

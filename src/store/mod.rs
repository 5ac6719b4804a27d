//! Storage: one SQLite file per replica, in WAL mode, behind one type, [`DocLog`].
//!
//! Ground truth is the append-only change log (`changes`, with `snapshots` folding old changes
//! into saved documents without dropping history). Everything else — the entity, observation
//! and relation tables, the FTS5 search indexes, the event history — is derived from it, and is
//! updated in the same transaction as the change it derives from.
//!
//! **Architecture invariant: no SQL outside this module, and no way around its two cache
//! rules.** The rest of the crate reads and writes only through [`DocLog::read`] and
//! [`DocLog::write`], whose [`Txn`] hands out documents already caught up with whatever other
//! processes logged, and whose failure (an `Err` or a panic) drops every cached document before
//! anyone else can use the file again.

mod access;
mod audit;
mod backup;
mod docs;
pub(crate) mod events;
pub(crate) mod fault;
pub(crate) mod index;
mod ledger;
mod log;
mod meta;
mod migrate;
mod quarantine;
mod repair;
pub(crate) mod search;
mod set_aside;
mod warm;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use automerge::{ActorId, Automerge, Change, ChangeHash};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::decode::{self, Touched};
use crate::error::{Error, Result};
use crate::ids::{DocId, LogPosition, ReplicaId};
use crate::names::GraphName;

pub use access::{Access, ReadOnlyCause};
pub(crate) use audit::check;
pub use audit::{Area, CheckReport, Finding};
pub use backup::BackupReport;
pub(crate) use backup::backup;
pub(crate) use docs::Cached;
use docs::DocCache;
pub use quarantine::QuarantinedChange;
pub(crate) use repair::repair;
pub use repair::{RepairReport, SetAside};
pub use warm::WarmUp;

/// How hard a commit works to survive power loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: a write that returned survives power loss as well as a crash. The default.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a write that returned survives the process being killed at any
    /// instant; the last writes before a power loss or OS crash may be lost (the file still opens).
    Normal,
}

impl Durability {
    /// The SQLite `synchronous` setting that gives this durability (to any SQLite file that
    /// Cairn writes: a replica's, or the relay's).
    pub fn sqlite_synchronous(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// One replica file: its connection and the documents loaded from it, behind one lock.
#[derive(Debug)]
pub(crate) struct DocLog {
    path: PathBuf,
    replica: ReplicaId,
    /// Why the file is open read-only, if it is: then every write is refused before SQL.
    read_only: Option<ReadOnlyCause>,
    /// Shared with the warming thread (`warm.rs`), which holds it weakly.
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    conn: Connection,
    cache: DocCache,
}

impl DocLog {
    /// Opens (creating if needed) a replica file, runs pending migrations, and refuses files that
    /// are not Cairn's. Documents loaded through it write under `actor`. Opened read-only (asked
    /// for, or because `access` is `Auto` and this process may not write the file), it creates
    /// and migrates nothing, and every write is refused with [`Error::ReadOnly`].
    pub(crate) fn open(path: &Path, durability: Durability, actor: ActorId, access: Access) -> Result<DocLog> {
        DocLog::open_inner(path, durability, actor, access).map_err(|e| fault::in_file(e, path))
    }

    fn open_inner(path: &Path, durability: Durability, actor: ActorId, access: Access) -> Result<DocLog> {
        let read_only = access::resolve(path, access)?;
        let conn = match read_only {
            None => Self::open_writable(path, durability)?,
            Some(cause) => {
                let conn = access::open_read_only(path, cause)?;
                conn.busy_timeout(Duration::from_secs(30))?;
                migrate::check_owner(&conn, path)?;
                migrate::require_current(&conn, path, cause)?;
                conn
            }
        };
        search::register_functions(&conn)?;
        let replica = meta::replica_id(&conn)?;
        Ok(DocLog {
            path: path.to_owned(),
            replica,
            read_only,
            inner: Arc::new(Mutex::new(Inner { conn, cache: DocCache::new(actor) })),
        })
    }

    fn open_writable(path: &Path, durability: Durability) -> Result<Connection> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(|e| migrate::open_error(path, e))?;
        // Several processes share one file; a writer waits for another's short transaction
        // instead of failing.
        conn.busy_timeout(Duration::from_secs(30))?;
        migrate::check_owner(&conn, path)?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
        conn.pragma_update(None, "synchronous", durability.sqlite_synchronous())?;
        // Checkpoint the WAL every 4000 pages (16 MiB) instead of SQLite's 1000: one write in a
        // few hundred pays for a checkpoint instead of one in a few dozen, which took p99 write
        // latency at 10k entities from ~3.9 ms to ~1.2 ms (BENCHMARKS.md).
        conn.pragma_update(None, "wal_autocheckpoint", 4000)?;
        migrate::run(&mut conn, path)?;
        Ok(conn)
    }

    /// Why the file is open read-only, if it is.
    pub(crate) fn read_only(&self) -> Option<ReadOnlyCause> {
        self.read_only
    }

    /// The error for `action`, refused because the file is open read-only for `cause`.
    pub(crate) fn refused(&self, cause: ReadOnlyCause, action: impl Into<String>) -> Error {
        access::refused(&self.path, cause, action)
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The id that versions issued by this file carry.
    pub(crate) fn replica_id(&self) -> ReplicaId {
        self.replica
    }

    /// The size of the database file and its write-ahead log, in bytes.
    pub(crate) fn size_bytes(&self) -> u64 {
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        [&self.path, &wal].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock_inner(&self.inner)
    }

    /// Starts loading documents `ids` into memory on a thread of their own (see `warm.rs`).
    pub(crate) fn warm(&self, ids: Vec<DocId>) -> Result<WarmUp> {
        warm::start(&self.path, Arc::downgrade(&self.inner), ids).map_err(|e| fault::in_file(e, &self.path))
    }

    /// Runs `f` in a read transaction: one consistent snapshot of the file.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<T>) -> Result<T> {
        self.read_inner(f).map_err(|e| fault::in_file(e, &self.path))
    }

    fn read_inner<T>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<T>) -> Result<T> {
        let mut guard = self.lock();
        let Inner { conn, cache } = &mut *guard;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        // A read changes no document's content (it may load documents, or move a peer's sync
        // state), so a failed read leaves the cache as true as it found it.
        let out = f(&mut Txn::new(&tx, cache, false))?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`: it holds the file's write lock from
    /// the start, so the state `f` reads cannot change under it). Search rows it queued are
    /// written last; it commits if everything returned `Ok`. On any failure the transaction is
    /// rolled back and every cached document dropped before the lock is released, so no other
    /// thread can build on changes the file does not hold.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<T>) -> Result<T> {
        if let Some(cause) = self.read_only {
            return Err(self.refused(cause, "write to it"));
        }
        let mut guard = self.lock();
        let Inner { conn, cache } = &mut *guard;
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (out, search) = {
                let mut txn = Txn::new(&tx, cache, true);
                let out = f(&mut txn)?;
                (out, std::mem::take(&mut txn.search))
            };
            search.apply(&tx)?;
            tx.commit()?;
            Ok(out)
        })();
        if result.is_err() {
            cache.clear();
        }
        result.map_err(|e| fault::in_file(e, &self.path))
    }
}

/// Locks a replica's connection and cache.
fn lock_inner(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    match inner.lock() {
        Ok(guard) => guard,
        Err(poisoned) => {
            // A panic inside a transaction: SQLite rolled it back, but cached documents may
            // hold what it had applied. Forget them; the file is the truth.
            let mut guard = poisoned.into_inner();
            guard.cache.clear();
            inner.clear_poison();
            guard
        }
    }
}

/// One transaction on a [`DocLog`]: the only way to its documents and its SQL.
pub(crate) struct Txn<'a> {
    db: &'a Transaction<'a>,
    cache: &'a mut DocCache,
    caught_up: bool,
    writable: bool,
    /// Search rows to write last (see [`index::SearchUpdates`]).
    search: index::SearchUpdates,
}

impl<'a> Txn<'a> {
    fn new(db: &'a Transaction<'a>, cache: &'a mut DocCache, writable: bool) -> Self {
        Txn { db, cache, caught_up: false, writable, search: index::SearchUpdates::default() }
    }

    /// The cache, caught up with what other processes logged (once per transaction).
    fn cache(&mut self) -> Result<&mut DocCache> {
        if !self.caught_up {
            self.cache.catch_up(self.db)?;
            self.caught_up = true;
        }
        Ok(self.cache)
    }

    /// The newest log position in the file (0 when empty).
    pub(crate) fn position(&self) -> Result<LogPosition> {
        log::max_seq(self.db).map(LogPosition)
    }

    /// A document, loaded from the log if needed; `None` if the file has nothing of it. In a
    /// write transaction, loading a document with many loose changes also saves a snapshot.
    pub(crate) fn doc(&mut self, id: DocId) -> Result<Option<&mut Cached>> {
        let compact = self.writable;
        let db = self.db;
        self.cache()?.entry(db, id, compact)
    }

    /// A document that must exist (every document of an open graph does).
    pub(crate) fn existing(&mut self, id: DocId) -> Result<&mut Cached> {
        self.doc(id)?.ok_or_else(|| missing_doc(&id))
    }

    /// Runs `f` on several documents at once, each owned (so `f` may edit them on different
    /// threads). Every id must be a document of the file.
    pub(crate) fn with_docs<T>(
        &mut self,
        ids: &[DocId],
        f: impl FnOnce(&mut [(DocId, Cached)]) -> Result<T>,
    ) -> Result<T> {
        for id in ids {
            self.existing(*id)?;
        }
        let mut docs = self.cache.take(ids.iter().copied());
        let out = f(&mut docs);
        self.cache.put_back(docs);
        out
    }

    /// Logs changes that document `id` already holds (in the cache), records their events and
    /// refreshes the derived index of `graph` for the keys they touched. Changes the file already
    /// has are skipped. `local`: written by this replica just now (see [`Touched::written`]).
    /// Returns the newest position logged, if any.
    pub(crate) fn log(
        &mut self,
        graph: &GraphName,
        id: DocId,
        changes: &[Change],
        local: bool,
    ) -> Result<Option<LogPosition>> {
        if !self.writable {
            return Err(Error::CorruptStore { doc: id.to_string(), reason: "a change logged outside a write".into() });
        }
        self.cache()?;
        let Txn { db, cache, search, .. } = self;
        let cached = cache.entry(db, id, false)?.ok_or_else(|| missing_doc(&id))?;
        let mut touched = Touched::default();
        let mut newest = None;
        for change in changes {
            let (agent, at) = (decode::change_agent(change), decode::change_time(change));
            let Some(seq) = log::append(db, &id, change, &agent, at)? else { continue };
            newest = Some(seq);
            if let Some(layout) = &cached.layout {
                let happened = decode::decode(change, &cached.doc, layout, local, &mut touched);
                events::insert(db, seq, graph.as_str(), &agent, at, &happened)?;
            }
        }
        if let (Some(layout), false) = (&cached.layout, touched.is_empty()) {
            index::refresh(db, graph.as_str(), &cached.doc, layout, &touched, search)?;
        }
        if let Some(seq) = newest {
            // The cache was caught up before this append and its document holds the change.
            cache.mark_seen(seq);
        }
        Ok(newest.map(LogPosition))
    }

    /// Creates a document the file does not hold yet from `doc` (a genesis) and logs its changes.
    pub(crate) fn create(&mut self, graph: &GraphName, id: DocId, doc: Automerge) -> Result<()> {
        let changes = doc.get_changes(&[]);
        self.cache()?.insert(id, doc);
        self.log(graph, id, &changes, false)?;
        Ok(())
    }

    /// Whether the file holds any change of `doc`.
    pub(crate) fn holds(&self, doc: &DocId) -> Result<bool> {
        log::holds(self.db, doc)
    }

    /// Whether the file holds every change in `heads` of `doc`.
    pub(crate) fn has_all(&self, doc: &DocId, heads: &[ChangeHash]) -> Result<bool> {
        log::has_all(self.db, doc, heads)
    }

    /// The heads of `doc` as of log position `seq`.
    pub(crate) fn heads_at(&self, doc: &DocId, seq: LogPosition) -> Result<Vec<ChangeHash>> {
        log::heads_at(self.db, doc, seq.0)
    }

    /// Saves every document of `ids` as a snapshot (write transactions only).
    pub(crate) fn compact(&mut self, ids: impl IntoIterator<Item = DocId>) -> Result<usize> {
        self.cache()?;
        let Txn { db, cache, .. } = self;
        let mut n = 0;
        for id in ids {
            if let Some(cached) = cache.entry(db, id, false)? {
                log::snapshot(db, &id, &cached.doc)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Rebuilds the derived index of `graph` from the documents `ids`.
    pub(crate) fn reindex(&mut self, graph: &GraphName, ids: impl IntoIterator<Item = DocId>) -> Result<()> {
        index::clear_graph(self.db, graph.as_str())?;
        self.cache()?;
        let Txn { db, cache, search, .. } = self;
        for id in ids {
            if let Some(Cached { doc, layout: Some(layout) }) = cache.entry(db, id, true)? {
                index::refresh(db, graph.as_str(), doc, layout, &Touched::everything(doc, layout), search)?;
            }
        }
        Ok(())
    }

    /// Sifts documents `ids` of `graph` once (see `schema_v3.sql`): whatever the schema check
    /// refuses moves to the quarantine, and if anything did, the graph's index is rebuilt.
    /// Returns how many changes were quarantined.
    pub(crate) fn sift(&mut self, graph: &GraphName, ids: &[DocId]) -> Result<usize> {
        self.cache()?;
        let Txn { db, cache, .. } = self;
        let mut moved = 0;
        for id in ids {
            let Some(cached) = cache.entry(db, *id, false)? else { continue };
            let Some(sifted) = crate::integrity::sift(*id, &cached.doc) else { continue };
            tracing::warn!(doc = %id, changes = sifted.refused.len(), "quarantined stored changes the schema check refuses");
            quarantine::move_out(db, id, &sifted.refused, crate::replica::now_millis())?;
            moved += sifted.refused.len();
            log::snapshot(db, id, &sifted.doc)?;
            cache.insert(*id, sifted.doc);
        }
        if moved > 0 {
            self.reindex(graph, ids.iter().copied())?;
        }
        Ok(moved)
    }

    /// The quarantined changes of documents `ids`.
    pub(crate) fn quarantined(&self, ids: &[DocId]) -> Result<Vec<QuarantinedChange>> {
        quarantine::list(self.db, ids)
    }

    /// A value a tool saved under `key`, if any.
    pub(crate) fn checkpoint(&self, key: &str) -> Result<Option<String>> {
        meta::checkpoint(self.db, key)
    }

    /// Saves (or with `None`, clears) a tool's value under `key`.
    pub(crate) fn set_checkpoint(&self, key: &str, value: Option<&str>) -> Result<()> {
        meta::set_checkpoint(self.db, key, value)
    }

    /// The connection, for the query modules of this one.
    fn db(&self) -> &Connection {
        self.db
    }
}

fn missing_doc(id: &DocId) -> Error {
    Error::CorruptStore { doc: id.to_string(), reason: "the document is missing from the log".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &Path) -> Result<DocLog> {
        DocLog::open(path, Durability::Normal, ActorId::random(), Access::Auto)
    }

    #[test]
    fn migrations_run_from_an_empty_file_and_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let id = open(&path).unwrap().replica_id();
        let again = open(&path).unwrap();
        assert_eq!(again.replica_id(), id, "reopening keeps the replica id");
        let version: i64 = again.read(|tx| Ok(tx.db().query_row("PRAGMA user_version", [], |r| r.get(0))?)).unwrap();
        assert_eq!(version, migrate::MIGRATIONS.len() as i64);
    }

    #[test]
    fn both_full_text_indexes_merge_sixteen_segments_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir.path().join("a.db")).unwrap();
        for table in index::SEARCH_TABLES {
            let automerge: i64 = log
                .read(|tx| {
                    let sql = format!("SELECT v FROM {table}_config WHERE k = 'automerge'");
                    Ok(tx.db().query_row(&sql, [], |r| r.get(0))?)
                })
                .unwrap();
            assert_eq!(automerge, 16, "{table}");
        }
    }

    #[test]
    fn refuses_files_that_are_not_cairn() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
        assert!(matches!(open(&junk), Err(Error::NotADatabase { .. })));

        let other = dir.path().join("other.db");
        Connection::open(&other).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
        assert!(matches!(open(&other), Err(Error::NotCairn { .. })));
        // And it was not modified.
        let tables: i64 = Connection::open(&other)
            .unwrap()
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 1);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        drop(open(&path).unwrap());
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
        assert!(matches!(open(&path), Err(Error::SchemaTooNew { found: 99, .. })));
    }

    /// A document with one change, like a graph's genesis.
    fn genesis() -> Automerge {
        use automerge::transaction::Transactable;
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "genesis", true).unwrap();
        tx.commit();
        doc
    }

    #[test]
    fn a_failed_write_drops_what_it_changed_in_memory() {
        use automerge::transaction::Transactable;
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir.path().join("a.db")).unwrap();
        let id = DocId([9; 16]);
        log.write(|tx| tx.create(&GraphName::default_graph(), id, genesis())).unwrap();
        let before = log.read(|tx| Ok(tx.existing(id)?.doc.get_heads())).unwrap();
        let failed: Result<()> = log.write(|tx| {
            let mut am = tx.existing(id)?.doc.transaction();
            am.put(automerge::ROOT, "k", 1)?;
            am.commit();
            Err(Error::EntityNotFound("on purpose".into()))
        });
        assert!(failed.is_err());
        let after = log.read(|tx| Ok(tx.existing(id)?.doc.get_heads())).unwrap();
        assert_eq!(after, before, "the cached document was reloaded from the file");
    }

    #[test]
    fn a_panicking_write_drops_what_it_changed_in_memory() {
        use automerge::transaction::Transactable;
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(open(&dir.path().join("a.db")).unwrap());
        let id = DocId([9; 16]);
        log.write(|tx| tx.create(&GraphName::default_graph(), id, genesis())).unwrap();
        let before = log.read(|tx| Ok(tx.existing(id)?.doc.get_heads())).unwrap();
        let l = log.clone();
        let panicked = std::thread::spawn(move || {
            let _: Result<()> = l.write(|tx| {
                let mut am = tx.existing(id)?.doc.transaction();
                am.put(automerge::ROOT, "k", 1)?;
                am.commit();
                panic!("a bug in the middle of a write");
            });
        })
        .join();
        assert!(panicked.is_err());
        let after = log.read(|tx| Ok(tx.existing(id)?.doc.get_heads())).unwrap();
        assert_eq!(after, before, "the cached document was reloaded from the file");
    }
}

//! Storage: one SQLite file per replica (or relay), in WAL mode.
//!
//! Ground truth is the append-only change log (`changes`, with `snapshots` folding old changes
//! into saved documents without dropping history). Everything else — the entity, observation
//! and relation tables, the FTS5 search index, the event history — is derived from it, and is
//! updated in the same transaction as the change it derives from.

mod docs;
pub(crate) mod events;
pub(crate) mod index;
pub mod log;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::{Error, Result};
use crate::ids::ReplicaId;

pub use docs::{Cached, DocCache};

/// `PRAGMA application_id` of a Cairn file ("CAIR"), so that Cairn never mistakes another
/// program's SQLite database for its own, nor writes into one.
const APPLICATION_ID: i64 = 0x4341_4952;

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

/// The schema migrations, in order; `PRAGMA user_version` counts how many have run.
const MIGRATIONS: &[&str] = &[include_str!("schema_v1.sql"), include_str!("schema_v2.sql")];

/// An open storage file.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    replica: ReplicaId,
}

fn classify_open_error(path: &Path, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => Error::NotADatabase { path: path.to_owned() },
        _ => Error::Storage(e),
    }
}

impl Store {
    /// Opens (creating if needed) a storage file, runs pending migrations, and refuses files that
    /// are not Cairn's.
    pub fn open(path: &Path, durability: Durability) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| classify_open_error(path, e))?;
        // Several processes share one file; a writer waits for another's short transaction
        // instead of failing.
        conn.busy_timeout(Duration::from_secs(30))?;
        let app_id: i64 =
            conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(|e| classify_open_error(path, e))?;
        if app_id != 0 && app_id != APPLICATION_ID {
            return Err(Error::NotCairn { path: path.to_owned() });
        }
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        // Checkpoint the WAL every 4000 pages (16 MiB) instead of SQLite's 1000: one write in a
        // few hundred pays for a checkpoint instead of one in a few dozen, which took p99 write
        // latency at 10k entities from ~3.9 ms to ~1.2 ms (BENCHMARKS.md).
        conn.pragma_update(None, "wal_autocheckpoint", 4000)?;
        let mut store = Store { conn, path: path.to_owned(), replica: ReplicaId(0) };
        store.migrate()?;
        store.replica = store.conn.query_row("SELECT value FROM meta WHERE key = 'replica_id'", [], |r| {
            let hex: String = r.get(0)?;
            Ok(ReplicaId(u32::from_str_radix(&hex, 16).unwrap_or(0)))
        })?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        // A file already at the current schema needs no write lock: an open must not queue
        // behind another process's long run of writes (an import) for a lock it does not use.
        if self.is_current()? {
            return Ok(());
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Checked again inside the write lock: another process may have initialised the file
        // between our first look and now.
        let app_id: i64 = tx.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if app_id == 0 {
            let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
            if tables != 0 {
                return Err(Error::NotCairn { path });
            }
            tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))?;
        }
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(Error::SchemaTooNew { path, found: version, supported });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tracing::info!(path = %path.display(), migration = i + 1, "migrating storage");
            tx.execute_batch(sql)?;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {supported}"))?;
        let id = u32::from_be_bytes(automerge::ActorId::random().to_bytes()[..4].try_into().unwrap_or([0; 4]));
        tx.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('replica_id', ?1)", [format!("{id:08x}")])?;
        tx.commit()?;
        Ok(())
    }

    /// Whether the file is Cairn's, at the current schema version, and initialised.
    fn is_current(&self) -> Result<bool> {
        let app_id: i64 = self.conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        let version: i64 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if app_id != APPLICATION_ID || version != MIGRATIONS.len() as i64 {
            return Ok(false);
        }
        Ok(self.conn.query_row("SELECT EXISTS (SELECT 1 FROM meta WHERE key = 'replica_id')", [], |r| r.get(0))?)
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id that versions issued by this file carry.
    pub(crate) fn replica_id(&self) -> ReplicaId {
        self.replica
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`: it holds the file's write lock from
    /// the start, so the state `f` reads cannot change under it), committing if it returns `Ok`.
    pub fn write<T>(&mut self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in a read transaction: one consistent snapshot of the file.
    pub fn read<T>(&mut self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// The size of the database file and its write-ahead log, in bytes.
    pub fn size_bytes(&self) -> u64 {
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        [&self.path, &wal].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_from_an_empty_file_and_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let first = Store::open(&path, Durability::Normal).unwrap();
        let id = first.replica_id();
        drop(first);
        let mut again = Store::open(&path, Durability::Normal).unwrap();
        assert_eq!(again.replica_id(), id, "reopening keeps the replica id");
        let version: i64 = again.read(|tx| Ok(tx.query_row("PRAGMA user_version", [], |r| r.get(0))?)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[test]
    fn refuses_files_that_are_not_cairn() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
        assert!(matches!(Store::open(&junk, Durability::Normal), Err(Error::NotADatabase { .. })));

        let other = dir.path().join("other.db");
        Connection::open(&other).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
        assert!(matches!(Store::open(&other, Durability::Normal), Err(Error::NotCairn { .. })));
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
        drop(Store::open(&path, Durability::Normal).unwrap());
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
        assert!(matches!(Store::open(&path, Durability::Normal), Err(Error::SchemaTooNew { found: 99, .. })));
    }
}

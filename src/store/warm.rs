//! Warming the cache off the caller's path: a graph's documents loaded by a thread of its own.
//!
//! A document is loaded the first time a read or write needs it, and the first write to touch
//! a cold shard of a large graph pays for loading it: 30-50 ms at 100k entities, where a warm
//! write takes under one (BENCHMARKS.md, issue 17). A long-running process (`cairn mcp`) asks
//! for its graph to be warmed as it opens. The thread reads each document through a read-only
//! connection of its own, outside the replica's lock (decoding is the cost), and only takes the
//! lock to hand the document to the cache, which brings it up to date ([`DocCache::adopt`]).
//! A document the cache already holds is left alone; so is one with many loose changes, whose
//! first load by a writer also saves a snapshot of it.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{Inner, lock_inner, log};
use crate::error::{Error, Result};
use crate::ids::DocId;

/// A warm-up in progress; dropping it does not stop it (the replica closing does).
#[derive(Debug)]
pub struct WarmUp {
    done: Mutex<Receiver<usize>>,
}

impl WarmUp {
    /// Waits at most `timeout` for the warm-up to end. `Some(n)`: it ended, having loaded `n`
    /// documents (those already loaded not counted); `None`: still loading.
    pub fn wait(&self, timeout: Duration) -> Option<usize> {
        // A panic while holding this lock cannot leave a receiver half-changed.
        let done = self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match done.recv_timeout(timeout) {
            Ok(n) => Some(n),
            // The thread ended without a count: the replica closed, or the thread failed.
            Err(RecvTimeoutError::Disconnected) => Some(0),
            Err(RecvTimeoutError::Timeout) => None,
        }
    }
}

/// Starts loading `ids` into the cache behind `inner` (the replica's), from `path`.
pub(super) fn start(path: &Path, inner: Weak<Mutex<Inner>>, ids: Vec<DocId>) -> Result<WarmUp> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("cairn-warm".into())
        .spawn(move || match run(&conn, &inner, &ids) {
            Ok(loaded) => {
                // The caller may have stopped listening: nothing to tell then.
                let _ = tx.send(loaded);
            }
            Err(e) => tracing::debug!(error = %e, "warming the cache stopped"),
        })
        .map_err(|source| Error::Io { path: path.to_owned(), source })?;
    Ok(WarmUp { done: Mutex::new(rx) })
}

fn run(conn: &Connection, inner: &Weak<Mutex<Inner>>, ids: &[DocId]) -> Result<usize> {
    let mut loaded = 0;
    for id in ids {
        // Skip what is loaded already, and stop once the replica is closed.
        let Some(strong) = inner.upgrade() else { return Ok(loaded) };
        if lock_inner(&strong).cache.holds(id) {
            continue;
        }
        drop(strong);
        let read = conn.unchecked_transaction()?;
        let seq = log::max_seq(&read)?;
        let doc = log::load(&read, id)?;
        read.commit()?;
        let Some(doc) = doc.filter(|d| d.loose <= log::SNAPSHOT_EVERY) else { continue };
        let Some(strong) = inner.upgrade() else { return Ok(loaded) };
        let mut guard = lock_inner(&strong);
        let Inner { conn, cache } = &mut *guard;
        if cache.adopt(conn, *id, doc.doc, seq)? {
            loaded += 1;
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::super::docs::DocCache;
    use super::*;
    use crate::{GraphDocs, GraphName, Op, Replica};

    /// A document loaded at one log position and handed to a cache that has since seen more
    /// comes out holding everything: what the warming thread does when writes land meanwhile.
    #[test]
    fn a_document_adopted_behind_the_cache_is_brought_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let writer = Replica::open(&path, "alice").unwrap();
        let docs = GraphDocs::of(&GraphName::default_graph());
        // Two entities in different shards.
        let a = docs.shard_for("entity-a");
        let b_name = (0..).map(|i| format!("entity-b{i}")).find(|n| docs.shard_for(n) != a).unwrap();
        let b = docs.shard_for(&b_name);
        writer.write(&[Op::create_entity("entity-a", "thing", &["one"])]).unwrap();
        writer.write(&[Op::create_entity(b_name.clone(), "thing", &["one"])]).unwrap();

        let db = Connection::open(&path).unwrap();
        let seq = log::max_seq(&db).unwrap();
        let early = log::load(&db, &a).unwrap().unwrap().doc;
        // More writes to `a` after that load.
        writer.write(&[Op::add_observation("entity-a", "two")]).unwrap();
        writer.write(&[Op::add_observation("entity-a", "three")]).unwrap();

        let mut cache = DocCache::new(automerge::ActorId::random());
        cache.catch_up(&db).unwrap();
        cache.entry(&db, b, false).unwrap().unwrap();
        cache.catch_up(&db).unwrap();
        assert!(cache.adopt(&db, a, early, seq).unwrap(), "adopted");
        let adopted = cache.entry(&db, a, false).unwrap().unwrap().doc.get_heads();
        let fresh = log::load(&db, &a).unwrap().unwrap().doc.get_heads();
        assert_eq!(adopted, fresh, "the adopted document holds the writes made after it was read");

        // One already loaded is left as it is.
        let other = log::load(&db, &a).unwrap().unwrap().doc;
        assert!(!cache.adopt(&db, a, other, seq).unwrap());
    }
}

//! The relay's storage: every document it holds, as a change log in one SQLite file.
//!
//! Serves the hub through [`SyncDocs`]. A received change is logged in the same transaction that
//! applies it, before `receive` returns — so the hub never forwards or acknowledges a change that
//! a crash could lose.

use std::path::{Path, PathBuf};

use cairn::automerge::sync::{self, SyncDoc};
use cairn::automerge::{ActorId, Automerge, ChangeHash};
use cairn::store::{DocCache, Durability, Store, log};
use cairn::sync::SyncDocs;
use cairn::{DocId, Error, Result};

/// The relay's documents.
#[derive(Debug)]
pub struct RelayStore {
    store: Store,
    cache: DocCache,
    metrics: Option<std::sync::Arc<crate::Metrics>>,
}

impl RelayStore {
    /// The database file inside a relay data directory.
    pub fn file_in(dir: &Path) -> PathBuf {
        dir.join("relay.db")
    }

    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path, durability: Durability) -> Result<RelayStore> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
        let store = Store::open(&Self::file_in(dir), durability)?;
        // The relay never writes changes of its own; the actor only satisfies the cache.
        Ok(RelayStore { store, cache: DocCache::new(ActorId::random()), metrics: None })
    }

    /// Counts storage writes and their latency into `metrics`.
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The underlying store (for tokens and metrics).
    pub fn store(&mut self) -> &mut Store {
        &mut self.store
    }

    /// How many documents the relay holds.
    pub fn doc_count(&mut self) -> Result<u64> {
        self.store
            .read(|tx| Ok(tx.query_row("SELECT count(DISTINCT doc) FROM changes", [], |r| r.get::<_, i64>(0))? as u64))
    }
}

impl SyncDocs for RelayStore {
    fn exists(&mut self, doc: &DocId) -> Result<bool> {
        let RelayStore { store, cache, .. } = self;
        store.read(|tx| Ok(cache.get(tx, *doc, false)?.is_some_and(|d| !d.get_heads().is_empty())))
    }

    fn generate(&mut self, doc: &DocId, state: &mut sync::State) -> Result<Option<sync::Message>> {
        // The relay is its file's only writer of changes, so a cached document is current:
        // generating from it needs no trip to SQLite (this runs once per peer per change).
        if let Some(d) = self.cache.cached(doc) {
            return Ok(d.generate_sync_message(state));
        }
        let RelayStore { store, cache, .. } = self;
        store.read(|tx| {
            Ok(match cache.get(tx, *doc, false)? {
                Some(d) => d.generate_sync_message(state),
                // A document the relay has never seen: say so with an empty document's message.
                None => Automerge::new().generate_sync_message(state),
            })
        })
    }

    fn receive(&mut self, doc: &DocId, state: &mut sync::State, message: sync::Message) -> Result<usize> {
        // A message without changes (an acknowledgement, a bloom filter) changes only the sync
        // state: no write transaction for it.
        if message.changes.is_empty() {
            if let Some(d) = self.cache.cached_mut(doc) {
                d.receive_sync_message(state, message).map_err(|e| Error::CorruptChange(e.to_string()))?;
                return Ok(0);
            }
        }
        let started = std::time::Instant::now();
        let RelayStore { store, cache, metrics } = self;
        let result = store.write(|tx| {
            cache.catch_up(tx)?;
            if cache.get(tx, *doc, true)?.is_none() {
                cache.insert(*doc, Automerge::new());
            }
            let am = cache.get(tx, *doc, false)?.ok_or_else(|| Error::CorruptStore {
                doc: doc.to_string(),
                reason: "a document just created is missing".into(),
            })?;
            let before = am.get_heads();
            am.receive_sync_message(state, message).map_err(|e| Error::CorruptChange(e.to_string()))?;
            let applied = am.get_changes(&before);
            let mut newest = 0;
            for change in &applied {
                if let Some(seq) = log::append_change(tx, doc, change)? {
                    newest = seq;
                }
            }
            cache.mark_seen(newest);
            Ok(applied.len())
        });
        if result.is_err() {
            // The document may hold changes the file rolled back: reload it from the file.
            cache.clear();
        }
        if let Some(m) = metrics {
            crate::Metrics::add(&m.storage_writes, 1);
            crate::Metrics::add(&m.storage_write_micros, started.elapsed().as_micros() as u64);
        }
        result
    }

    fn has_all(&mut self, doc: &DocId, heads: &[ChangeHash]) -> Result<bool> {
        let RelayStore { store, cache, .. } = self;
        store.read(|tx| {
            Ok(match cache.get(tx, *doc, false)? {
                Some(d) => heads.iter().all(|h| cairn::automerge::ReadDoc::get_change_by_hash(d, h).is_some()),
                None => heads.is_empty(),
            })
        })
    }

    fn heads(&mut self, doc: &DocId) -> Result<Vec<ChangeHash>> {
        if let Some(d) = self.cache.cached(doc) {
            return Ok(d.get_heads());
        }
        let RelayStore { store, cache, .. } = self;
        store.read(|tx| Ok(cache.get(tx, *doc, false)?.map(|d| d.get_heads()).unwrap_or_default()))
    }
}

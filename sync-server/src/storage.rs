//! The relay's storage: every document it holds, as a change log in one SQLite file.
//!
//! Serves the hub through [`SyncDocs`]. A received change is logged in the same transaction that
//! applies it, before `receive` returns — so the hub never forwards or acknowledges a change that
//! a crash could lose.

use std::path::{Path, PathBuf};

use cairn::automerge::sync::{self, SyncDoc};
use cairn::automerge::{ActorId, Automerge, ChangeHash};
use cairn::store::{log, DocCache, Durability, Store};
use cairn::sync::SyncDocs;
use cairn::{DocId, Error, Result};

/// The relay's documents.
#[derive(Debug)]
pub struct RelayStore {
    store: Store,
    cache: DocCache,
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
        Ok(RelayStore { store, cache: DocCache::new(ActorId::random()) })
    }

    /// The underlying store (for tokens and metrics).
    pub fn store(&mut self) -> &mut Store {
        &mut self.store
    }

    /// How many documents the relay holds.
    pub fn doc_count(&mut self) -> Result<u64> {
        self.store.read(|tx| Ok(tx.query_row("SELECT count(DISTINCT doc) FROM changes", [], |r| r.get::<_, i64>(0))? as u64))
    }
}

impl SyncDocs for RelayStore {
    fn exists(&mut self, doc: &DocId) -> Result<bool> {
        let RelayStore { store, cache } = self;
        store.read(|tx| {
            cache.catch_up(tx)?;
            Ok(cache.get(tx, *doc, false)?.is_some_and(|d| !d.get_heads().is_empty()))
        })
    }

    fn generate(&mut self, doc: &DocId, state: &mut sync::State) -> Result<Option<sync::Message>> {
        let RelayStore { store, cache } = self;
        store.read(|tx| {
            cache.catch_up(tx)?;
            Ok(match cache.get(tx, *doc, false)? {
                Some(d) => d.generate_sync_message(state),
                // A document the relay has never seen: say so with an empty document's message.
                None => Automerge::new().generate_sync_message(state),
            })
        })
    }

    fn receive(&mut self, doc: &DocId, state: &mut sync::State, message: sync::Message) -> Result<usize> {
        let RelayStore { store, cache } = self;
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
        result
    }

    fn has_all(&mut self, doc: &DocId, heads: &[ChangeHash]) -> Result<bool> {
        let RelayStore { store, cache } = self;
        store.read(|tx| {
            cache.catch_up(tx)?;
            Ok(match cache.get(tx, *doc, false)? {
                Some(d) => heads.iter().all(|h| cairn::automerge::ReadDoc::get_change_by_hash(d, h).is_some()),
                None => heads.is_empty(),
            })
        })
    }

    fn heads(&mut self, doc: &DocId) -> Result<Vec<ChangeHash>> {
        let RelayStore { store, cache } = self;
        store.read(|tx| {
            cache.catch_up(tx)?;
            Ok(cache.get(tx, *doc, false)?.map(|d| d.get_heads()).unwrap_or_default())
        })
    }
}

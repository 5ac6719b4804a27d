//! The in-memory documents of one open store: a cache over the change log.
//!
//! A document is loaded the first time something needs it and kept. Before each transaction uses
//! a document, [`DocCache::catch_up`] applies whatever other processes logged since — that is how
//! several processes share one file without losing each other's writes.

use std::collections::HashMap;

use automerge::{ActorId, Automerge, Change};
use rusqlite::Connection;

use super::log;
use crate::error::{Error, Result};
use crate::ids::DocId;
use crate::schema::Layout;

/// A loaded document, with its shard layout when it is a Cairn shard.
#[derive(Debug)]
pub(crate) struct Cached {
    /// The document.
    pub(crate) doc: Automerge,
    /// Where the shard's maps are (`None` for root or non-Cairn documents). Computed once at
    /// load: the maps are created at genesis and never replaced.
    pub(crate) layout: Option<Layout>,
}

impl Cached {
    pub(crate) fn new(doc: Automerge) -> Self {
        let layout = Layout::of(&doc).ok();
        Cached { doc, layout }
    }
}

/// Loaded documents and how far into the log they are current.
#[derive(Debug)]
pub(super) struct DocCache {
    docs: HashMap<DocId, Cached>,
    /// Every cached document holds every change logged up to here.
    seen_seq: i64,
    /// The actor this process writes under; set on every document it loads.
    actor: ActorId,
}

impl DocCache {
    /// An empty cache whose documents write under `actor`.
    pub(super) fn new(actor: ActorId) -> Self {
        DocCache { docs: HashMap::new(), seen_seq: 0, actor }
    }

    /// Applies to cached documents every change logged since the last call (by this or any other
    /// process). Call at the start of every transaction, before reading a cached document.
    pub(super) fn catch_up(&mut self, db: &Connection) -> Result<()> {
        let max = log::max_seq(db)?;
        if max == self.seen_seq {
            return Ok(());
        }
        if max < self.seen_seq || self.docs.is_empty() {
            // The log shrank (the file was replaced) or nothing is cached: start afresh.
            self.docs.clear();
            self.seen_seq = max;
            return Ok(());
        }
        let mut per_doc: HashMap<DocId, Vec<Change>> = HashMap::new();
        let mut stale = Vec::new();
        for logged in log::changes_after(db, self.seen_seq)? {
            if !self.docs.contains_key(&logged.doc) {
                continue;
            }
            match logged.bytes {
                Some(bytes) => {
                    let change = Change::from_bytes(bytes)
                        .map_err(|e| Error::CorruptStore { doc: logged.doc.to_string(), reason: e.to_string() })?;
                    per_doc.entry(logged.doc).or_default().push(change);
                }
                // Folded into a snapshot by another process before we saw it: reload instead.
                None => stale.push(logged.doc),
            }
        }
        for doc in stale {
            self.docs.remove(&doc);
            per_doc.remove(&doc);
        }
        for (id, changes) in per_doc {
            if let Some(cached) = self.docs.get_mut(&id) {
                cached.doc.apply_changes(changes)?;
            }
        }
        self.seen_seq = max;
        Ok(())
    }

    /// Records that this process itself logged everything up to `seq` (its cached documents
    /// already hold those changes).
    pub(super) fn mark_seen(&mut self, seq: i64) {
        self.seen_seq = self.seen_seq.max(seq);
    }

    /// The document, loading it from the log if needed (`None` if the file has nothing of it).
    /// With `compact`, a document that gathered many loose changes is saved as a snapshot while
    /// loading (needs a write transaction).
    pub(super) fn entry(&mut self, db: &Connection, id: DocId, compact: bool) -> Result<Option<&mut Cached>> {
        if !self.docs.contains_key(&id) {
            let Some(loaded) = log::load(db, &id)? else { return Ok(None) };
            let mut doc = loaded.doc;
            if compact && loaded.loose > log::SNAPSHOT_EVERY {
                log::snapshot(db, &id, &doc)?;
            }
            doc.set_actor(self.actor.clone());
            self.docs.insert(id, Cached::new(doc));
        }
        Ok(self.docs.get_mut(&id))
    }

    /// Takes documents out of the cache (to edit several at once on different threads); give
    /// them back with [`DocCache::put_back`]. Documents not loaded are skipped.
    pub(super) fn take(&mut self, ids: impl IntoIterator<Item = DocId>) -> Vec<(DocId, Cached)> {
        ids.into_iter().filter_map(|id| self.docs.remove(&id).map(|doc| (id, doc))).collect()
    }

    /// Returns documents taken with [`DocCache::take`].
    pub(super) fn put_back(&mut self, docs: Vec<(DocId, Cached)>) {
        self.docs.extend(docs);
    }

    /// Whether the document is loaded.
    pub(super) fn holds(&self, id: &DocId) -> bool {
        self.docs.contains_key(id)
    }

    /// Adds a document loaded elsewhere (by the warming thread, `warm.rs`) that holds every
    /// change logged up to `seq`, unless one is loaded already. Returns whether it was added.
    pub(super) fn adopt(&mut self, db: &Connection, id: DocId, mut doc: Automerge, seq: i64) -> Result<bool> {
        if self.docs.contains_key(&id) {
            return Ok(false);
        }
        if self.docs.is_empty() {
            // Nothing else cached: the cache is as current as this document, and the next
            // transaction's catch-up brings it the rest.
            self.seen_seq = seq;
        } else if seq < self.seen_seq {
            // Behind the other cached documents: bring it to where they are.
            match log::changes_between(db, &id, seq, self.seen_seq)? {
                Some(changes) => doc.apply_changes(changes)?,
                // Folded into a snapshot meanwhile: let a later load read the snapshot.
                None => return Ok(false),
            }
        }
        // Ahead of them (another process logged more since they caught up): the next catch-up
        // offers it changes it holds, which Automerge skips.
        doc.set_actor(self.actor.clone());
        self.docs.insert(id, Cached::new(doc));
        Ok(true)
    }

    /// Adds a document this process just created (and logged).
    pub(super) fn insert(&mut self, id: DocId, mut doc: Automerge) {
        doc.set_actor(self.actor.clone());
        self.docs.insert(id, Cached::new(doc));
    }

    /// Forgets every document, e.g. after a failed transaction left them ahead of the file.
    pub(super) fn clear(&mut self) {
        self.docs.clear();
        self.seen_seq = 0;
    }
}

//! The relay's storage in PostgreSQL, shared by several relay nodes: documents as change logs,
//! tokens and actor bindings (`pg_v1.sql`). The promise is the SQLite relay's: a change is
//! committed in PostgreSQL before [`SyncDocs::receive`] returns, so no node acknowledges or
//! forwards what a crash could lose.
//!
//! Unlike a SQLite relay, a node is not its store's only writer: a document it has loaded can
//! fall behind what other nodes commit. Each document's row in `cairn_docs` carries a version
//! that every writing transaction bumps (holding the row's lock until it commits), and each
//! change records the version that added it; a node remembers, per loaded document, the version
//! it holds everything up to ([`Versions`]). It catches up (`version > known`) inside every write
//! transaction, and whenever a document is marked stale: by the bus (`cluster.rs`), when another
//! node announces a newer version, or by the periodic reconciliation that compares versions.
//!
//! The connection is plain TCP (`NoTls`): meant for loopback or a private network. TLS would be
//! `postgres-rustls` (or `postgres-native-tls`) handing its connector to `Client::connect`.

mod schema;
mod tokens;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use cairn::automerge::sync::{self, SyncDoc};
use cairn::automerge::{ActorId, Change, ChangeHash};
use cairn::sync::{MemoryDocs, SyncDocs};
use cairn::{DocId, Error, Result};
use postgres::{Client, NoTls};

pub use schema::SchemaError;
pub use tokens::PgTokens;

fn pg(e: postgres::Error) -> Error {
    Error::Storage(Box::new(e))
}

fn corrupt(doc: &DocId, reason: impl std::fmt::Display) -> Error {
    Error::CorruptStore { doc: doc.to_string(), reason: reason.to_string() }
}

/// Connects to `url` (a `postgres://` URL or a libpq key=value string).
pub(crate) fn connect(url: &str) -> Result<Client, postgres::Error> {
    Client::connect(url, NoTls)
}

/// A connection that reconnects when PostgreSQL closed it (a restart, a dropped link): the next
/// call after a failure tries again instead of failing forever.
pub(crate) struct Link {
    url: String,
    client: Option<Client>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("connected", &self.client.is_some()).finish_non_exhaustive()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The synchronous client blocks on its own runtime to close, which tokio forbids on a
        // runtime's thread (a relay's tokens are dropped there): close it on a thread of its own.
        if let Some(client) = self.client.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::Builder::new().name("cairn-pg-close".into()).spawn(move || drop(client));
        }
    }
}

impl Link {
    pub(crate) fn open(url: &str) -> Result<Link, postgres::Error> {
        Ok(Link { url: url.to_owned(), client: Some(connect(url)?) })
    }

    pub(crate) fn get(&mut self) -> Result<&mut Client, postgres::Error> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            self.client = Some(connect(&self.url)?);
        }
        // Just set above when it was missing.
        Ok(self.client.as_mut().expect("connected"))
    }
}

/// What a node knows of each loaded document: the version it holds every change up to, and the
/// documents others have changed since (to be caught up before their next use). Shared between
/// the store (the hub thread) and the bus and reconciliation (`cluster.rs`).
#[derive(Debug, Default)]
pub struct Versions {
    known: Mutex<HashMap<DocId, i64>>,
    stale: Mutex<HashSet<DocId>>,
}

impl Versions {
    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<DocId, i64>> {
        // Plain maps, consistent between statements: a panic elsewhere leaves them usable.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stale(&self) -> std::sync::MutexGuard<'_, HashSet<DocId>> {
        self.stale.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The version this node holds of `doc`, if it has loaded it.
    pub fn of(&self, doc: &DocId) -> Option<i64> {
        self.known().get(doc).copied()
    }

    /// Every loaded document and its version.
    pub fn all(&self) -> Vec<(DocId, i64)> {
        self.known().iter().map(|(d, v)| (*d, *v)).collect()
    }

    /// Another node committed `version` of `doc`: true (and `doc` marked stale) unless this
    /// node holds that version already. A document not loaded counts as behind: it may be
    /// loading on the hub thread right now, from before that commit.
    pub fn saw(&self, doc: &DocId, version: i64) -> bool {
        let behind = self.of(doc).is_none_or(|known| known < version);
        if behind {
            self.stale().insert(*doc);
        }
        behind
    }

    /// Forgets the stale marks of documents this node has not loaded (what [`Versions::saw`]
    /// kept of announcements for them), so they do not accumulate.
    pub fn prune(&self) {
        let known = self.known();
        self.stale().retain(|d| known.contains_key(d));
    }

    fn set(&self, doc: DocId, version: i64) {
        self.known().insert(doc, version);
    }

    fn forget(&self, doc: &DocId) {
        self.known().remove(doc);
        self.stale().remove(doc);
    }

    fn take_stale(&self, doc: &DocId) -> bool {
        self.stale().remove(doc)
    }
}

/// A change a node committed, for the bus to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The document.
    pub doc: DocId,
    /// Its version after the commit.
    pub version: i64,
    /// Its heads after the commit (as this node holds it).
    pub heads: Vec<ChangeHash>,
}

/// The relay's documents and actor bindings in PostgreSQL, for one node.
pub struct PgStore {
    link: Link,
    loaded: MemoryDocs,
    versions: Arc<Versions>,
    committed: Option<tokio::sync::mpsc::UnboundedSender<Committed>>,
    metrics: Option<Arc<crate::Metrics>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("link", &self.link).finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` and brings its schema up to date (the first node to start migrates).
    pub fn open(url: &str) -> Result<PgStore, SchemaError> {
        let mut link = Link::open(url)?;
        schema::run(link.get()?)?;
        Ok(PgStore { link, loaded: MemoryDocs::new(), versions: Arc::default(), committed: None, metrics: None })
    }

    /// Counts storage writes and their latency into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sends every commit (document, version, heads) to `to`, after it commits: what the bus
    /// announces to the other nodes.
    pub fn announcing(mut self, to: tokio::sync::mpsc::UnboundedSender<Committed>) -> Self {
        self.committed = Some(to);
        self
    }

    /// What this node knows of its loaded documents (for the bus and reconciliation).
    pub fn versions(&self) -> Arc<Versions> {
        self.versions.clone()
    }

    /// Makes `doc` current before it is used: loaded whole the first time, caught up when
    /// another node changed it.
    fn prepare(&mut self, doc: &DocId) -> Result<()> {
        if self.loaded.get(doc).is_none() {
            return self.load(doc);
        }
        if self.versions.take_stale(doc) {
            let known = self.versions.of(doc).unwrap_or(0);
            let client = self.link.get().map_err(pg)?;
            if let Some(v) = catch_up(client, &mut self.loaded, doc, known)? {
                self.versions.set(*doc, v);
            }
        }
        Ok(())
    }

    fn load(&mut self, doc: &DocId) -> Result<()> {
        let client = self.link.get().map_err(pg)?;
        if let Some(v) = catch_up(client, &mut self.loaded, doc, 0)? {
            self.versions.set(*doc, v);
        }
        Ok(())
    }

    /// Applies `message` to the document and logs what it brought, in one transaction that
    /// first catches the document up with what other nodes committed.
    fn receive_and_log(&mut self, id: &DocId, state: &mut sync::State, message: sync::Message) -> Result<usize> {
        let key = &id.as_bytes()[..];
        let client = self.link.get().map_err(pg)?;
        let mut tx = client.transaction().map_err(pg)?;
        // Takes the document's row lock until commit: writers to one document go one at a time,
        // so its versions commit in order.
        let version: i64 = tx
            .query_one(
                "INSERT INTO cairn_docs (doc, version) VALUES ($1, 1)
                 ON CONFLICT (doc) DO UPDATE SET version = cairn_docs.version + 1 RETURNING version",
                &[&key],
            )
            .map_err(pg)?
            .get(0);
        let known = if self.loaded.get(id).is_some() { self.versions.of(id).unwrap_or(0) } else { 0 };
        let (_, caught_up) = catch_up_in(&mut tx, &mut self.loaded, id, known)?;
        let doc = self.loaded.get_or_create(id);
        let before = doc.get_heads();
        doc.receive_sync_message(state, message).map_err(|e| Error::CorruptChange(e.to_string()))?;
        let applied: Vec<Change> = doc.get_changes(&before);
        let heads = doc.get_heads();
        if applied.is_empty() {
            // Nothing new: the version is not spent (the rollback undoes the bump). What the
            // catch-up brought counts as received: the other node's announcement of it may
            // already find this node current, and the hub offers only what `receive` reports.
            drop(tx);
            self.versions.set(*id, version - 1);
            return Ok(caught_up);
        }
        for change in &applied {
            append(&mut tx, id, version, change)?;
        }
        tx.commit().map_err(pg)?;
        self.versions.set(*id, version);
        if let Some(to) = &self.committed {
            let _ = to.send(Committed { doc: *id, version, heads });
        }
        Ok(applied.len())
    }
}

/// Loads the changes of `doc` after version `known` into `loaded` (the whole document when it
/// is not loaded yet); the version it now holds everything up to, `None` if there is no such
/// document.
fn catch_up(client: &mut Client, loaded: &mut MemoryDocs, doc: &DocId, known: i64) -> Result<Option<i64>> {
    let mut tx = client.transaction().map_err(pg)?;
    let (v, _) = catch_up_in(&mut tx, loaded, doc, known)?;
    tx.commit().map_err(pg)?;
    Ok(v)
}

/// [`catch_up`] inside `tx`; also says how many changes it applied.
fn catch_up_in(
    tx: &mut postgres::Transaction<'_>,
    loaded: &mut MemoryDocs,
    doc: &DocId,
    known: i64,
) -> Result<(Option<i64>, usize)> {
    let rows = tx
        .query(
            "SELECT version, bytes FROM cairn_changes WHERE doc = $1 AND version > $2 ORDER BY version, seq",
            &[&&doc.as_bytes()[..], &known],
        )
        .map_err(pg)?;
    let mut newest = known;
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        newest = row.get(0);
        let bytes: Vec<u8> = row.get(1);
        changes.push(Change::from_bytes(bytes).map_err(|e| corrupt(doc, e))?);
    }
    if changes.is_empty() {
        return Ok((loaded.get(doc).is_some().then_some(known), 0));
    }
    let n = changes.len();
    loaded.get_or_create(doc).apply_changes(changes).map_err(|e| corrupt(doc, e))?;
    Ok((Some(newest), n))
}

fn append(tx: &mut postgres::Transaction<'_>, doc: &DocId, version: i64, change: &Change) -> Result<()> {
    let deps: Vec<u8> = change.deps().iter().flat_map(|h| h.0).collect();
    let (agent, at) = cairn::schema::change_author(change);
    tx.execute(
        "INSERT INTO cairn_changes (doc, version, hash, deps, agent, at, bytes) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (doc, hash) DO NOTHING",
        &[&&doc.as_bytes()[..], &version, &&change.hash().0[..], &deps, &agent, &at, &change.raw_bytes()],
    )
    .map_err(pg)?;
    Ok(())
}

impl SyncDocs for PgStore {
    fn exists(&mut self, doc: &DocId) -> Result<bool> {
        self.prepare(doc)?;
        self.loaded.exists(doc)
    }

    fn generate(&mut self, doc: &DocId, state: &mut sync::State) -> Result<Option<sync::Message>> {
        self.prepare(doc)?;
        self.loaded.generate(doc, state)
    }

    fn receive(&mut self, doc: &DocId, state: &mut sync::State, message: sync::Message) -> Result<usize> {
        self.prepare(doc)?;
        // An acknowledgement or a bloom filter changes only the sync state: no transaction.
        if message.changes.is_empty() && self.loaded.get(doc).is_some() {
            return self.loaded.receive(doc, state, message);
        }
        let started = std::time::Instant::now();
        let result = self.receive_and_log(doc, state, message);
        if result.is_err() {
            // Memory may hold changes the database rolled back: load it again next time.
            self.loaded.remove(doc);
            self.versions.forget(doc);
        }
        if let Some(m) = &self.metrics {
            crate::Metrics::add(&m.storage_writes, 1);
            crate::Metrics::add(&m.storage_write_micros, started.elapsed().as_micros() as u64);
        }
        result
    }

    fn has_all(&mut self, doc: &DocId, heads: &[ChangeHash]) -> Result<bool> {
        self.prepare(doc)?;
        self.loaded.has_all(doc, heads)
    }

    fn heads(&mut self, doc: &DocId) -> Result<Vec<ChangeHash>> {
        self.prepare(doc)?;
        self.loaded.heads(doc)
    }

    fn rules(&mut self, doc: &DocId) -> Result<Option<cairn::integrity::DocRules>> {
        self.prepare(doc)?;
        self.loaded.rules(doc)
    }
}

impl crate::hub::ActorBook for PgStore {
    fn owner(&mut self, actor: &ActorId) -> Result<Option<String>> {
        let client = self.link.get().map_err(pg)?;
        let row = client
            .query_opt("SELECT credential FROM cairn_actors WHERE actor = $1", &[&actor.to_bytes()])
            .map_err(pg)?;
        Ok(row.map(|r| r.get(0)))
    }

    fn bind(&mut self, actor: &ActorId, credential: &str) -> Result<()> {
        let client = self.link.get().map_err(pg)?;
        // Two nodes binding one actor at once: the first commit wins, the other learns of it
        // here (the no-op update returns the row that holds) and admits nothing.
        let owner: String = client
            .query_one(
                "INSERT INTO cairn_actors (actor, credential, bound_at) VALUES ($1, $2, $3)
                 ON CONFLICT (actor) DO UPDATE SET actor = EXCLUDED.actor RETURNING credential",
                &[&actor.to_bytes(), &credential, &cairn::now_millis()],
            )
            .map_err(pg)?
            .get(0);
        if owner != credential {
            return Err(Error::Storage(format!("actor {actor} was bound to another token by another node").into()));
        }
        Ok(())
    }
}

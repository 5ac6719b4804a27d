//! A replica: one agent's handle on one graph in one SQLite file.
//!
//! `Replica` is synchronous and `Send + Sync`: share it behind an `Arc` between threads or tasks.
//! A process-local mutex serialises its use of the file; SQLite's write lock serialises processes.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use automerge::sync::{self, SyncDoc};
use automerge::transaction::CommitOptions;
use automerge::{ActorId, Change, ChangeHash};
use rusqlite::Connection;

use crate::decode::{self, ChangeMessage, Touched};
use crate::error::{Error, Result};
use crate::freshness::{Freshness, Unseen};
use crate::ids::{DocId, ReplicaId, Version};
use crate::model::{EntityChange, Graph, Millis, Op, Read, Receipt};
use crate::names::{AgentName, GraphName};
use crate::plan::{self, Edit, Planner};
use crate::schema::{self, DocKind, GraphDocs};
use crate::store::{Cached, DocCache, Durability, Store, events, index, log};

/// How many results [`Replica::search`] returns at most.
pub const DEFAULT_SEARCH_LIMIT: usize = 200;

/// How to open a replica.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// The graph to open.
    pub graph: GraphName,
    /// The agent writing through this handle.
    pub agent: AgentName,
    /// Commit durability.
    pub durability: Durability,
}

impl OpenOptions {
    /// Options for `agent` on the `default` graph with full durability.
    pub fn new(agent: AgentName) -> Self {
        OpenOptions { graph: GraphName::default_graph(), agent, durability: Durability::Full }
    }

    /// Chooses the graph.
    pub fn graph(mut self, graph: GraphName) -> Self {
        self.graph = graph;
        self
    }

    /// Chooses the durability.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
}

#[derive(Debug)]
struct Inner {
    store: Store,
    cache: DocCache,
}

/// One agent's replica of one graph. See the crate documentation for a tour.
#[derive(Debug)]
pub struct Replica {
    graph: GraphName,
    agent: AgentName,
    docs: GraphDocs,
    replica: ReplicaId,
    path: PathBuf,
    inner: Mutex<Inner>,
    link: crate::link::Link,
}

/// The wall clock, in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
}

/// Logs changes that `doc` already holds, records their events and refreshes the index for the
/// keys they touched. Changes the file already has are skipped. Returns the newest position
/// logged, if any.
fn ingest(
    db: &Connection,
    graph: &GraphName,
    id: DocId,
    cached: &Cached,
    changes: &[Change],
    local: bool,
    search: &mut index::SearchUpdates,
) -> Result<Option<i64>> {
    let (doc, layout) = (&cached.doc, &cached.layout);
    let mut touched = Touched::default();
    let mut newest = None;
    for change in changes {
        let agent = decode::change_agent(change);
        let at = decode::change_time(change);
        let Some(seq) = log::append(db, &id, change, &agent, at)? else { continue };
        newest = Some(seq);
        if let Some(layout) = &layout {
            let happened = decode::decode(change, doc, layout, local, &mut touched);
            events::insert(db, seq, graph.as_str(), &agent, at, &happened)?;
        }
    }
    if let (Some(layout), false) = (&layout, touched.is_empty()) {
        index::refresh(db, graph.as_str(), doc, layout, &touched, search)?;
    }
    Ok(newest)
}

fn missing_doc(id: &DocId) -> Error {
    Error::CorruptStore { doc: id.to_string(), reason: "the document is missing from the log".into() }
}

/// Below this many edits in a batch, editing documents on one thread is faster than starting more.
const PARALLEL_EDITS: usize = 2_000;

/// Applies each document's edits as one change and returns the changes. Large batches edit
/// different shards on several threads (Automerge's per-operation cost dominates them); the
/// threads are scoped and joined before this returns, so nothing outlives the call.
fn edit_docs(
    docs: &mut [(DocId, Cached)],
    edits: &std::collections::BTreeMap<DocId, Vec<Edit>>,
    commit: (&str, Millis),
) -> Result<Vec<(DocId, Change)>> {
    fn edit_one(
        id: DocId,
        cached: &mut Cached,
        edits: &[Edit],
        commit: (&str, Millis),
    ) -> Result<Option<(DocId, Change)>> {
        let Cached { doc, layout } = cached;
        let layout = layout.as_ref().ok_or_else(|| Error::CorruptStore {
            doc: id.to_string(),
            reason: "the document is not a Cairn shard".into(),
        })?;
        let mut tx = doc.transaction();
        for edit in edits {
            edit.apply(&mut tx, layout)?;
        }
        let options = CommitOptions::default().with_message(commit.0).with_time(commit.1);
        if tx.commit_with(options).0.is_none() {
            return Ok(None);
        }
        let change = doc.get_last_local_change().ok_or_else(|| Error::CorruptStore {
            doc: id.to_string(),
            reason: "a committed change is missing".into(),
        })?;
        Ok(Some((id, change)))
    }
    let run = |chunk: &mut [(DocId, Cached)]| -> Result<Vec<(DocId, Change)>> {
        let mut out = Vec::new();
        for (id, doc) in chunk {
            if let Some(edits) = edits.get(id) {
                out.extend(edit_one(*id, doc, edits, commit)?);
            }
        }
        Ok(out)
    };
    let total: usize = edits.values().map(Vec::len).sum();
    if total < PARALLEL_EDITS {
        return run(docs);
    }
    // Asking the OS is not free (it reads cgroup files); once per process is enough.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let threads = cores.min(docs.len());
    if threads < 2 {
        return run(docs);
    }
    let per_thread = docs.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = docs.chunks_mut(per_thread).map(|chunk| s.spawn(move || run(chunk))).collect();
        let mut out = Vec::new();
        for h in handles {
            // A panic inside Automerge is a bug; surface it as one rather than unwinding through.
            let part = h.join().map_err(|_| Error::CorruptStore {
                doc: "batch".into(),
                reason: "a document edit panicked (please report this)".into(),
            })??;
            out.extend(part);
        }
        Ok(out)
    })
}

impl Replica {
    /// Opens the `default` graph in the file at `path` (created if missing) for `agent`.
    pub fn open(path: impl AsRef<Path>, agent: &str) -> Result<Replica> {
        Replica::open_with(path, OpenOptions::new(agent.parse()?))
    }

    /// Opens a replica with explicit options. Every open writes under a fresh Automerge actor id,
    /// so two handles (or processes) never share one; the agent name goes into change metadata.
    pub fn open_with(path: impl AsRef<Path>, options: OpenOptions) -> Result<Replica> {
        let path = path.as_ref().to_owned();
        let mut store = Store::open(&path, options.durability)?;
        let docs = GraphDocs::of(&options.graph);
        let mut cache = DocCache::new(ActorId::random());
        let graph = options.graph.clone();
        // Make sure every document of the graph exists, starting from its shared genesis. Looked
        // for under a read first: the write lock is taken only for a graph's first open.
        let missing = |tx: &rusqlite::Transaction<'_>| -> Result<Vec<_>> {
            let mut stmt = tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM changes WHERE doc = ?1)")?;
            let mut missing = Vec::new();
            for (id, kind) in docs.all() {
                if !stmt.query_row([&id.as_bytes()[..]], |r| r.get::<_, bool>(0))? {
                    missing.push((id, kind));
                }
            }
            Ok(missing)
        };
        if !store.read(missing)?.is_empty() {
            store.write(|tx| {
                for (id, kind) in missing(tx)? {
                    let genesis = Cached::new(schema::genesis(&graph, id, kind));
                    let changes = genesis.doc.get_changes(&[]);
                    ingest(tx, &graph, id, &genesis, &changes, false, &mut index::SearchUpdates::default())?;
                }
                Ok(())
            })?;
        }
        cache.clear();
        let replica = store.replica_id();
        Ok(Replica {
            graph: options.graph,
            agent: options.agent,
            docs,
            replica,
            path,
            inner: Mutex::new(Inner { store, cache }),
            link: crate::link::Link::default(),
        })
    }

    /// The graph this replica holds.
    pub fn graph(&self) -> &GraphName {
        &self.graph
    }

    /// The agent writing through this handle.
    pub fn agent(&self) -> &AgentName {
        &self.agent
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The graph's document ids.
    pub fn docs(&self) -> &GraphDocs {
        &self.docs
    }

    /// The sync link, through which a sync driver reports connection state and relay heads.
    pub fn link(&self) -> &crate::link::Link {
        &self.link
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the file inconsistent (SQLite rolls the
        // transaction back), and a failed write clears the cache, so the state is safe to reuse.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn version(&self, seq: i64) -> Version {
        Version { replica: self.replica, seq }
    }

    fn check_version(&self, db: &Connection, v: Version) -> Result<()> {
        if v.replica != self.replica {
            return Err(Error::ForeignVersion(v));
        }
        let latest = log::max_seq(db)?;
        if v.seq > latest {
            return Err(Error::UnknownVersion(v, latest));
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Writes

    /// Applies a batch of operations atomically as one change per touched shard, committed with
    /// every index update in one SQLite transaction before it returns.
    pub fn write(&self, ops: &[Op]) -> Result<Receipt> {
        self.transact(ops, None)
    }

    /// Applies a batch only if no change after `expect` touched any of `depends_on`; otherwise
    /// returns [`Error::Conflict`] listing those changes and writes nothing. The check and the
    /// write are one transaction, atomic against other threads and processes on this file.
    pub fn write_if(&self, ops: &[Op], expect: Version, depends_on: &[String]) -> Result<Receipt> {
        self.transact(ops, Some((expect, depends_on)))
    }

    fn transact(&self, ops: &[Op], precondition: Option<(Version, &[String])>) -> Result<Receipt> {
        plan::validate(ops)?;
        let now = now_millis();
        let message = serde_json::to_string(&ChangeMessage { agent: self.agent.to_string() }).unwrap_or_default();
        let mut guard = self.lock();
        let Inner { store, cache } = &mut *guard;
        let result = store.write(|tx| {
            cache.catch_up(tx)?;
            if let Some((expect, entities)) = precondition {
                self.check_version(tx, expect)?;
                let changes = events::since_touching(tx, self.graph.as_str(), expect.seq, entities)?;
                if !changes.is_empty() {
                    return Err(Error::Conflict { expected: expect, entities: entities.to_vec(), changes });
                }
            }
            let mut planner = Planner::new(tx, self.graph.as_str(), &self.docs, self.agent.as_str(), now);
            for op in ops {
                planner.push(op)?;
            }
            let plan = planner.finish();
            let mut newest = log::max_seq(tx)?;
            let mut search = index::SearchUpdates::default();
            for id in plan.edits.keys() {
                cache.get(tx, *id, true)?.ok_or_else(|| missing_doc(id))?;
            }
            let mut docs = cache.take(plan.edits.keys().copied());
            let edited = edit_docs(&mut docs, &plan.edits, (&message, now));
            cache.put_back(docs);
            for (id, change) in edited? {
                let cached = cache.entry(tx, id, false)?.ok_or_else(|| missing_doc(&id))?;
                if let Some(seq) = ingest(tx, &self.graph, id, cached, &[change], true, &mut search)? {
                    newest = seq;
                }
            }
            search.apply(tx)?;
            cache.mark_seen(newest);
            let changed: Vec<DocId> = plan.edits.keys().copied().collect();
            Ok((Receipt { version: self.version(newest), outcomes: plan.outcomes }, changed))
        });
        match result {
            Ok((receipt, changed)) => {
                drop(guard);
                if !changed.is_empty() {
                    self.link.notify_local_change(&changed);
                }
                Ok(receipt)
            }
            Err(e) => {
                // Documents may hold edits the file rolled back: reload them from the file.
                cache.clear();
                Err(e)
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Reads

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<Read<T>> {
        let mut guard = self.lock();
        let graph = self.graph.as_str();
        let agent = self.agent.as_str();
        let (data, seq, cursor, unseen) = guard.store.read(|tx| {
            let seq = log::max_seq(tx)?;
            let data = f(tx)?;
            let cursor = events::cursor(tx, graph, agent)?;
            // An agent's first read sees the whole graph: nothing in it is "unseen".
            let unseen = match cursor {
                Some(c) if c < seq => events::unseen(tx, graph, agent, c, seq)?,
                _ => Unseen::default(),
            };
            Ok((data, seq, cursor, unseen))
        })?;
        if cursor.is_none_or(|c| c < seq) {
            guard.store.write(|tx| events::advance_cursor(tx, graph, agent, seq))?;
        }
        drop(guard);
        Ok(Read { data, version: self.version(seq), freshness: self.freshness(), unseen })
    }

    /// The whole graph: entities with their currently valid observations, and currently valid
    /// relations.
    pub fn read_graph(&self) -> Result<Read<Graph>> {
        let now = now_millis();
        self.read(|db| index::read_graph(db, self.graph.as_str(), index::Filter::ValidAt(now)))
    }

    /// The whole graph as it was believed to be at world time `t` (facts valid then), or with
    /// `None` every fact ever recorded and not deleted, whatever its validity.
    pub fn read_graph_as_of(&self, t: Option<Millis>) -> Result<Read<Graph>> {
        let filter = t.map_or(index::Filter::All, index::Filter::ValidAt);
        self.read(|db| index::read_graph(db, self.graph.as_str(), filter))
    }

    /// The named entities (unknown names are skipped) and every relation from or to them.
    pub fn open_nodes(&self, names: &[String]) -> Result<Read<Graph>> {
        let now = now_millis();
        self.read(|db| index::open_nodes(db, self.graph.as_str(), names, index::Filter::ValidAt(now)))
    }

    /// Entities whose name, type or observations contain every whitespace-separated term of
    /// `query` (case-insensitive, BM25-ranked, at most [`DEFAULT_SEARCH_LIMIT`]), and the
    /// relations touching them. Terms match at the start of a word (`tea`: "green tea",
    /// "Teapot"); only if no entity matches that way, anywhere (`lic`: "Alice"). Any text is a
    /// valid query.
    pub fn search(&self, query: &str) -> Result<Read<Graph>> {
        self.search_limit(query, DEFAULT_SEARCH_LIMIT)
    }

    /// [`Replica::search`] with an explicit result limit.
    pub fn search_limit(&self, query: &str, limit: usize) -> Result<Read<Graph>> {
        let now = now_millis();
        self.read(|db| index::search(db, self.graph.as_str(), query, limit, index::Filter::ValidAt(now)))
    }

    /// Everything that ever happened to an entity, oldest first, including deleted observations
    /// and relations and the entity's own deletion.
    pub fn history(&self, entity: &str) -> Result<Read<Vec<EntityChange>>> {
        self.read(|db| events::history(db, self.graph.as_str(), entity))
    }

    /// Entity-level changes logged after `since` (oldest first, at most `limit`).
    pub fn changes_since(&self, since: Version, limit: usize) -> Result<Read<Vec<EntityChange>>> {
        self.read(|db| {
            self.check_version(db, since)?;
            events::since(db, self.graph.as_str(), since.seq, limit)
        })
    }

    /// Waits until a change is logged after `since` (by this or any other process on the file,
    /// or arriving from a peer), or until `timeout`; returns the changes after `since` (empty on
    /// timeout). Blocks the calling thread; `cairn_sync::wait_for_change` is the async variant.
    pub fn wait_for_change(&self, since: Version, timeout: std::time::Duration) -> Result<Read<Vec<EntityChange>>> {
        // Another process's writes wake nothing here, so the wait also looks at the file every
        // few milliseconds; this process's own and synced changes wake it at once.
        const POLL: std::time::Duration = std::time::Duration::from_millis(25);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let generation = self.link.generation();
            if self.log_position()? > since.seq || std::time::Instant::now() >= deadline {
                return self.changes_since(since, usize::MAX);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            self.link.wait_past(generation, left.min(POLL));
        }
    }

    /// The current version and freshness without reading any data (does not move the agent's
    /// read cursor, so it reports unseen changes without marking them seen).
    pub fn status(&self) -> Result<Status> {
        let mut guard = self.lock();
        let graph = self.graph.as_str();
        let agent = self.agent.as_str();
        let size = guard.store.size_bytes();
        let (seq, unseen, counts) = guard.store.read(|tx| {
            let seq = log::max_seq(tx)?;
            let unseen = match events::cursor(tx, graph, agent)? {
                Some(c) if c < seq => events::unseen(tx, graph, agent, c, seq)?,
                _ => Unseen::default(),
            };
            Ok((seq, unseen, index::counts(tx, graph)?))
        })?;
        drop(guard);
        Ok(Status {
            version: self.version(seq),
            freshness: self.freshness(),
            unseen,
            entities: counts.0,
            observations: counts.1,
            relations: counts.2,
            database_bytes: size,
        })
    }

    /// How fresh this replica's view is (`local` unless a sync driver is attached).
    pub fn freshness(&self) -> Freshness {
        self.link.freshness()
    }

    // -----------------------------------------------------------------------------------------
    // Offline exchange and maintenance

    /// This replica's heads for every document of the graph: hand them to another replica's
    /// [`Replica::export_since`] to receive exactly what this one lacks.
    pub fn heads(&self) -> Result<crate::exchange::Heads> {
        let mut guard = self.lock();
        guard.store.read(|tx| {
            let seq = log::max_seq(tx)?;
            let mut heads = crate::exchange::Heads::default();
            for (id, _) in self.docs.all() {
                heads.docs.insert(id, log::heads_at(tx, &id, seq)?);
            }
            Ok(heads)
        })
    }

    /// Every change this replica has that a replica with `theirs` heads lacks, as a bundle for
    /// [`Replica::import`].
    pub fn export_since(&self, theirs: &crate::exchange::Heads) -> Result<Vec<u8>> {
        let mut guard = self.lock();
        let Inner { store, cache } = &mut *guard;
        store.read(|tx| {
            cache.catch_up(tx)?;
            let mut bundle = crate::exchange::Bundle::default();
            for (id, _) in self.docs.all() {
                let Some(doc) = cache.get(tx, id, false)? else { continue };
                let known: Vec<ChangeHash> = theirs
                    .docs
                    .get(&id)
                    .map(|hs| {
                        hs.iter()
                            .filter(|h| automerge::ReadDoc::get_change_by_hash(doc, h).is_some())
                            .copied()
                            .collect()
                    })
                    .unwrap_or_default();
                let changes = doc.get_changes(&known);
                if !changes.is_empty() {
                    bundle.docs.push((id, changes));
                }
            }
            Ok(bundle.encode())
        })
    }

    /// Merges a bundle from [`Replica::export_since`]. The bundle is checked whole before anything
    /// is written: a corrupt change, or a document of another graph, refuses it all.
    pub fn import(&self, bundle: &[u8]) -> Result<ImportReport> {
        let bundle = crate::exchange::Bundle::decode(bundle)?;
        for (id, _) in &bundle.docs {
            if self.docs.kind_of(id).is_none() {
                return Err(Error::CorruptChange(format!("document {id} does not belong to graph {}", self.graph)));
            }
        }
        let mut report = ImportReport::default();
        self.apply_to_docs(bundle.docs.into_iter(), &mut report)?;
        Ok(report)
    }

    /// Applies changes to documents and logs what became applicable, in one transaction.
    fn apply_to_docs(
        &self,
        per_doc: impl Iterator<Item = (DocId, Vec<Change>)>,
        report: &mut ImportReport,
    ) -> Result<()> {
        let mut guard = self.lock();
        let Inner { store, cache } = &mut *guard;
        let mut changed = Vec::new();
        let result = store.write(|tx| {
            cache.catch_up(tx)?;
            let mut newest = 0;
            let mut search = index::SearchUpdates::default();
            for (id, changes) in per_doc {
                changed.push(id);
                let cached = cache.entry(tx, id, true)?.ok_or_else(|| missing_doc(&id))?;
                let before = cached.doc.get_heads();
                report.offered += changes.len();
                cached.doc.apply_changes(changes).map_err(|e| Error::CorruptChange(e.to_string()))?;
                let applied = cached.doc.get_changes(&before);
                report.applied += applied.len();
                if let Some(seq) = ingest(tx, &self.graph, id, cached, &applied, false, &mut search)? {
                    newest = seq;
                }
            }
            search.apply(tx)?;
            cache.mark_seen(newest);
            Ok(newest)
        });
        drop(guard);
        match result {
            Ok(newest) => {
                if newest > 0 {
                    self.link.notify_local_change(&changed);
                }
                report.version = Some(self.version(newest));
                Ok(())
            }
            Err(e) => {
                self.lock().cache.clear();
                Err(e)
            }
        }
    }

    /// Folds every document's loose changes into a snapshot. History stays readable: snapshots
    /// keep every change, and the log keeps every change's metadata.
    pub fn compact(&self) -> Result<usize> {
        let mut guard = self.lock();
        let Inner { store, cache } = &mut *guard;
        store.write(|tx| {
            cache.catch_up(tx)?;
            for (id, _) in self.docs.all() {
                cache.get(tx, id, false)?;
            }
            cache.compact_all(tx)
        })
    }

    /// Rebuilds the derived index of this graph from its documents. The index is normally kept
    /// in step by every write; this repairs it after a bug or a manual edit of the file.
    pub fn reindex(&self) -> Result<()> {
        let mut guard = self.lock();
        let Inner { store, cache } = &mut *guard;
        store.write(|tx| {
            cache.catch_up(tx)?;
            index::clear_graph(tx, self.graph.as_str())?;
            let mut search = index::SearchUpdates::default();
            for (id, kind) in self.docs.all() {
                if kind == DocKind::Root {
                    continue;
                }
                let Some(Cached { doc, layout: Some(layout) }) = cache.entry(tx, id, false)? else { continue };
                let mut touched = Touched::default();
                touched.entities.extend(automerge::ReadDoc::keys(doc, &layout.entities));
                for key in automerge::ReadDoc::keys(doc, &layout.observations) {
                    if let Some((entity, _)) = schema::split_observation_key(&key) {
                        touched.entities.insert(entity.to_owned());
                    }
                    touched.observations.insert(key);
                }
                for key in automerge::ReadDoc::keys(doc, &layout.relations) {
                    if let Some((from, _, _)) = schema::split_relation_key(&key) {
                        touched.entities.insert(from.to_owned());
                    }
                    touched.relations.insert(key);
                }
                index::refresh(tx, self.graph.as_str(), doc, layout, &touched, &mut search)?;
            }
            search.apply(tx)
        })
    }

    // -----------------------------------------------------------------------------------------
    // Sync: the hooks a sync driver uses. Each is one short transaction.

    /// Builds the next sync message for `doc` to a peer, or `None` if there is nothing to say.
    pub fn generate_sync_message(&self, doc: DocId, state: &mut sync::State) -> Result<Option<sync::Message>> {
        let mut guard = self.lock();
        let Inner { store, cache } = &mut *guard;
        store.read(|tx| {
            cache.catch_up(tx)?;
            Ok(cache.get(tx, doc, false)?.and_then(|d| d.generate_sync_message(state)))
        })
    }

    /// Applies a peer's sync message to `doc`, logging and indexing whatever it brought in one
    /// transaction. Returns how many changes became applied.
    pub fn receive_sync_message(&self, doc: DocId, state: &mut sync::State, message: sync::Message) -> Result<usize> {
        if self.docs.kind_of(&doc).is_none() {
            return Err(Error::CorruptChange(format!("document {doc} does not belong to graph {}", self.graph)));
        }
        let mut guard = self.lock();
        let Inner { store, cache } = &mut *guard;
        if message.changes.is_empty() {
            // An acknowledgement or a summary: it moves only the sync state, not the document.
            return store.read(|tx| {
                cache.catch_up(tx)?;
                let cached = cache.entry(tx, doc, false)?.ok_or_else(|| missing_doc(&doc))?;
                cached.doc.receive_sync_message(state, message).map_err(|e| Error::CorruptChange(e.to_string()))?;
                Ok(0)
            });
        }
        let result = store.write(|tx| {
            cache.catch_up(tx)?;
            let cached = cache.entry(tx, doc, true)?.ok_or_else(|| missing_doc(&doc))?;
            let before = cached.doc.get_heads();
            cached.doc.receive_sync_message(state, message).map_err(|e| Error::CorruptChange(e.to_string()))?;
            let applied = cached.doc.get_changes(&before);
            let mut search = index::SearchUpdates::default();
            let newest = ingest(tx, &self.graph, doc, cached, &applied, false, &mut search)?;
            search.apply(tx)?;
            if let Some(seq) = newest {
                cache.mark_seen(seq);
            }
            Ok(applied.len())
        });
        match &result {
            Ok(n) if *n > 0 => {
                drop(guard);
                self.link.notify_remote_change(&[doc]);
            }
            Ok(_) => {}
            Err(_) => cache.clear(),
        }
        result
    }

    /// A value a tool saved under `key` in this file (an import's progress, say), if any.
    pub fn checkpoint(&self, key: &str) -> Result<Option<String>> {
        let mut guard = self.lock();
        let key = format!("checkpoint:{key}");
        guard.store.read(|tx| {
            Ok(rusqlite::OptionalExtension::optional(tx.query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [&key],
                |r| r.get(0),
            ))?)
        })
    }

    /// Saves (or with `None`, clears) a tool's value under `key` in this file.
    pub fn set_checkpoint(&self, key: &str, value: Option<&str>) -> Result<()> {
        let mut guard = self.lock();
        let key = format!("checkpoint:{key}");
        guard.store.write(|tx| {
            match value {
                Some(v) => tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", [&key, v])?,
                None => tx.execute("DELETE FROM meta WHERE key = ?1", [&key])?,
            };
            Ok(())
        })
    }

    /// How many changes the file has logged (any process): a cheap way to notice new ones.
    pub fn log_position(&self) -> Result<i64> {
        let mut guard = self.lock();
        guard.store.read(|tx| log::max_seq(tx))
    }

    /// An id for this replica's storage, stable for the life of the file; sync peers key what
    /// they remember about this replica by it.
    pub fn storage_id(&self) -> String {
        format!("cairn-{}", self.replica)
    }

    /// The heads of one document as this replica holds them.
    pub fn doc_heads(&self, doc: DocId) -> Result<Vec<ChangeHash>> {
        let mut guard = self.lock();
        let Inner { store, cache } = &mut *guard;
        store.read(|tx| {
            cache.catch_up(tx)?;
            Ok(cache.get(tx, doc, false)?.map(|d| d.get_heads()).unwrap_or_default())
        })
    }

    /// How many of this replica's changes to `doc` a peer holding `theirs` lacks (changes it
    /// cannot know about are counted as lacking). The genesis change, identical on every replica
    /// and the only one without dependencies, is never counted: it is not anyone's write.
    pub fn missing_from(&self, doc: DocId, theirs: &[ChangeHash]) -> Result<usize> {
        let mut guard = self.lock();
        let Inner { store, cache } = &mut *guard;
        store.read(|tx| {
            cache.catch_up(tx)?;
            let Some(d) = cache.get(tx, doc, false)? else { return Ok(0) };
            let known: Vec<ChangeHash> =
                theirs.iter().filter(|h| automerge::ReadDoc::get_change_by_hash(d, h).is_some()).copied().collect();
            Ok(d.get_changes(&known).iter().filter(|c| !c.deps().is_empty()).count())
        })
    }

    /// Whether this replica holds every change in `heads` for `doc`.
    pub fn has_heads(&self, doc: DocId, heads: &[ChangeHash]) -> Result<bool> {
        let mut guard = self.lock();
        guard.store.read(|tx| {
            let mut stmt = tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM changes WHERE doc = ?1 AND hash = ?2)")?;
            for h in heads {
                let present: bool = stmt.query_row(rusqlite::params![&doc.as_bytes()[..], &h.0[..]], |r| r.get(0))?;
                if !present {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }
}

/// What [`Replica::import`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Changes in the bundle.
    pub offered: usize,
    /// Changes newly applied (the rest were already here, or wait for changes not yet seen).
    pub applied: usize,
    /// The version after the import.
    pub version: Option<Version>,
}

/// A replica's state at a glance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// The current version.
    pub version: Version,
    /// How fresh the view is.
    pub freshness: Freshness,
    /// What other agents changed since this agent's last read.
    pub unseen: Unseen,
    /// Visible entities.
    pub entities: u64,
    /// Observations present (whatever their validity).
    pub observations: u64,
    /// Relations present (whatever their validity).
    pub relations: u64,
    /// Size of the database file and its WAL.
    pub database_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn replica_is_send_and_sync() {
        assert_send_sync::<Replica>();
    }
}

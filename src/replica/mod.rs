//! A replica: one agent's handle on one graph in one SQLite file.
//!
//! `Replica` is synchronous and `Send + Sync`: share it behind an `Arc` between threads or tasks.
//! Its file is behind one [`DocLog`], which serialises this process's use of it with a mutex;
//! SQLite's write lock serialises processes. The methods live by concern: opening (here),
//! [`write`](self::write), [`read`](self::read) and the read cursor, [`bundle`](self::bundle)s,
//! [`maintenance`](self::maintenance), and the hooks a sync driver uses ([`sync`](self::sync)).

mod bundle;
mod maintenance;
mod read;
mod sync;
mod write;

use std::path::Path;
use std::sync::Arc;

use automerge::ActorId;

use crate::error::{Error, Result};
use crate::ids::{DocId, LogPosition, Version};
use crate::integrity::DocRules;
use crate::link::Link;
use crate::model::Millis;
use crate::names::{AgentName, GraphName};
use crate::schema::{self, GraphDocs};
use crate::store::{Access, DocLog, Durability, ReadOnlyCause, Txn};

pub use bundle::ImportReport;
pub use read::{DEFAULT_SEARCH_LIMIT, Status};

/// How to open a replica.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// The graph to open.
    pub graph: GraphName,
    /// The agent writing through this handle.
    pub agent: AgentName,
    /// Commit durability.
    pub durability: Durability,
    /// Read-write, read-only, or read-only only where the file cannot be written (the default).
    pub access: Access,
}

impl OpenOptions {
    /// Options for `agent` on the `default` graph with full durability.
    pub fn new(agent: AgentName) -> Self {
        OpenOptions { graph: GraphName::default_graph(), agent, durability: Durability::Full, access: Access::Auto }
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

    /// Chooses the access (see [`Access`]; read-only reads do not move the agent's read cursor).
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }
}

/// One agent's replica of one graph. See the crate documentation for a tour.
#[derive(Debug)]
pub struct Replica {
    graph: GraphName,
    agent: AgentName,
    docs: GraphDocs,
    log: DocLog,
    /// What sync drivers report here, and who is told about new changes.
    link: Arc<Link>,
    /// The schema check's rules for each document, root first; built on first use, since only
    /// changes from outside need them.
    rules: std::sync::OnceLock<Vec<DocRules>>,
}

/// The wall clock, in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
}

impl Replica {
    /// Opens the `default` graph in the file at `path` (created if missing) for `agent`; read-only
    /// if this process may not write the file (see [`Access::Auto`]).
    pub fn open(path: impl AsRef<Path>, agent: &str) -> Result<Replica> {
        Replica::open_with(path, OpenOptions::new(agent.parse()?))
    }

    /// Opens a replica with explicit options. Every open writes under a fresh Automerge actor id,
    /// so two handles (or processes) never share one; the agent name goes into change metadata.
    pub fn open_with(path: impl AsRef<Path>, options: OpenOptions) -> Result<Replica> {
        let log = DocLog::open(path.as_ref(), options.durability, ActorId::random(), options.access)?;
        let docs = GraphDocs::of(&options.graph);
        let graph = options.graph.clone();
        // Make sure every document of the graph exists, starting from its shared genesis. Looked
        // for under a read first: the write lock is taken only for a graph's first open.
        let missing = |tx: &mut Txn<'_>| -> Result<Vec<_>> {
            let mut missing = Vec::new();
            for (id, kind) in docs.all() {
                if !tx.holds(&id)? {
                    missing.push((id, kind));
                }
            }
            Ok(missing)
        };
        // A graph this version creates holds nothing the schema check refuses; one an older
        // version wrote is sifted once (see `store/schema_v3.sql`).
        let sifted_key = format!("integrity/v1/{graph}");
        let ready = |tx: &mut Txn<'_>| Ok(missing(tx)?.is_empty() && tx.checkpoint(&sifted_key)?.is_some());
        if !log.read(ready)? {
            if let Some(cause) = log.read_only() {
                return Err(Self::cannot_set_up(&log, cause, &graph, log.read(missing)?.is_empty()));
            }
            log.write(|tx| {
                let created = missing(tx)?;
                for (id, kind) in &created {
                    tx.create(&graph, *id, schema::genesis(&graph, *id, *kind))?;
                }
                if tx.checkpoint(&sifted_key)?.is_none() {
                    if created.len() < docs.all().count() {
                        let ids: Vec<DocId> = docs.all().map(|(id, _)| id).collect();
                        tx.sift(&graph, &ids)?;
                    }
                    tx.set_checkpoint(&sifted_key, Some("sifted"))?;
                }
                Ok(())
            })?;
        }
        Ok(Replica {
            graph: options.graph,
            agent: options.agent,
            docs,
            log,
            link: Arc::default(),
            rules: std::sync::OnceLock::new(),
        })
    }

    /// Loads every document of this graph into memory on a thread of its own, and returns at
    /// once. Reads and writes go on meanwhile; each document is handed over between them, so
    /// none waits for more than that. Without it, a document loads when something first needs
    /// it, which a long-lived process can spare its first writes: at 100k entities, a write
    /// that loads a cold shard takes 30-50 ms. Memory grows to the whole graph's (~80 MiB at
    /// 100k entities). `cairn mcp` warms its graph as it starts.
    pub fn warm_up(&self) -> Result<crate::WarmUp> {
        self.log.warm(self.docs.all().map(|(id, _)| id).collect())
    }

    /// Why a read-only open cannot get `graph` ready: with `exists`, its documents are in the
    /// file and only the one-time sift (a write) is missing; otherwise the graph is not there.
    fn cannot_set_up(log: &DocLog, cause: ReadOnlyCause, graph: &GraphName, exists: bool) -> Error {
        if exists {
            log.refused(
                cause,
                format!(
                    "open graph {:?}: an older version wrote it, and its stored changes must be checked against \
                     the schema once, which writes (open it once writable with this build)",
                    graph.as_str()
                ),
            )
        } else {
            log.refused(cause, format!("create graph {:?}, which the file does not hold", graph.as_str()))
        }
    }

    /// Why this replica is read-only, if it is: then reads do not move the agent's read cursor
    /// and every write is refused with [`Error::ReadOnly`].
    pub fn read_only(&self) -> Option<ReadOnlyCause> {
        self.log.read_only()
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
        self.log.path()
    }

    /// The graph's document ids.
    pub fn docs(&self) -> &GraphDocs {
        &self.docs
    }

    /// Calls `f` with the documents that changed after every change this process logs (its own
    /// writes, imports, and what sync brings in), from whichever thread logged it. Keep `f` short
    /// and non-blocking (wake a task, say). Changes other processes log on the same file are not
    /// reported here; [`Replica::wait_for_change`] also looks for those. Stops when the returned
    /// [`Subscription`] is dropped.
    pub fn subscribe(&self, f: impl Fn(&[DocId]) + Send + Sync + 'static) -> Subscription {
        Subscription { link: self.link.clone(), id: self.link.subscribe(f) }
    }

    fn version(&self, seq: LogPosition) -> Version {
        Version { replica: self.log.replica_id(), seq }
    }

    /// Refuses a version from another file, or one ahead of this file's log.
    fn check_version(&self, tx: &Txn<'_>, v: Version) -> Result<()> {
        if v.replica != self.log.replica_id() {
            return Err(Error::ForeignVersion(v));
        }
        let latest = tx.position()?;
        if v.seq > latest {
            return Err(Error::UnknownVersion(v, latest));
        }
        Ok(())
    }

    /// A document named by a peer or a bundle, refused unless it belongs to this graph.
    /// The schema check for one of this graph's documents; a document of another graph is
    /// refused.
    pub(crate) fn rules_for(&self, doc: &DocId) -> Result<&DocRules> {
        let all = self.rules.get_or_init(|| {
            // Every id of `docs` is one of the graph's documents, so `DocRules::new` finds each.
            self.docs.all().filter_map(|(id, _)| DocRules::new(&self.graph, id)).collect()
        });
        all.iter()
            .find(|r| r.doc() == *doc)
            .ok_or_else(|| Error::CorruptChange(format!("document {doc} does not belong to graph {}", self.graph)))
    }

    /// Checks changes from outside for `doc` against the schema before anything stores them.
    fn admit(&self, doc: &DocId, changes: &[automerge::Change]) -> Result<()> {
        Ok(self.rules_for(doc)?.check_all(changes)?)
    }
}

/// A callback registered with [`Replica::subscribe`]; dropping it unsubscribes.
#[must_use = "dropping a subscription unsubscribes at once"]
pub struct Subscription {
    link: Arc<Link>,
    id: u64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("id", &self.id).finish()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.link.unsubscribe(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn replica_is_send_and_sync() {
        assert_send_sync::<Replica>();
    }

    /// Logs `change` into `doc` as an older version would have, past the schema check.
    fn plant(replica: &Replica, doc: DocId, change: automerge::Change) {
        replica
            .log
            .write(|tx| {
                let cached = tx.existing(doc)?;
                cached.doc.apply_changes([change.clone()]).unwrap();
                tx.log(&replica.graph, doc, &[change], false)?;
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn what_an_older_version_stored_and_the_check_refuses_is_quarantined_on_open() {
        use automerge::transaction::{CommitOptions, Transactable};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let replica = Replica::open(&path, "alice").unwrap();
        replica.write(&[crate::Op::create_entity("Alice", "person", &["likes tea"])]).unwrap();
        replica.write(&[crate::Op::create_entity("Bob", "person", &["likes coffee"])]).unwrap();
        // Mallory's change, as a relay of an older version let it through: an empty entity name
        // in Alice's shard, with an escape sequence as its type.
        let shard = replica.docs.shard_for("Alice");
        let mallory = replica
            .log
            .read(|tx| {
                let cached = tx.existing(shard)?;
                let layout = schema::Layout::of(&cached.doc).unwrap();
                let mut fork = cached.doc.fork().with_actor(ActorId::random());
                let mut t = fork.transaction();
                t.put(&layout.entities, "\u{1f}", r#"{"type":"\u001b[2J","by":"mallory","at":1}"#).unwrap();
                t.commit_with(CommitOptions::default().with_message(r#"{"agent":"mallory"}"#.to_owned()));
                Ok(fork.get_last_local_change().unwrap().clone())
            })
            .unwrap();
        plant(&replica, shard, mallory.clone());
        assert_eq!(replica.read_graph().unwrap().data.entities.len(), 3, "an older version reads it");
        // Then Alice wrote on top of it, in the same shard.
        replica.write(&[crate::Op::add_observation("Alice", "after")]).unwrap();
        replica.log.write(|tx| tx.set_checkpoint(&format!("integrity/v1/{}", replica.graph), None)).unwrap();
        drop(replica);

        let reopened = Replica::open(&path, "alice").unwrap();
        let graph = reopened.read_graph().unwrap().data;
        let names: Vec<&str> = graph.entities.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["Alice", "Bob"], "the planted entity is gone from reads");
        let alice = &graph.entities[0];
        assert_eq!(alice.observations.iter().map(|o| o.text.as_str()).collect::<Vec<_>>(), ["likes tea"]);
        let quarantined = reopened.quarantined().unwrap();
        assert_eq!(quarantined.len(), 2, "{quarantined:?}");
        assert_eq!((quarantined[0].agent.as_str(), quarantined[0].rule.as_deref()), ("mallory", Some("key")));
        assert_eq!((quarantined[1].agent.as_str(), quarantined[1].rule.as_deref()), ("alice", None));
        assert_eq!(reopened.status().unwrap().quarantined, 2);
        // The shard stays writable, and the next open sifts nothing again.
        reopened.write(&[crate::Op::add_observation("Alice", "still writable")]).unwrap();
        drop(reopened);
        let again = Replica::open(&path, "alice").unwrap();
        assert_eq!(again.quarantined().unwrap().len(), 2);
        assert_eq!(again.read_graph().unwrap().data.entities[0].observations.len(), 2);
        assert!(again.history("").unwrap().data.is_empty(), "the planted entity has no history");
    }
}

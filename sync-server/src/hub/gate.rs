//! The hub's door: what a connection's changes must pass before storage sees them, and the
//! graphs the relay creates itself.
//!
//! Three checks, in order, on every change a write connection sends:
//! 1. it decodes within the size and operation budgets (`cairn::sync::decode_changes`);
//! 2. it keeps the schema (`cairn::integrity::DocRules::check`), which needs to know which graph
//!    the document belongs to: from the connection's grant, from the document already held, or
//!    from the exact genesis the message starts with;
//! 3. its actor id belongs to the connection's credential: the first credential to write under
//!    an actor owns it ([`ActorBook`]), so a change forged under another replica's actor is
//!    refused instead of cutting that replica off ("duplicate seq").

use std::collections::HashMap;
use std::sync::Arc;

use cairn::automerge::{ActorId, Change, sync};
use cairn::integrity::{DocRules, Rule};
use cairn::sync::{Carried, Decoded, SyncDocs};
use cairn::{DocId, GraphDocs, GraphName, Result};

use super::{ConnId, DocScope, Hub};

/// Which credential first wrote under each actor id: what lets the relay refuse a change forged
/// under someone else's actor. Bindings must be durable before the change they admit is.
pub trait ActorBook {
    /// The credential that owns `actor`, if any has used it.
    fn owner(&mut self, actor: &ActorId) -> Result<Option<String>>;
    /// Records that `credential` owns `actor` (which has no owner yet).
    fn bind(&mut self, actor: &ActorId, credential: &str) -> Result<()>;
}

/// Documents with actor bindings kept in memory for the life of the process: for a replica
/// serving its own graph to peers, and for tests. A relay keeps them in its storage.
#[derive(Debug)]
pub struct InMemoryBook<D> {
    /// The documents.
    pub docs: D,
    owners: HashMap<ActorId, String>,
}

impl<D> InMemoryBook<D> {
    /// `docs`, with no bindings yet.
    pub fn new(docs: D) -> Self {
        InMemoryBook { docs, owners: HashMap::new() }
    }
}

impl<D> ActorBook for InMemoryBook<D> {
    fn owner(&mut self, actor: &ActorId) -> Result<Option<String>> {
        Ok(self.owners.get(actor).cloned())
    }

    fn bind(&mut self, actor: &ActorId, credential: &str) -> Result<()> {
        self.owners.insert(actor.clone(), credential.to_owned());
        Ok(())
    }
}

impl<D: SyncDocs> SyncDocs for InMemoryBook<D> {
    fn exists(&mut self, doc: &DocId) -> Result<bool> {
        self.docs.exists(doc)
    }
    fn generate(&mut self, doc: &DocId, state: &mut sync::State) -> Result<Option<sync::Message>> {
        self.docs.generate(doc, state)
    }
    fn receive(&mut self, doc: &DocId, state: &mut sync::State, message: sync::Message) -> Result<usize> {
        self.docs.receive(doc, state, message)
    }
    fn has_all(&mut self, doc: &DocId, heads: &[cairn::automerge::ChangeHash]) -> Result<bool> {
        self.docs.has_all(doc, heads)
    }
    fn heads(&mut self, doc: &DocId) -> Result<Vec<cairn::automerge::ChangeHash>> {
        self.docs.heads(doc)
    }
    fn rules(&mut self, doc: &DocId) -> Result<Option<DocRules>> {
        self.docs.rules(doc)
    }
}

/// A refusal: the reason, for the error message and the close frame.
pub(super) type Refusal = String;

impl Hub {
    /// Checks what a write connection sends for `doc` before storage sees it, and returns what
    /// the message carries (for the held changes, `pending.rs`). `Ok(Err(_))` is a refusal of
    /// the connection; `Err` a failure of the relay's own storage.
    pub(super) fn admit(
        &mut self,
        conn: ConnId,
        doc: DocId,
        msg: &sync::Message,
        docs: &mut (impl SyncDocs + ActorBook),
    ) -> Result<std::result::Result<Vec<Carried>, Refusal>> {
        if msg.changes.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        let Decoded { changes, carried } = match cairn::sync::decode_changes(msg, self.config.max_inflated_bytes) {
            Ok(decoded) => decoded,
            Err(e) => return Ok(Err(format!("invalid changes for {doc}: {e}"))),
        };
        let Some(rules) = self.rules_for(conn, doc, &changes, docs)? else {
            return Ok(Err(format!(
                "refused: rule \"{}\": document {doc} is not one this relay holds, and the changes do not start with \
                 a Cairn graph's genesis of it (docs/schema.md, \"Genesis\")",
                Rule::Genesis
            )));
        };
        if let Err(v) = rules.check_all(&changes) {
            return Ok(Err(v.to_string()));
        }
        let Some(c) = self.conns.get(&conn) else { return Ok(Ok(carried)) };
        let (Some(credential), agents) = (c.access.credential.clone(), c.access.agents.clone()) else {
            return Ok(Ok(carried)); // no credential (no access control): nothing is bound
        };
        for change in changes.iter().filter(|c| c.hash() != rules.genesis_hash()) {
            // A change the relay already holds changes nothing, whoever re-sends it (a replica
            // offering everything after a reconnect sends its peers' changes too).
            if docs.has_all(&doc, &[change.hash()])? {
                continue;
            }
            if let Some(agents) = &agents {
                // The schema check has made sure the message names a valid agent.
                let (agent, _) = cairn::schema::change_author(change);
                if !agents.allow(&agent) {
                    return Ok(Err(format!(
                        "change {} refused: rule \"{}\": this token writes as {}, and the change claims {agent:?} \
                         (docs/security.md, \"Attribution\")",
                        change.hash(),
                        Rule::Agent,
                        agents.as_slice().join(", ")
                    )));
                }
            }
            if let Some(refusal) = self.bind(change, &credential, docs)? {
                return Ok(Err(refusal));
            }
        }
        Ok(Ok(carried))
    }

    /// Binds the change's actor to `credential` if no one owns it; a refusal if another does.
    fn bind(&mut self, change: &Change, credential: &str, docs: &mut impl ActorBook) -> Result<Option<Refusal>> {
        let actor = change.actor_id();
        match docs.owner(actor)? {
            None => docs.bind(actor, credential)?,
            Some(owner) if owner == credential => {}
            Some(_) => {
                return Ok(Some(format!(
                    "change {} refused: rule \"{}\": actor {actor} belongs to another credential; every process \
                     writes under an actor of its own (docs/security.md)",
                    change.hash(),
                    Rule::Actor
                )));
            }
        }
        Ok(None)
    }

    /// The rules for `doc`: remembered, from the connection's grant, from the document held, or
    /// from the exact genesis among `changes`.
    fn rules_for(
        &mut self,
        conn: ConnId,
        doc: DocId,
        changes: &[Change],
        docs: &mut impl SyncDocs,
    ) -> Result<Option<Arc<DocRules>>> {
        if let Some(rules) = self.rules.get(&doc) {
            return Ok(Some(Arc::clone(rules)));
        }
        let granted = self.granted_graph(conn, &doc).and_then(|g| DocRules::new(&g, doc));
        let rules = match granted {
            Some(rules) => Some(rules),
            None => match docs.rules(&doc)? {
                Some(rules) => Some(rules),
                None => changes.iter().find_map(|c| DocRules::from_genesis(doc, c)),
            },
        };
        let rules = rules.map(Arc::new);
        if let Some(rules) = &rules {
            self.rules.insert(doc, Arc::clone(rules));
        }
        Ok(rules)
    }

    /// The graph `doc` belongs to, if the connection's grant names it.
    fn granted_graph(&self, conn: ConnId, doc: &DocId) -> Option<GraphName> {
        match &self.conns.get(&conn)?.access.scope {
            DocScope::Only(docs) => docs.get(doc).cloned(),
            DocScope::Any => None,
        }
    }

    /// Creates the graph `doc` belongs to, from its deterministic genesis, if the connection's
    /// grant names it and the relay does not hold it yet: a team with only JavaScript agents can
    /// then `find` its documents. Returns whether the relay now holds `doc`.
    pub(super) fn create_granted_graph(&mut self, conn: ConnId, doc: DocId, docs: &mut impl SyncDocs) -> Result<bool> {
        let Some(graph) = self.granted_graph(conn, &doc) else { return Ok(false) };
        for (id, _) in GraphDocs::of(&graph).all() {
            if docs.exists(&id)? {
                continue;
            }
            let Some(rules) = DocRules::new(&graph, id) else { continue };
            let genesis = rules.genesis();
            let changes: Vec<Vec<u8>> = genesis.get_changes(&[]).iter().map(|c| c.raw_bytes().to_vec()).collect();
            let message = sync::Message {
                heads: genesis.get_heads(),
                need: Vec::new(),
                have: Vec::new(),
                changes: sync::ChunkList::from(changes),
                flags: None,
                version: sync::MessageVersion::V1,
            };
            docs.receive(&id, &mut sync::State::new(), message)?;
            self.rules.insert(id, Arc::new(rules));
            tracing::info!(%graph, doc = %id, "created a document of a granted graph from its genesis");
        }
        docs.exists(&doc)
    }
}

//! The schema check at the door: every change that arrives from outside (a relay, a peer, a
//! bundle) is held against the documented schema before anything stores it.
//!
//! A CRDT merges whatever it is given, so one protocol-valid change can make a shard unwritable
//! for everyone (a new map at `entities`), make replicas disagree for good (a record planted in
//! the wrong shard), or plant names no tool can delete. Automerge cannot refuse such a change
//! once it holds it, so the refusal happens before: [`DocRules::check`] looks at one change on
//! its own, with no document and no IO, and says which rule it breaks. Because the genesis of
//! every document is deterministic (`schema::genesis`), the objects a change may touch are known
//! in advance: a shard's three maps, created by genesis, and nothing else.
//!
//! The rules are written out in `docs/schema.md` ("What a change may do") so that another
//! implementation can apply the same check; the two must agree. Every change Cairn's own writer
//! makes passes (tested differentially over random operations in `tests/integrity.rs`).

mod ops;

pub use ops::MAX_RECORD_BYTES;

use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc, Value};

use crate::ids::DocId;
use crate::names::GraphName;
use crate::schema::{self, DocKind, GraphDocs, Layout, MapKind};

/// A rule of the schema, as refusals name it (`rule "key"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// A change under a document's genesis actor that is not that document's exact genesis, or
    /// a change with no dependencies that is not the genesis.
    Genesis,
    /// An operation on a root document after genesis, or on a shard's root map.
    Root,
    /// An operation on an object other than a shard's three maps, or one that creates an object.
    Object,
    /// A value put into a shard's maps that is not a string.
    Value,
    /// A key whose shape or names break the limits local writes obey.
    Key,
    /// A key whose entity lives in another shard.
    Shard,
    /// A record that is not the documented JSON.
    Record,
    /// A change whose message is missing or is not `{"agent": <agent name>}`.
    Message,
    /// More operations than the change's size allows (see `sync::chunks`).
    Ops,
    /// An actor id first used by another credential (checked by a relay).
    Actor,
    /// An agent name outside the credential's binding (checked by a relay).
    Agent,
}

impl Rule {
    /// The rule's id, as `docs/schema.md` and refusals name it.
    pub fn id(self) -> &'static str {
        match self {
            Rule::Genesis => "genesis",
            Rule::Root => "root",
            Rule::Object => "object",
            Rule::Value => "value",
            Rule::Key => "key",
            Rule::Shard => "shard",
            Rule::Record => "record",
            Rule::Message => "message",
            Rule::Ops => "ops",
            Rule::Actor => "actor",
            Rule::Agent => "agent",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// Why a change was refused: the change, the rule it broke, and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("change {change} refused: rule \"{rule}\": {detail} (docs/schema.md, \"What a change may do\")")]
pub struct Violation {
    /// The refused change.
    pub change: ChangeHash,
    /// The rule it broke.
    pub rule: Rule,
    /// What was wrong, for the sender.
    pub detail: String,
}

impl Violation {
    pub(crate) fn new(change: &Change, rule: Rule, detail: impl Into<String>) -> Self {
        Violation { change: change.hash(), rule, detail: detail.into() }
    }
}

/// The rules for one document of one graph: which document it is, its genesis, and (for a
/// shard) the object ids of its three maps.
#[derive(Debug, Clone)]
pub struct DocRules {
    graph: GraphName,
    doc: DocId,
    kind: DocKind,
    genesis: ChangeHash,
    genesis_actor: ActorId,
    /// A shard's number and its three maps, by the counters of the operations that made them
    /// in genesis (all under the genesis actor); `None` for the root.
    shard: Option<(u32, [(u64, MapKind); 3])>,
}

impl DocRules {
    /// The rules for `doc`, if it is one of `graph`'s documents.
    pub fn new(graph: &GraphName, doc: DocId) -> Option<DocRules> {
        let kind = GraphDocs::of(graph).kind_of(&doc)?;
        let genesis = schema::genesis(graph, doc, kind);
        // A genesis document holds exactly its genesis change, written under the genesis actor.
        let change = genesis.get_changes(&[]).first().map(|c| (c.hash(), c.actor_id().clone()))?;
        let shard = match kind {
            DocKind::Root => None,
            DocKind::Shard(n) => {
                let layout = Layout::of(&genesis).ok()?;
                // An object id prints as `counter@actor`.
                let counter = |id: &automerge::ObjId| id.to_string().split_once('@')?.0.parse::<u64>().ok();
                let maps = [
                    (counter(&layout.entities)?, MapKind::Entities),
                    (counter(&layout.observations)?, MapKind::Observations),
                    (counter(&layout.relations)?, MapKind::Relations),
                ];
                Some((n, maps))
            }
        };
        Some(DocRules { graph: graph.clone(), doc, kind, genesis: change.0, genesis_actor: change.1, shard })
    }

    /// The rules for `doc` from a change that claims to be its genesis: the graph is read from
    /// the change's `graph` field, and the change must then be exactly that graph's genesis of
    /// `doc`. A relay that does not know which graph a document belongs to (one run without
    /// access control) learns it this way, and only the real genesis teaches it.
    pub fn from_genesis(doc: DocId, change: &Change) -> Option<DocRules> {
        if !change.deps().is_empty() {
            return None;
        }
        let expanded = change.decode();
        let graph = expanded.operations.iter().find_map(|op| match (&op.key, &op.action) {
            (automerge::legacy::Key::Map(k), automerge::legacy::OpType::Put(automerge::ScalarValue::Str(s)))
                if k.as_str() == "graph" =>
            {
                s.parse::<GraphName>().ok()
            }
            _ => None,
        })?;
        DocRules::new(&graph, doc).filter(|rules| rules.genesis == change.hash())
    }

    /// The rules for a document already held, read from its `graph` field; `None` unless the
    /// document holds that graph's exact genesis of `doc`.
    pub fn of_document(doc: DocId, am: &Automerge) -> Option<DocRules> {
        let graph = match am.get(automerge::ROOT, "graph").ok()?? {
            (Value::Scalar(s), _) => s.as_str().and_then(|s| s.parse::<GraphName>().ok())?,
            _ => return None,
        };
        DocRules::new(&graph, doc).filter(|rules| am.get_change_by_hash(&rules.genesis).is_some())
    }

    /// The graph the document belongs to.
    pub fn graph(&self) -> &GraphName {
        &self.graph
    }

    /// The document.
    pub fn doc(&self) -> DocId {
        self.doc
    }

    /// Which of its graph's documents it is.
    pub fn kind(&self) -> DocKind {
        self.kind
    }

    /// The hash of the document's genesis change.
    pub fn genesis_hash(&self) -> ChangeHash {
        self.genesis
    }

    /// The document as its genesis makes it (what a relay stores when it creates a graph).
    pub fn genesis(&self) -> Automerge {
        schema::genesis(&self.graph, self.doc, self.kind)
    }

    /// Checks one change against the schema: `Ok` if every operation in it is one the schema
    /// allows at that place. Looks at the change alone, so it works before the change's
    /// dependencies have arrived.
    pub fn check(&self, change: &Change) -> Result<(), Violation> {
        if change.hash() == self.genesis {
            return Ok(());
        }
        if change.actor_id() == &self.genesis_actor {
            return Err(Violation::new(
                change,
                Rule::Genesis,
                "written under the document's genesis actor, but it is not the document's genesis",
            ));
        }
        if change.deps().is_empty() {
            return Err(Violation::new(
                change,
                Rule::Genesis,
                "a change with no dependencies that is not the document's genesis (every change builds on genesis)",
            ));
        }
        ops::check_message(change)?;
        match &self.shard {
            Some((shard, _)) => ops::check_ops(change, self, *shard),
            None if change.is_empty() => Ok(()),
            None => Err(Violation::new(change, Rule::Root, "the root document never changes after genesis")),
        }
    }

    /// Checks every change in `changes`, stopping at the first refusal.
    pub fn check_all<'a>(&self, changes: impl IntoIterator<Item = &'a Change>) -> Result<(), Violation> {
        changes.into_iter().try_for_each(|c| self.check(c))
    }
}

impl DocRules {
    /// Which of a shard's maps an operation's object is, if any.
    fn map_of(&self, obj: &automerge::legacy::ObjectId) -> Option<MapKind> {
        let (_, maps) = self.shard.as_ref()?;
        match obj {
            automerge::legacy::ObjectId::Id(id) if id.1 == self.genesis_actor => {
                maps.iter().find(|(counter, _)| *counter == id.0).map(|(_, kind)| *kind)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;

/// A change [`sift`] took out of a document.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The change.
    pub change: Change,
    /// The rule it broke; `None` when it keeps the schema but builds on a refused change.
    pub rule: Option<Rule>,
    /// What was wrong.
    pub detail: String,
}

/// A document with what the schema check refuses taken out.
#[derive(Debug)]
pub struct Sifted {
    /// The document rebuilt from the changes that pass, in their order.
    pub doc: Automerge,
    /// What was taken out, in the document's order.
    pub refused: Vec<Refused>,
}

/// Holds every change a stored document already has against the schema: `None` if all pass
/// (the common case), or else the document without the changes that break it and without the
/// changes that build on those (Automerge cannot hold a change without its dependencies).
/// Stores written before the check existed are sifted once, so what an older version accepted
/// is quarantined rather than a reason to stop working. The graph is learnt from the
/// document's own genesis; a document without a Cairn genesis keeps nothing.
pub fn sift(doc: DocId, am: &Automerge) -> Option<Sifted> {
    let changes = am.get_changes(&[]);
    let rules = changes.iter().filter(|c| c.deps().is_empty()).find_map(|c| DocRules::from_genesis(doc, c));
    let mut bad = std::collections::HashSet::new();
    let mut refused = Vec::new();
    let mut kept = Vec::new();
    for change in changes {
        let verdict = match (&rules, change.deps().iter().find(|d| bad.contains(*d))) {
            (_, Some(dep)) => Err((None, format!("builds on the refused change {dep}"))),
            (None, None) => Err((Some(Rule::Genesis), format!("document {doc} has no Cairn genesis"))),
            (Some(rules), None) => rules.check(&change).map_err(|v| (Some(v.rule), v.detail)),
        };
        match verdict {
            Ok(()) => kept.push(change),
            Err((rule, detail)) => {
                bad.insert(change.hash());
                refused.push(Refused { change, rule, detail });
            }
        }
    }
    if refused.is_empty() {
        return None;
    }
    let mut rebuilt = Automerge::new();
    // The kept changes are a causally closed subset of a document that held them all, in its
    // order, so they apply; should Automerge still refuse one, keep nothing rather than panic.
    if rebuilt.apply_changes(kept).is_err() {
        rebuilt = Automerge::new();
    }
    Some(Sifted { doc: rebuilt, refused })
}

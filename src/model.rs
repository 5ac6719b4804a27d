//! The knowledge graph as an application sees it: entities, observations, relations, the write
//! operations on them, and what reads and writes return.

use serde::{Deserialize, Serialize};

use crate::freshness::{Freshness, Unseen};
use crate::ids::Version;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// When a fact was true in the world. Both ends are optional; an open end is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    /// When the fact became true, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<Millis>,
    /// When the fact stopped being true, if it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<Millis>,
}

impl Validity {
    /// True if the fact holds at world time `t`.
    pub fn holds_at(&self, t: Millis) -> bool {
        self.valid_from.is_none_or(|f| f <= t) && self.valid_to.is_none_or(|e| t < e)
    }
}

/// A text recorded about an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The text. Observations of an entity are a set: the same text twice is one observation.
    pub text: String,
    /// The agent that recorded it.
    pub by: String,
    /// When it was recorded.
    pub at: Millis,
    /// When it was true in the world.
    #[serde(flatten)]
    pub validity: Validity,
    /// The observation of the same entity this one replaced (a supersede), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// Another value an entity's type was set to concurrently; it lost to the reported type and
/// stays reported until someone writes the type again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeConflict {
    /// The losing type.
    pub entity_type: String,
    /// Who wrote it.
    pub by: String,
}

/// A node of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    /// Unique name (exact match).
    pub name: String,
    /// The entity's type. Empty only for an entity that was deleted while another agent
    /// concurrently added an observation or relation to it: the addition survives, the type does not.
    pub entity_type: String,
    /// Observations, oldest first.
    pub observations: Vec<Observation>,
    /// Who created it (empty if unknown).
    pub created_by: String,
    /// When it was created.
    pub created_at: Millis,
    /// Unresolved concurrent type writes, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<TypeConflict>,
}

/// A directed edge `(from, relation_type, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Relation {
    /// Source entity.
    pub from: String,
    /// Relation type, in active voice ("works_at").
    pub relation_type: String,
    /// Target entity.
    pub to: String,
}

impl Relation {
    /// The relation `(from, relation_type, to)`.
    pub fn new(from: impl Into<String>, relation_type: impl Into<String>, to: impl Into<String>) -> Relation {
        Relation { from: from.into(), relation_type: relation_type.into(), to: to.into() }
    }
}

/// A relation with who wrote it and when it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationFact {
    /// The relation.
    #[serde(flatten)]
    pub relation: Relation,
    /// The agent that recorded it.
    pub by: String,
    /// When it was recorded.
    pub at: Millis,
    /// When it was true in the world.
    #[serde(flatten)]
    pub validity: Validity,
    /// The relation this one replaced (a supersede), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Relation>,
}

/// A graph or part of one: entities ordered by name, relations ordered by (from, type, to).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graph {
    /// The entities.
    pub entities: Vec<Entity>,
    /// The relations.
    pub relations: Vec<RelationFact>,
    /// How many facts of these entities and relations the read left out because they did not
    /// hold at its world time (all zero when it asked for every fact).
    #[serde(default, skip_serializing_if = "LeftOut::is_empty")]
    pub left_out: LeftOut,
    /// Facts replaced by more than one fact that holds at the read's world time: concurrent
    /// supersedes nobody has resolved yet (supersede all but one of the replacements to resolve).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<SupersedeConflict>,
}

/// What a current (or as-of) read left out, by why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    /// Facts another fact replaced (a supersede), ended before the read's world time.
    pub superseded: u64,
    /// Facts whose validity ended before the read's world time and that nothing replaced.
    pub expired: u64,
    /// Facts whose validity starts after the read's world time.
    pub not_yet_valid: u64,
}

impl LeftOut {
    /// True when nothing was left out.
    pub fn is_empty(&self) -> bool {
        self.superseded == 0 && self.expired == 0 && self.not_yet_valid == 0
    }

    /// How many facts were left out in all.
    pub fn total(&self) -> u64 {
        self.superseded + self.expired + self.not_yet_valid
    }
}

/// A fact, named: an observation of an entity or a relation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum FactRef {
    /// The observation `text` of `entity`.
    Observation {
        /// The entity.
        entity: String,
        /// The text.
        text: String,
    },
    /// A relation.
    Relation {
        /// The relation.
        #[serde(flatten)]
        relation: Relation,
    },
}

/// One fact that replaced another, as a conflict reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    /// The replacing fact.
    pub fact: FactRef,
    /// Who recorded it.
    pub by: String,
    /// When it was recorded.
    pub at: Millis,
    /// When it holds in the world.
    #[serde(flatten)]
    pub validity: Validity,
}

/// A fact with several replacements that hold at once: two agents superseded it concurrently
/// (or one superseded it again without seeing the first). Both are kept and reported here on
/// every replica until someone supersedes all but one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupersedeConflict {
    /// The fact superseded more than once.
    pub replaced: FactRef,
    /// Its replacements that hold at the read's world time, oldest record first.
    pub replacements: Vec<Replacement>,
}

/// Which facts a read returns, on which clock: world time (`as_of`: what was true then) and
/// version (`at_version`: what this replica knew then). The default is the current view: facts
/// that hold now, as the replica knows them now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// The world time the facts must hold at (default: now).
    pub as_of: Option<Millis>,
    /// Read the graph as this replica held it at this version (a version an earlier read of
    /// this file returned), through Automerge's historical reads (default: as it is now).
    pub at_version: Option<Version>,
    /// Return every fact whatever its validity: superseded, expired and not yet valid ones too.
    pub include_superseded: bool,
}

/// One write operation. A batch of them is applied atomically, in order, each seeing the
/// effects of the ones before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Create an entity with initial observations. An entity that already exists is left as it
    /// is (reported as [`Outcome::AlreadyExists`]), as the reference memory server does.
    CreateEntity {
        /// Unique name.
        name: String,
        /// Its type.
        entity_type: String,
        /// Initial observations.
        #[serde(default)]
        observations: Vec<String>,
    },
    /// Set an existing entity's type; this also resolves a type conflict.
    SetEntityType {
        /// The entity.
        name: String,
        /// The new type.
        entity_type: String,
    },
    /// Add an observation to an existing entity (a no-op if the text is already there).
    AddObservation {
        /// The entity.
        entity: String,
        /// The text.
        text: String,
        /// When it is true in the world.
        #[serde(default)]
        validity: Validity,
    },
    /// Add a relation between two existing entities (a no-op if it is already there).
    CreateRelation {
        /// The relation.
        #[serde(flatten)]
        relation: Relation,
        /// When it is true in the world.
        #[serde(default)]
        validity: Validity,
    },
    /// Delete an entity, its observations and every relation from or to it.
    DeleteEntity {
        /// The entity.
        name: String,
    },
    /// Delete one observation.
    DeleteObservation {
        /// The entity.
        entity: String,
        /// The text.
        text: String,
    },
    /// Delete one relation.
    DeleteRelation {
        /// The relation.
        #[serde(flatten)]
        relation: Relation,
    },
    /// Replace an observation: `old` stops holding at `at` (its `valid_to`, never moved later),
    /// and `new` holds from `at`, recording the link to `old`. Only `old` is retired. When `at`
    /// is before `old`'s own `valid_from`, the new fact arrived late: it is stored as history
    /// (valid from `at` until `old` began) and `old` stays as it is. A `new` already present is
    /// left as it is (superseding one of two conflicting replacements by the other resolves the
    /// conflict).
    SupersedeObservation {
        /// The entity.
        entity: String,
        /// The observation that stops being true.
        old: String,
        /// The observation that replaces it.
        new: String,
        /// World time of the change (default: the time of the write).
        #[serde(default)]
        at: Option<Millis>,
    },
    /// Replace a relation by another (any triple between existing entities), as
    /// [`Op::SupersedeObservation`] does for observations.
    SupersedeRelation {
        /// The relation that stops being true.
        old: Relation,
        /// The relation that replaces it.
        new: Relation,
        /// World time of the change (default: the time of the write).
        #[serde(default)]
        at: Option<Millis>,
    },
}

/// Constructors for each operation, with validity left open (unbounded) where an operation has
/// one; write the variant itself to give a validity.
impl Op {
    /// [`Op::CreateEntity`]: an entity `name` of type `entity_type` with these observations.
    pub fn create_entity(name: impl Into<String>, entity_type: impl Into<String>, observations: &[&str]) -> Op {
        Op::CreateEntity {
            name: name.into(),
            entity_type: entity_type.into(),
            observations: observations.iter().map(|&text| text.to_owned()).collect(),
        }
    }

    /// [`Op::SetEntityType`]: set the type of entity `name` to `entity_type`.
    pub fn set_entity_type(name: impl Into<String>, entity_type: impl Into<String>) -> Op {
        Op::SetEntityType { name: name.into(), entity_type: entity_type.into() }
    }

    /// [`Op::AddObservation`]: add `text` to `entity`, valid at all times.
    pub fn add_observation(entity: impl Into<String>, text: impl Into<String>) -> Op {
        Op::AddObservation { entity: entity.into(), text: text.into(), validity: Validity::default() }
    }

    /// [`Op::CreateRelation`]: add `(from, relation_type, to)`, valid at all times.
    pub fn create_relation(from: impl Into<String>, relation_type: impl Into<String>, to: impl Into<String>) -> Op {
        Op::CreateRelation { relation: Relation::new(from, relation_type, to), validity: Validity::default() }
    }

    /// [`Op::DeleteEntity`]: delete entity `name`, its observations and its relations.
    pub fn delete_entity(name: impl Into<String>) -> Op {
        Op::DeleteEntity { name: name.into() }
    }

    /// [`Op::DeleteObservation`]: delete observation `text` of `entity`.
    pub fn delete_observation(entity: impl Into<String>, text: impl Into<String>) -> Op {
        Op::DeleteObservation { entity: entity.into(), text: text.into() }
    }

    /// [`Op::DeleteRelation`]: delete `(from, relation_type, to)`.
    pub fn delete_relation(from: impl Into<String>, relation_type: impl Into<String>, to: impl Into<String>) -> Op {
        Op::DeleteRelation { relation: Relation::new(from, relation_type, to) }
    }

    /// [`Op::SupersedeObservation`]: observation `old` of `entity` ends at `at` (`None`: the
    /// time of the write), `new` holds from then.
    pub fn supersede_observation(
        entity: impl Into<String>,
        old: impl Into<String>,
        new: impl Into<String>,
        at: Option<Millis>,
    ) -> Op {
        Op::SupersedeObservation { entity: entity.into(), old: old.into(), new: new.into(), at }
    }

    /// [`Op::SupersedeRelation`]: `old` ends at `at` (`None`: the time of the write), `new`
    /// holds from then.
    pub fn supersede_relation(old: Relation, new: Relation, at: Option<Millis>) -> Op {
        Op::SupersedeRelation { old, new, at }
    }
}

/// What one operation of a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It changed the graph.
    Applied,
    /// The entity, observation or relation was already there; nothing was written for it.
    AlreadyExists,
    /// The thing to delete was not there; nothing was written for it.
    NotFound,
}

/// What a successful write returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The version right after this write (pass it as `expect` to a later conditional write).
    pub version: Version,
    /// One outcome per operation, in order.
    pub outcomes: Vec<Outcome>,
}

/// What a read returns: its data, the causal version it saw, and how fresh that view is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Read<T> {
    /// The data read.
    pub data: T,
    /// The causal version the read saw.
    pub version: Version,
    /// How fresh this replica's view is.
    pub freshness: Freshness,
    /// Changes by other agents this agent had not seen before this read.
    pub unseen: Unseen,
    /// Why the replica is read-only, if it is. Then this read did not move the agent's read
    /// cursor: the changes `unseen` lists stay unseen, and the next read lists them again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<crate::store::ReadOnlyCause>,
}

/// An entity-level change, as recorded in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityChange {
    /// Position in this replica's change log (compare with [`Version::seq`]).
    pub seq: crate::ids::LogPosition,
    /// The entity the change touched.
    pub entity: String,
    /// What happened.
    #[serde(flatten)]
    pub what: What,
    /// The agent that wrote it.
    pub agent: String,
    /// When it was written (the change's timestamp).
    pub at: Millis,
}

/// What an [`EntityChange`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum What {
    /// An entity record was written: created, re-created or re-typed.
    EntitySet {
        /// The type written.
        entity_type: String,
    },
    /// The entity record was deleted.
    EntityDeleted,
    /// An observation was recorded, or its validity changed.
    ObservationSet {
        /// The text.
        text: String,
        /// Its validity as written.
        #[serde(flatten)]
        validity: Validity,
        /// The observation it replaced, when this was a supersede.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces: Option<String>,
    },
    /// An observation was deleted.
    ObservationDeleted {
        /// The text.
        text: String,
    },
    /// A relation was recorded, or its validity changed.
    RelationSet {
        /// The relation.
        #[serde(flatten)]
        relation: Relation,
        /// Its validity as written.
        #[serde(flatten)]
        validity: Validity,
        /// The relation it replaced, when this was a supersede.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces: Option<Relation>,
    },
    /// A relation was deleted.
    RelationDeleted {
        /// The relation.
        #[serde(flatten)]
        relation: Relation,
    },
}

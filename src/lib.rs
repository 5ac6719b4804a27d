//! # Cairn: shared memory for AI agents
//!
//! Every agent holds a local replica of a knowledge graph — entities, observations, relations —
//! as Automerge documents, durable in one SQLite file. Replicas merge without conflict, through a
//! relay or through a file, and every read says how fresh it is.
//!
//! ## A replica
//!
//! ```
//! use cairn::{Op, Replica};
//!
//! # fn main() -> Result<(), cairn::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! let memory = Replica::open(dir.path().join("memory.db"), "planner@laptop")?;
//! memory.write(&[
//!     Op::create_entity("Alice", "person", &["likes tea"]),
//!     Op::create_entity("ACME", "company", &[]),
//!     Op::create_relation("Alice", "works_at", "ACME"),
//! ])?;
//!
//! let found = memory.search("tea")?;
//! assert_eq!(found.data.entities[0].name, "Alice");
//! println!("read at {} ({:?})", found.version, found.freshness);
//! # Ok(())
//! # }
//! ```
//!
//! `Replica` is synchronous and `Send + Sync`; it starts no runtime and spawns nothing. Each
//! write is one Automerge change per touched shard, committed with its index updates in one
//! SQLite transaction before the call returns. Several processes may open the same file.
//!
//! ## Merge semantics
//!
//! * Two replicas that create the same entity concurrently end with one entity holding the
//!   union of both sides' observations and relations.
//! * Deletes are observed-remove: they remove what the deleter had seen; an observation or
//!   relation added concurrently survives.
//! * Concurrent writes of an entity's type settle on the same winner everywhere, and reads
//!   report the losing values in [`Entity::conflicts`] until someone writes the type again.
//! * Nothing is forgotten: [`Replica::history`] reads back every change, deletes included.
//!
//! ## Merging without a relay
//!
//! ```
//! # use cairn::{Op, Replica};
//! # fn main() -> Result<(), cairn::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! let a = Replica::open(dir.path().join("a.db"), "alice")?;
//! let b = Replica::open(dir.path().join("b.db"), "bob")?;
//! a.write(&[Op::create_entity("Tea", "drink", &[])])?;
//! let bundle = a.export_since(&b.heads()?)?; // every change b lacks
//! b.import(&bundle)?;
//! assert_eq!(b.read_graph()?.data.entities.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! The document schema is in `docs/schema.md`, the sync protocol in `docs/protocol.md`, and the
//! freshness guarantees in `docs/freshness.md`.

mod decode;
mod error;
mod exchange;
mod freshness;
mod ids;
pub mod integrity;
mod link;
mod model;
mod names;
mod past;
mod plan;
mod replica;
pub mod schema;
mod store;
pub mod sync;
mod temporal;

pub use error::{Error, FileFault, Result};
pub use exchange::Heads;
pub use freshness::{Freshness, PeerFreshness, Unseen};
pub use ids::{DocId, LogPosition, ParseIdError, PeerId, ReplicaId, StorageId, Version};
pub use model::{
    Entity, EntityChange, FactRef, Graph, LeftOut, Millis, Observation, Op, Outcome, Read, ReadOptions, Receipt,
    Relation, RelationFact, Replacement, SupersedeConflict, TypeConflict, Validity, What,
};
pub use names::{
    AgentName, GraphName, InvalidInput, MAX_AGENT_BYTES, MAX_GRAPH_NAME, MAX_NAME_BYTES, MAX_TEXT_BYTES,
    MAX_WRITE_BYTES,
};
pub use plan::{validate, write_bytes};
pub use replica::{DEFAULT_SEARCH_LIMIT, ImportReport, OpenOptions, Replica, Status, Subscription, now_millis};
pub use schema::{DocKind, GraphDocs};
pub use store::{
    Access, Area, BackupReport, CheckReport, Durability, Finding, QuarantinedChange, ReadOnlyCause, RepairReport,
    SetAside, WarmUp,
};

/// Re-exported so sync drivers and tests use the same Automerge as the core.
pub use automerge;

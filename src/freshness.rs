//! Freshness: how current a read's view is, and what other agents changed since this agent last
//! looked. See `docs/freshness.md` for the guarantees in plain words.

use serde::{Deserialize, Serialize};

use crate::model::Millis;

/// How fresh a replica's view is, as of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Freshness {
    /// No relay or peer is configured: this replica is the whole world it knows.
    Local,
    /// Caught up with the relay as of `as_of`: every change the relay had announced was here.
    Synced {
        /// When this replica last confirmed it held everything the relay announced.
        as_of: Millis,
    },
    /// The relay or a peer announced changes this replica does not have yet.
    Behind {
        /// When the first missing change was announced.
        since: Millis,
    },
    /// The relay is unreachable.
    Offline {
        /// When the connection was lost (or first failed).
        since: Millis,
        /// When this replica was last in sync, if ever.
        last_sync: Option<Millis>,
    },
}

/// Changes by *other* agents that reached this replica since this agent's previous read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unseen {
    /// How many entity-level changes.
    pub count: usize,
    /// Which agents made them, sorted.
    pub agents: Vec<String>,
    /// Which entities they touched, sorted; at most [`Unseen::MAX_LISTED`].
    pub entities: Vec<String>,
    /// How many more entities were touched than are listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_entities: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Unseen {
    /// The most entities an [`Unseen`] lists by name.
    pub const MAX_LISTED: usize = 100;

    /// True if nothing new arrived.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// One relay or peer this replica syncs with, and how fresh the replica is with respect to it
/// alone. A read's [`Freshness`] combines them (docs/freshness.md, "Several peers").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerFreshness {
    /// The relay's or peer's URL, without its query (a `?token=` never shows).
    pub peer: String,
    /// In step with it, behind it, or unable to reach it.
    #[serde(flatten)]
    pub freshness: Freshness,
}

//! The relay's storage, behind the traits the relay calls: [`SyncDocs`](cairn::sync::SyncDocs)
//! for documents (the hub) and [`TokenStore`] for access tokens (the handshake and the revocation
//! watcher), and [`ActorBook`](crate::hub::ActorBook) for actor bindings. SQLite ([`RelayStore`],
//! `sqlite.rs`) keeps one relay's; PostgreSQL ([`PgStore`], [`PgTokens`], `postgres/`) keeps
//! what several relay nodes share.
//!
//! **Architecture invariant: a change is durable before `SyncDocs::receive` returns**, so the hub
//! never forwards or acknowledges what a crash could lose.

mod lock;
mod migrate;
mod postgres;
mod sqlite;

use cairn::Millis;

pub use lock::DataDirInUse;
pub(crate) use lock::LockError;
pub(crate) use postgres::Link as PgLink;
pub use postgres::{Committed, PgStore, PgTokens, SchemaError as PgSchemaError, Versions};
pub use sqlite::{RelayStore, SqliteTokens};

/// A token as its store keeps it: the secret only as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token's id (the public part of `cairn_<id>_<secret>`).
    pub id: String,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// The graphs it grants, as a JSON list (`["*"]` for every graph).
    pub graphs: String,
    /// `read` or `write`.
    pub role: String,
    /// A note for humans.
    pub label: Option<String>,
    /// When it was made.
    pub created_at: Millis,
    /// When it expires, if it does.
    pub expires_at: Option<Millis>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Millis>,
    /// The agent names it may write as, as a JSON list of patterns; `None`: any.
    pub agents: Option<String>,
}

/// Where a relay keeps its tokens. Only storage: what a token means (parsing, hashing,
/// expiry) is [`crate::Tokens`]' business, the same over every store.
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// Adds a token.
    fn insert(&self, token: &TokenRecord) -> Result<(), StorageError>;
    /// The token with this id, if any.
    fn get(&self, id: &str) -> Result<Option<TokenRecord>, StorageError>;
    /// Every token, newest first.
    fn list(&self) -> Result<Vec<TokenRecord>, StorageError>;
    /// Marks a token revoked at `now` (keeping an earlier revocation); false if there is none.
    fn revoke(&self, id: &str, now: Millis) -> Result<bool, StorageError>;
}

/// A failure of the relay's storage engine.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(#[from] Box<dyn std::error::Error + Send + Sync>);

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError(Box::new(e))
    }
}

//! The errors the library returns at its boundary. Every message says what happened and, where
//! there is one, what to do about it.

use std::path::PathBuf;

use crate::ids::{LogPosition, ParseIdError, Version};
use crate::model::EntityChange;
use crate::names::InvalidInput;

/// The library's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name, text or other input was refused; nothing was written.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// An identifier could not be parsed.
    #[error(transparent)]
    Parse(#[from] ParseIdError),
    /// An operation named an entity that does not exist; nothing was written.
    #[error("entity {0:?} not found; create it first (names are exact and case-sensitive)")]
    EntityNotFound(String),
    /// A supersede named a fact that another fact already replaces; nothing was written.
    /// Supersede the replacement instead (or, for a conflict, all but one of them).
    #[error("{fact} was already superseded by {by}; supersede that instead")]
    AlreadySuperseded {
        /// The fact named as old, as text.
        fact: String,
        /// What replaces it already, as text.
        by: String,
    },
    /// The file is not a SQLite database at all.
    #[error("{} is not a Cairn database (not even SQLite); point --db at a Cairn file or a new path", path.display())]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },
    /// The file is a SQLite database that some other program owns.
    #[error("{} is a SQLite database of another application, not a Cairn replica; use a new path", path.display())]
    NotCairn {
        /// The file.
        path: PathBuf,
    },
    /// The database was written by a newer Cairn.
    #[error("{} has schema version {found}, newer than this build reads ({supported}); upgrade Cairn", path.display())]
    SchemaTooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build reads.
        supported: i64,
    },
    /// The replica is read-only (asked for, or the file cannot be written), so `action` was
    /// refused; nothing was written.
    #[error(
        "{}: cannot {action}: read-only because {cause}; nothing was written. To write, open it without --read-only as a user who may write the file and its directory, or work on a copy in a writable place",
        path.display()
    )]
    ReadOnly {
        /// The file.
        path: PathBuf,
        /// Why it is read-only.
        cause: crate::store::ReadOnlyCause,
        /// What was refused ("write to it", "migrate its schema ...").
        action: String,
    },
    /// Bytes offered as Automerge changes (an import, a sync message) do not decode.
    #[error("corrupt change data: {0}; nothing was imported")]
    CorruptChange(String),
    /// A change from outside breaks the schema (`docs/schema.md`, "What a change may do");
    /// nothing it came with was stored.
    #[error("{0}; nothing it came with was stored")]
    Refused(#[from] crate::integrity::Violation),
    /// Stored data failed to load: the database is damaged.
    #[error("stored document {doc} is damaged: {reason}; restore the file from a backup or re-sync it from a relay")]
    CorruptStore {
        /// The document id.
        doc: String,
        /// What failed.
        reason: String,
    },
    /// A conditional write found changes after its expected version; nothing was written.
    #[error("conflict: {} change(s) touched {entities:?} after {expected}; read again and retry", changes.len())]
    Conflict {
        /// The version the write expected.
        expected: Version,
        /// The entities the write depended on.
        entities: Vec<String>,
        /// The changes to those entities after `expected`.
        changes: Vec<EntityChange>,
    },
    /// A version token from another replica database.
    #[error(
        "version {0} was issued by another replica; versions are only meaningful to the replica that returned them"
    )]
    ForeignVersion(Version),
    /// A version token ahead of anything this replica has logged.
    #[error("version {0} is ahead of this replica (latest is seq {1}); pass a version a read returned")]
    UnknownVersion(Version, LogPosition),
    /// A storage failure (disk full, permissions, a lock held too long), from SQLite or from
    /// whatever engine a relay stores in. Opaque, so that no engine's types are part of this API.
    #[error("storage error: {0}")]
    Storage(Box<dyn std::error::Error + Send + Sync>),
    /// The replica file cannot be used as it is (damaged, full, locked, read-only, not
    /// permitted): which file, what happened and what to do, in one line.
    #[error("{}: {fault}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What happened.
        fault: FileFault,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// An internal Automerge failure. This is a bug; please report it. (Automerge's types are
    /// part of this crate's API anyway: it re-exports `automerge`.)
    #[error("internal document error (please report this): {0}")]
    Document(#[from] automerge::AutomergeError),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Storage(Box::new(e))
    }
}

/// What went wrong with a replica file, each with the next step (`docs/operations.md`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileFault {
    /// SQLite or the change log found damage.
    #[error(
        "the file is damaged ({detail}); see what with `cairn check`, then run `cairn repair` or restore a copy made by `cairn backup`"
    )]
    Damaged {
        /// What SQLite or the log said.
        detail: String,
    },
    /// The disk reported an I/O failure.
    #[error("the disk failed to read or write it ({detail}); check the disk, then run `cairn check`")]
    Disk {
        /// What SQLite said.
        detail: String,
    },
    /// No space left.
    #[error("the disk holding it is full, nothing was written; free some space and try again")]
    Full,
    /// Another process held the file's lock longer than the wait allows.
    #[error(
        "another process kept it locked too long (a long import, or a `cairn repair` under way); try again when it is done"
    )]
    Busy,
    /// The file, its directory or its mount is read-only.
    #[error("it cannot be written (a read-only file, directory or mount); check its permissions")]
    ReadOnly,
    /// The file or its directory cannot be opened.
    #[error(
        "it cannot be opened (permission denied, or its directory is missing); check the file's and its directory's permissions"
    )]
    Denied,
    /// `repair` needs the file to itself.
    #[error(
        "another process has it open (`cairn mcp`, `cairn sync --watch`, an agent); stop every process using it, then run `cairn repair` again"
    )]
    InUse,
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

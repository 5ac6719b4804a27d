//! Storage failures said in the replica's words: which file, what happened, what to do.
//!
//! SQLite's own message names neither the file nor a next step, and its error chain repeats
//! itself; [`in_file`] turns the failures an operator can act on into [`Error::File`].

use std::path::Path;

use rusqlite::ErrorCode;

use crate::error::{Error, FileFault};

/// `e`, raised while using the file at `path`, as an [`Error::File`] when it is one an operator
/// can act on; anything else unchanged.
pub(crate) fn in_file(e: Error, path: &Path) -> Error {
    let fault = match &e {
        Error::CorruptStore { doc, reason } => {
            FileFault::Damaged { detail: format!("stored document {doc}: {reason}") }
        }
        Error::Storage(inner) => match inner.downcast_ref::<rusqlite::Error>().and_then(sqlite_fault) {
            Some(fault) => fault,
            None => return e,
        },
        _ => return e,
    };
    Error::File { path: path.to_owned(), fault }
}

fn sqlite_fault(e: &rusqlite::Error) -> Option<FileFault> {
    let rusqlite::Error::SqliteFailure(failure, message) = e else { return None };
    let detail = || message.clone().unwrap_or_else(|| failure.to_string());
    Some(match failure.code {
        ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => FileFault::Damaged { detail: detail() },
        ErrorCode::SystemIoFailure => FileFault::Disk { detail: detail() },
        ErrorCode::DiskFull => FileFault::Full,
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => FileFault::Busy,
        ErrorCode::ReadOnly => FileFault::ReadOnly,
        ErrorCode::CannotOpen | ErrorCode::PermissionDenied => FileFault::Denied,
        _ => return None,
    })
}

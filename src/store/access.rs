//! Read-only opening: whether this process may write a replica file, and how SQLite reads one it
//! may not (`docs/operations.md`, "Reading a memory you may not write").
//!
//! SQLite keeps a WAL database's recent commits in `<file>-wal` and its shared index in
//! `<file>-shm`, both beside the file. A read-only connection can share the file with writers
//! only through those two files: it reads them if they exist and creates them if it may
//! (<https://www.sqlite.org/wal.html>, "Read-Only Databases"). Where neither holds (a read-only
//! directory or mount after a clean shutdown, which removes both), the file is opened
//! `immutable`: read as a snapshot, with no `-shm` and no locks. That is safe only when no `-wal`
//! holds commits the main file lacks, so with a non-empty `-wal` and no way to read it, the open
//! is refused rather than served without those commits.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Whether a replica is opened for writing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Access {
    /// Read-write if this process can write the file and its directory; otherwise read-only,
    /// with the reason in every read ([`crate::Read::read_only`]). The default.
    #[default]
    Auto,
    /// Read-only, whatever the permissions: nothing is written, the agent's read cursor does not
    /// move, and every write is refused with [`Error::ReadOnly`].
    ReadOnly,
    /// Read-write, or fail to open with [`Error::ReadOnly`] saying why the file cannot be written.
    ReadWrite,
}

/// Why a replica is read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadOnlyCause {
    /// It was asked for ([`Access::ReadOnly`], `cairn --read-only`, `CAIRN_READ_ONLY`).
    Requested,
    /// This user may not write the file.
    FileNotWritable,
    /// This user may not write the file's directory, where SQLite keeps `-wal` and `-shm` files.
    DirectoryNotWritable,
    /// The file is on a read-only file system (a read-only mount, a CD, a snapshot).
    ReadOnlyFileSystem,
}

impl std::fmt::Display for ReadOnlyCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReadOnlyCause::Requested => "it was asked for (--read-only, CAIRN_READ_ONLY)",
            ReadOnlyCause::FileNotWritable => "this user may not write the file",
            ReadOnlyCause::DirectoryNotWritable => {
                "this user may not write its directory, where SQLite keeps the -wal and -shm files"
            }
            ReadOnlyCause::ReadOnlyFileSystem => "it is on a read-only file system",
        })
    }
}

/// The access `access` asks for on `path`: `None` for read-write, or why it is read-only.
pub(super) fn resolve(path: &Path, access: Access) -> Result<Option<ReadOnlyCause>> {
    match access {
        Access::ReadOnly => Ok(Some(ReadOnlyCause::Requested)),
        Access::Auto => Ok(unwritable(path)),
        Access::ReadWrite => match unwritable(path) {
            None => Ok(None),
            Some(cause) => Err(refused(path, cause, "open it for writing")),
        },
    }
}

/// The error for `action` refused on a read-only `path`.
pub(super) fn refused(path: &Path, cause: ReadOnlyCause, action: impl Into<String>) -> Error {
    Error::ReadOnly { path: path.to_owned(), cause, action: action.into() }
}

/// Why this process cannot write `path` (or create it, if it does not exist), if it cannot.
/// Asks the kernel (`access(2)`), so it honours ownership, groups, ACLs and read-only mounts, and
/// creates nothing.
fn unwritable(path: &Path) -> Option<ReadOnlyCause> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.to_owned(),
        None => PathBuf::from("."),
    };
    if path.exists() {
        if let Some(cause) = may_not_write(path, ReadOnlyCause::FileNotWritable) {
            return Some(cause);
        }
        return may_not_write(&dir, ReadOnlyCause::DirectoryNotWritable);
    }
    // A new file, perhaps in directories still to be made: the nearest one that exists decides.
    let existing = dir.ancestors().find(|d| d.as_os_str().is_empty() || d.exists())?;
    let existing = if existing.as_os_str().is_empty() { Path::new(".") } else { existing };
    may_not_write(existing, ReadOnlyCause::DirectoryNotWritable)
}

#[cfg(unix)]
fn may_not_write(path: &Path, denied: ReadOnlyCause) -> Option<ReadOnlyCause> {
    use rustix::fs::{Access as Mode, access};
    use rustix::io::Errno;
    match access(path, Mode::WRITE_OK) {
        Ok(()) => None,
        Err(Errno::ROFS) => Some(ReadOnlyCause::ReadOnlyFileSystem),
        Err(Errno::ACCESS | Errno::PERM) => Some(denied),
        // Anything else (a vanished file, say) is for the open itself to report.
        Err(_) => None,
    }
}

#[cfg(not(unix))]
fn may_not_write(path: &Path, denied: ReadOnlyCause) -> Option<ReadOnlyCause> {
    std::fs::metadata(path).ok().filter(|m| m.permissions().readonly()).map(|_| denied)
}

/// Opens an existing replica file for reading only. Creates nothing where it may not: SQLite
/// makes `-wal` and `-shm` files only in a directory it may write.
pub(super) fn open_read_only(path: &Path, cause: ReadOnlyCause) -> Result<Connection> {
    if !path.exists() {
        return Err(refused(path, cause, "create it (there is no such file)"));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let shared =
        Connection::open_with_flags(uri(path, "mode=ro"), flags).map_err(|e| super::migrate::open_error(path, e))?;
    match probe(&shared) {
        Ok(()) => return Ok(shared),
        // No -shm to read and none can be made: SQLite reports the file as unopenable or
        // unwritable. Anything else (not a database, say) is the file's own problem.
        Err(e) if matches!(e.sqlite_error_code(), Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly)) => {}
        Err(e) => return Err(super::migrate::open_error(path, e)),
    }
    drop(shared);
    if wal_holds_commits(path) {
        return Err(refused(
            path,
            cause,
            "read the commits its -wal file holds: SQLite needs a -shm file beside it to read them, and cannot make one there \
             (copy the file and its -wal to a writable place and open the copy)",
        ));
    }
    tracing::debug!(path = %path.display(), "no -wal or -shm and none can be made: reading the file as immutable");
    let frozen = Connection::open_with_flags(uri(path, "immutable=1"), flags)
        .map_err(|e| super::migrate::open_error(path, e))?;
    probe(&frozen).map_err(|e| super::migrate::open_error(path, e))?;
    Ok(frozen)
}

/// The first read of a file, where SQLite finds out whether it can read it at all.
fn probe(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
}

/// Whether `<path>-wal` may hold commits the main file lacks (an empty one holds none).
fn wal_holds_commits(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).is_ok_and(|m| m.len() > 0)
}

/// `path` as an SQLite URI (`file:` and the path, percent-encoded) with `query`.
fn uri(path: &Path, query: &str) -> String {
    let mut out = String::from("file:");
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = path.to_string_lossy().replace('\\', "/").into_bytes();
    for b in bytes {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push('?');
    out.push_str(query);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_escape_what_sqlite_would_read_as_syntax() {
        assert_eq!(uri(Path::new("/a b/c?d#e%f.db"), "mode=ro"), "file:/a%20b/c%3Fd%23e%25f.db?mode=ro");
        assert_eq!(uri(Path::new("rel/x.db"), "immutable=1"), "file:rel/x.db?immutable=1");
    }

    #[test]
    fn a_missing_file_is_not_created_by_a_read_only_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.db");
        let err = open_read_only(&path, ReadOnlyCause::Requested).unwrap_err();
        assert!(matches!(err, Error::ReadOnly { cause: ReadOnlyCause::Requested, .. }), "{err}");
        assert!(err.to_string().contains("none.db"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing was created");
    }

    #[test]
    fn a_writable_place_is_writable() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unwritable(&dir.path().join("new/deeper/x.db")), None);
        assert_eq!(resolve(&dir.path().join("x.db"), Access::ReadOnly).unwrap(), Some(ReadOnlyCause::Requested));
    }
}

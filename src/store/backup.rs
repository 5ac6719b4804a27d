//! `backup`: a consistent copy of a replica file while writers carry on.
//!
//! A copy of the `.db` file alone misses what is still in its `-wal` (every write since the last
//! checkpoint, up to 16 MiB), and a copy of both taken while a writer runs may catch them out of
//! step. SQLite's online backup copies every page as of one read transaction instead: in WAL
//! mode that blocks no writer, and the copy holds exactly the writes committed when it began.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::backup::{Backup, StepResult};

use crate::error::{Error, FileFault, Result};
use crate::ids::{LogPosition, Version};

/// What [`crate::Replica::backup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupReport {
    /// The copy.
    pub path: PathBuf,
    /// The version the copy holds (every write committed before the backup began).
    pub version: Version,
    /// Entities in the copy (every graph).
    pub entities: u64,
    /// Changes in the copy's log.
    pub changes: u64,
    /// The copy's size.
    pub bytes: u64,
}

/// How often a backup whose single step met a lock is retried (50 ms apart), at most.
const BUSY_RETRIES: u32 = 200;

/// Copies the replica file `src` to `dest`: through a temporary file beside `dest`, synced and
/// renamed into place, so `dest` is either the old file or the whole copy. An existing `dest`
/// is replaced only with `overwrite`. The copy is one self-contained file (rollback journal
/// mode, no `-wal`); a replica that opens it switches it back to WAL.
pub(crate) fn backup(src: &Path, dest: &Path, overwrite: bool) -> Result<BackupReport> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    if dest.exists() && !overwrite {
        let why = "already exists; choose a new path, or replace it with --force";
        return Err(Error::Io {
            path: dest.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, why),
        });
    }
    if let (Ok(a), Ok(b)) = (src.canonicalize(), dest.canonicalize())
        && a == b
    {
        let why = "is the replica file itself; back up to another path";
        return Err(Error::Io {
            path: dest.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
        });
    }
    let source = super::audit::open_existing(src)?;
    super::migrate::check_owner(&source, src)?;
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "backup".into());
    let partial = dest.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    remove_if_exists(&partial)?;
    let result = (|| {
        let mut copy = Connection::open(&partial).map_err(|e| super::fault::in_file(e.into(), &partial))?;
        copy_pages(&source, &mut copy).map_err(|e| super::fault::in_file(e, src))?;
        // One file, no -wal beside it: safe to move or copy on its own.
        copy.query_row("PRAGMA journal_mode=DELETE", [], |_| Ok(()))?;
        let ok: String = copy.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if ok != "ok" {
            return Err(Error::File {
                path: src.to_owned(),
                fault: FileFault::Damaged { detail: format!("its copy fails quick_check: {ok}") },
            });
        }
        let replica = super::meta::replica_id(&copy)?;
        let seq = super::log::max_seq(&copy)?;
        let entities: u64 = copy.query_row("SELECT count(*) FROM entities", [], |r| r.get::<_, i64>(0))? as u64;
        let changes: u64 = copy.query_row("SELECT count(*) FROM changes", [], |r| r.get::<_, i64>(0))? as u64;
        drop(copy);
        std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(io(&partial))?;
        Ok((Version { replica, seq: LogPosition(seq) }, entities, changes))
    })();
    let (version, entities, changes) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, dest).map_err(io(dest))?;
    sync_dir(dest)?;
    let bytes = std::fs::metadata(dest).map_err(io(dest))?.len();
    Ok(BackupReport { path: dest.to_owned(), version, entities, changes, bytes })
}

/// Copies every page in one step, that is in one read transaction: a backup in several steps
/// restarts whenever another process writes, so under steady writers it would never end.
fn copy_pages(source: &Connection, copy: &mut Connection) -> Result<()> {
    let backup = Backup::new(source, copy)?;
    for _ in 0..BUSY_RETRIES {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            // A checkpoint or recovery held a lock for a moment: try again.
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    // Said as SQLite's "busy", which the caller turns into the file's message.
    Err(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None).into())
}

pub(super) fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io { path: path.to_owned(), source: e }),
        _ => Ok(()),
    }
}

/// Makes a rename in `path`'s directory durable.
pub(super) fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_owned(),
        None => PathBuf::from("."),
    };
    std::fs::File::open(&dir).and_then(|f| f.sync_all()).map_err(|source| Error::Io { path: dir, source })
}

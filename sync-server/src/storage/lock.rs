//! One relay per data directory. Two relays on one directory would each keep documents in memory
//! that the other changes under them, so the first would serve stale data and tell replicas they
//! are in step when they are not. A relay holds an exclusive OS lock (`flock`) on `relay.lock` in
//! its directory for as long as its storage is open; the file also names the holder's pid, for
//! the message a second relay gives. The kernel drops the lock when the holder's process ends,
//! however it ends, so a lock file left by a killed relay blocks nothing.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file inside a relay data directory.
pub(super) const LOCK_FILE: &str = "relay.lock";

/// An exclusive lock on a relay data directory, released when dropped (or when the process ends).
#[derive(Debug)]
pub(super) struct DirLock {
    /// Held open: closing it releases the lock.
    _file: File,
}

/// Another process holds the data directory.
#[derive(Debug, thiserror::Error)]
#[error(
    "relay data directory {} is in use by another relay ({}, which holds {}); stop that relay first, or give this one a --data directory of its own",
    dir.display(),
    pid.map_or_else(|| "a process that has not written its pid yet".to_owned(), |p| format!("pid {p}")),
    dir.join(LOCK_FILE).display()
)]
pub struct DataDirInUse {
    /// The directory.
    pub dir: PathBuf,
    /// The holder's process id, as its lock file says.
    pub pid: Option<u32>,
}

/// Why a data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error(transparent)]
    InUse(#[from] DataDirInUse),
    #[error("cannot lock the relay data directory with {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl DirLock {
    /// Takes the lock on `dir` (which exists), or says who holds it. Never waits.
    pub(super) fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.clone(), source };
        // Not truncated on open: until we hold the lock, the pid in it is the holder's.
        let mut file = File::options().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        // An OS lock (flock), released by the kernel when the holder dies: a lock file left by a
        // killed relay blocks nothing.
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // Unreadable or empty (the holder is between locking and writing): no pid.
                let _ = file.read_to_string(&mut text);
                return Err(DataDirInUse { dir: dir.to_owned(), pid: text.trim().parse().ok() }.into());
            }
            Err(TryLockError::Error(source)) => return Err(io(source)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_directory_is_refused_until_the_first_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let Err(LockError::InUse(held)) = DirLock::acquire(dir.path()) else { panic!("a second lock was granted") };
        assert_eq!(held.pid, Some(std::process::id()));
        let message = held.to_string();
        assert!(message.contains(&dir.path().display().to_string()), "{message}");
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        drop(first);
        DirLock::acquire(dir.path()).expect("released with its holder");
    }
}

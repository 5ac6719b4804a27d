//! Checkpointing off the write path: the write-ahead log copied into the file in a pause.
//!
//! SQLite checkpoints on the commit that takes the log past `wal_autocheckpoint` pages: that
//! one write also copies the log's ~4,000 pages into the file and waits for them to reach the
//! disk, 12 ms at 100k entities, which was the p99.9 of single writes (BENCHMARKS.md, issue 17).
//! A thread of the replica's own runs a `PASSIVE` checkpoint (which never waits for, nor
//! blocks, a writer) once [`MIN_COMMITS`] commits have come and then none for [`IDLE`]: unless
//! writes never pause, the log never reaches the limit, which stays as the backstop. Letting the
//! log grow instead is no answer: a write into a long log costs more (p50 0.58 -> 0.80-0.90 ms
//! with autocheckpointing off, same bench).

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

/// How long no commit must come before the log is checkpointed.
const IDLE: Duration = Duration::from_millis(20);

/// How many commits the log must hold before a pause checkpoints it: a lone write now and then
/// is left to the next pause after more, not given a checkpoint (and an fsync of the file) each.
pub(super) const MIN_COMMITS: u64 = 16;

/// The thread, stopped and joined when dropped (so the file is closed when the replica is).
#[derive(Debug)]
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    commits: u64,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Two counters, changed in single statements: a panic cannot leave them half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Checkpointer {
    /// Starts the thread, on a connection of its own to `path`.
    pub(super) fn start(path: &Path) -> Result<Checkpointer> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cairn-checkpoint".into())
            .spawn(move || run(&conn, &theirs))
            .map_err(|source| Error::Io { path: path.to_owned(), source })?;
        Ok(Checkpointer { shared, thread: Some(thread) })
    }

    /// A write transaction committed.
    pub(super) fn committed(&self) {
        self.shared.lock().commits += 1;
        self.shared.wake.notify_one();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // The thread catches nothing that could panic; if it did, there is nothing to add.
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, shared: &Shared) {
    let mut done = 0;
    let mut state = shared.lock();
    loop {
        // Until the log holds enough commits.
        while !state.closed && state.commits - done < MIN_COMMITS {
            state = shared.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        // Then until a pause: IDLE without a commit.
        loop {
            if state.closed {
                return;
            }
            let seen = state.commits;
            state = shared.wake.wait_timeout(state, IDLE).unwrap_or_else(PoisonError::into_inner).0;
            if state.commits == seen && !state.closed {
                break;
            }
        }
        done = state.commits;
        drop(state);
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            // The commit that crosses the limit checkpoints instead; nothing is lost.
            tracing::debug!(error = %e, "a checkpoint in a pause failed");
        }
        state = shared.lock();
    }
}

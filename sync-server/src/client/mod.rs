//! The sync client: keeps a [`Replica`] in sync with a relay (or a serving peer) from a
//! background tokio task. It reconnects with jittered exponential backoff (which only a
//! connection that stayed up resets: `backoff.rs`), pushes offline
//! writes on reconnect, and feeds a [`Driver`](cairn::sync::Driver) (the core's sans-IO session,
//! which alone sets the replica's freshness). Every driver step does storage work, so it runs on
//! tokio's blocking pool, never on a runtime worker.
//!
//! Here: the [`SyncClient`] handle and what it reports. `options.rs`: how it connects;
//! `dial.rs`: one connection attempt and why it failed; `reconnect.rs`: the task's loop of
//! attempts, backoff and failover; `session.rs`: one connection's exchange with the driver.

mod dial;
mod options;
mod reconnect;
mod session;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use cairn::sync::ReplicaDocs;
use cairn::{DocId, Replica};

pub use dial::{ConnectError, redacted_url};
pub use options::{ClientOptions, Traffic};

/// A running sync client. Dropping it stops the task too, but [`SyncClient::stop`] waits for a
/// clean close.
#[derive(Debug)]
pub struct SyncClient {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    connected: watch::Receiver<bool>,
    traffic: Arc<Traffic>,
    remote: RemoteHeadsMap,
    replica: Arc<Replica>,
    read_only: Arc<std::sync::atomic::AtomicBool>,
    last_error: Arc<std::sync::Mutex<Option<ConnectError>>>,
    /// Notified each time a connection attempt fails or a connection ends.
    attempt_ended: Arc<Notify>,
}

/// What the other side last announced it holds, per document.
pub(super) type RemoteHeadsMap =
    Arc<std::sync::Mutex<std::collections::BTreeMap<DocId, Vec<cairn::automerge::ChangeHash>>>>;

impl SyncClient {
    /// Starts syncing `replica` in a task on the current tokio runtime.
    pub fn spawn(replica: Arc<Replica>, options: ClientOptions) -> SyncClient {
        let (stop, stop_rx) = watch::channel(false);
        let (connected_tx, connected) = watch::channel(false);
        let traffic = Arc::new(Traffic::default());
        let remote = RemoteHeadsMap::default();
        let read_only = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let last_error = Arc::new(std::sync::Mutex::new(None));
        let attempt_ended = Arc::new(Notify::new());
        let shared = Shared {
            traffic: traffic.clone(),
            remote: remote.clone(),
            read_only: read_only.clone(),
            last_error: last_error.clone(),
            attempt_ended: attempt_ended.clone(),
        };
        let task = tokio::spawn(reconnect::run(replica.clone(), options, stop_rx, connected_tx, shared));
        SyncClient { stop, task: Some(task), connected, traffic, remote, replica, read_only, last_error, attempt_ended }
    }

    /// Why the last connection attempt failed or the last connection ended; `None` while
    /// connected and before the first attempt ends.
    pub fn last_error(&self) -> Option<ConnectError> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the other side accepts no changes from this replica (a read-only token).
    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    /// How many of this replica's changes the other side has not acknowledged, and whether every
    /// document's heads are known to match (everything pushed and pulled). Reads the replica on
    /// tokio's blocking pool.
    pub async fn pending(&self) -> cairn::Result<Pending> {
        let announced = self.remote.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let read_only = self.is_read_only();
        let connected = self.is_connected();
        crate::off_runtime(&self.replica, move |r| {
            pending(ReplicaDocs::new(r.clone()), &announced, connected, read_only)
        })
        .await
    }

    /// Waits (up to `timeout`) until this replica and the other side hold the same heads for
    /// every document: everything pushed and pulled. Returns whether that happened; gives up
    /// as soon as an attempt fails in a way retrying soon will not fix (the token refused, the
    /// relay unreachable: [`ConnectError::retrying_soon_helps`]; [`SyncClient::last_error`]
    /// says which).
    pub async fn wait_settled(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.pending().await.is_ok_and(|p| p.settled) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline || self.last_error().is_some_and(|e| !e.retrying_soon_helps()) {
                return false;
            }
            // Woken early when an attempt ends, so a refused connection is known at once.
            let ended = self.attempt_ended.notified();
            let _ = tokio::time::timeout(Duration::from_millis(20), ended).await;
        }
    }

    /// Traffic so far.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Whether the connection is up right now.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits until the connection is up (or `timeout` passes); returns whether it is.
    pub async fn wait_connected(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.connected.wait_for(|c| *c)).await.is_ok_and(|r| r.is_ok())
    }

    /// Closes the connection cleanly and ends the task; the replica reads as `local` again.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SyncClient {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// What the other side of a sync connection lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    /// Changes of this replica the other side has not acknowledged (all of them while the other
    /// side's heads are unknown).
    pub changes: usize,
    /// Connected, and both sides hold the same heads for every document (for a read-only
    /// connection: this side holds everything the other has).
    pub settled: bool,
    /// The other side accepts no changes from this one.
    pub read_only: bool,
}

/// What the other side lacks, given what it announced (blocking: it reads the replica).
fn pending(
    mut docs: ReplicaDocs,
    announced: &std::collections::BTreeMap<DocId, Vec<cairn::automerge::ChangeHash>>,
    connected: bool,
    read_only: bool,
) -> cairn::Result<Pending> {
    let mut out = Pending { changes: 0, settled: connected, read_only };
    let replica = docs.replica().clone();
    for (doc, _) in replica.docs().all() {
        let Some(theirs) = announced.get(&doc) else {
            out.changes += docs.missing_from(doc, &[])?;
            out.settled = false;
            continue;
        };
        out.changes += docs.missing_from(doc, theirs)?;
        if read_only {
            // Nothing can be pushed: settled once everything is pulled.
            out.settled &= cairn::sync::SyncDocs::has_all(&mut docs, &doc, theirs)?;
        } else {
            let mut mine = cairn::sync::SyncDocs::heads(&mut docs, &doc)?;
            let mut theirs = theirs.clone();
            mine.sort();
            theirs.sort();
            out.settled &= mine == theirs;
        }
    }
    Ok(out)
}

/// State a sync task shares with its [`SyncClient`].
pub(super) struct Shared {
    pub(super) traffic: Arc<Traffic>,
    pub(super) remote: RemoteHeadsMap,
    pub(super) read_only: Arc<std::sync::atomic::AtomicBool>,
    pub(super) last_error: Arc<std::sync::Mutex<Option<ConnectError>>>,
    pub(super) attempt_ended: Arc<Notify>,
}

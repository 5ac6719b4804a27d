//! The link between a replica and whatever syncs it: the sync driver reports connection state
//! and what the relay announced here; the replica reports new changes there. Plain data behind a
//! mutex, plus subscriber callbacks, so the core stays free of any async runtime.
//!
//! Crate-private: freshness is set only by [`crate::sync::Driver`], from what a real session
//! saw, and a driver detaches when it is dropped (a sync task that panics included), so no code
//! embedding the library can make reads claim a freshness nobody observed.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::freshness::Freshness;
use crate::ids::DocId;
use crate::model::Millis;

type Subscriber = (u64, Arc<dyn Fn(&[DocId]) + Send + Sync>);

#[derive(Debug, Default, Clone)]
struct State {
    /// Number of sync drivers attached; `Local` freshness when zero.
    attached: usize,
    online: bool,
    /// When the link went offline (or first tried to connect).
    offline_since: Millis,
    /// When this replica last held everything the relay had announced.
    last_sync: Option<Millis>,
    /// When the relay first announced something this replica still lacks.
    behind_since: Option<Millis>,
    /// Bumped on every change this process logs; `wait_for_change` watches it.
    generation: u64,
}

/// Shared state between a replica and its sync drivers.
#[derive(Default)]
pub(crate) struct Link {
    state: Mutex<State>,
    changed: Condvar,
    subscribers: Mutex<Vec<Subscriber>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("state", &*self.lock()).finish_non_exhaustive()
    }
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain data updated in single assignments; a panic elsewhere cannot leave it
        // half-written, so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This process logged changes to `docs`: wake waiters and tell subscribers.
    pub(crate) fn notify(&self, docs: &[DocId]) {
        self.lock().generation += 1;
        self.changed.notify_all();
        let subs: Vec<Subscriber> = self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (_, s) in subs {
            s(docs);
        }
    }

    /// Calls `f` with the documents that changed after every change this process logs (from
    /// any thread; keep it short and non-blocking, e.g. wake an async task). Returns an id for
    /// [`Link::unsubscribe`].
    pub(crate) fn subscribe(&self, f: impl Fn(&[DocId]) + Send + Sync + 'static) -> u64 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).push((id, Arc::new(f)));
        id
    }

    /// Stops calling a subscriber.
    pub(crate) fn unsubscribe(&self, id: u64) {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).retain(|(i, _)| *i != id);
    }

    /// A counter that grows with every change this process logs.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Blocks until the generation passes `seen` or `timeout` elapses; returns the generation.
    pub(crate) fn wait_past(&self, seen: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while state.generation <= seen {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self.changed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        state.generation
    }

    /// A sync driver attaches (freshness stops being `local`); it starts offline.
    pub(crate) fn attach(&self, now: Millis) {
        let mut s = self.lock();
        s.attached += 1;
        if s.attached == 1 {
            s.online = false;
            s.offline_since = now;
        }
    }

    /// A sync driver detaches.
    pub(crate) fn detach(&self) {
        let mut s = self.lock();
        s.attached = s.attached.saturating_sub(1);
    }

    /// The connection came up. Until its first exchange finishes, the replica is not known to
    /// hold what the relay received while it was away: it reads as behind since it went offline.
    pub(crate) fn set_online(&self) {
        let mut s = self.lock();
        s.online = true;
        let since = s.offline_since;
        s.behind_since.get_or_insert(since);
    }

    /// The connection went down (or an attempt failed).
    pub(crate) fn set_offline(&self, now: Millis) {
        let mut s = self.lock();
        if s.online || s.offline_since == 0 {
            s.offline_since = now;
        }
        s.online = false;
        s.behind_since = None;
    }

    /// The relay announced heads this replica lacks.
    pub(crate) fn set_behind(&self, now: Millis) {
        let mut s = self.lock();
        s.behind_since.get_or_insert(now);
    }

    /// This replica holds everything the relay announced.
    pub(crate) fn set_synced(&self, now: Millis) {
        let mut s = self.lock();
        s.behind_since = None;
        s.last_sync = Some(now);
    }

    /// The freshness a read reports.
    pub(crate) fn freshness(&self) -> Freshness {
        let s = self.lock();
        if s.attached == 0 {
            Freshness::Local
        } else if !s.online {
            Freshness::Offline { since: s.offline_since, last_sync: s.last_sync }
        } else if let Some(since) = s.behind_since {
            Freshness::Behind { since }
        } else {
            match s.last_sync {
                Some(as_of) => Freshness::Synced { as_of },
                // Connected but the first exchange has not finished: not yet known to be caught up.
                None => Freshness::Behind { since: s.offline_since },
            }
        }
    }
}

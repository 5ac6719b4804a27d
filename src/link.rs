//! The link between a replica and whatever syncs it: the sync driver reports connection state
//! and what the relay announced here; the replica reports new changes there. Plain data behind a
//! mutex, plus subscriber callbacks, so the core stays free of any async runtime.
//!
//! Crate-private: freshness is set only by [`crate::sync::Driver`], from what a real session
//! saw, and a driver detaches when it is dropped (a sync task that panics included), so no code
//! embedding the library can make reads claim a freshness nobody observed.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::freshness::{Freshness, PeerFreshness};
use crate::ids::DocId;
use crate::model::Millis;

type Subscriber = (u64, Arc<dyn Fn(&[DocId]) + Send + Sync>);

/// One sync driver's view of the relay or peer it talks to.
#[derive(Debug, Clone)]
struct Peer {
    /// The driver's id, from [`Link::attach`].
    id: u64,
    /// What the driver syncs with (a relay's or peer's URL, without its query).
    name: String,
    online: bool,
    /// When the link went offline (or first tried to connect).
    offline_since: Millis,
    /// When this replica last held everything the other side had announced.
    last_sync: Option<Millis>,
    /// When the other side first announced something this replica still lacks.
    behind_since: Option<Millis>,
}

impl Peer {
    /// This link's freshness, as a replica with only this link would report it.
    fn freshness(&self) -> Freshness {
        if !self.online {
            Freshness::Offline { since: self.offline_since, last_sync: self.last_sync }
        } else if let Some(since) = self.behind_since {
            Freshness::Behind { since }
        } else {
            match self.last_sync {
                Some(as_of) => Freshness::Synced { as_of },
                // Connected but the first exchange has not finished: not yet known to be caught up.
                None => Freshness::Behind { since: self.offline_since },
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
struct State {
    /// The attached sync drivers, one per relay or peer; `Local` freshness when empty.
    peers: Vec<Peer>,
    /// Bumped on every change this process logs; `wait_for_change` watches it.
    generation: u64,
}

impl State {
    fn peer(&mut self, id: u64) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|p| p.id == id)
    }
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

    /// A sync driver attaches (freshness stops being `local`), syncing with `name`; it starts
    /// offline. Returns its id for the calls below.
    pub(crate) fn attach(&self, now: Millis, name: &str) -> u64 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let peer =
            Peer { id, name: name.to_owned(), online: false, offline_since: now, last_sync: None, behind_since: None };
        self.lock().peers.push(peer);
        id
    }

    /// A sync driver detaches.
    pub(crate) fn detach(&self, id: u64) {
        self.lock().peers.retain(|p| p.id != id);
    }

    /// The connection came up. Until its first exchange finishes, the replica is not known to
    /// hold what the other side received while it was away: it reads as behind since it went
    /// offline.
    pub(crate) fn set_online(&self, id: u64) {
        if let Some(p) = self.lock().peer(id) {
            p.online = true;
            let since = p.offline_since;
            p.behind_since.get_or_insert(since);
        }
    }

    /// The connection went down (or an attempt failed).
    pub(crate) fn set_offline(&self, id: u64, now: Millis) {
        if let Some(p) = self.lock().peer(id) {
            if p.online || p.offline_since == 0 {
                p.offline_since = now;
            }
            p.online = false;
            p.behind_since = None;
        }
    }

    /// The other side announced heads this replica lacks.
    pub(crate) fn set_behind(&self, id: u64, now: Millis) {
        if let Some(p) = self.lock().peer(id) {
            p.behind_since.get_or_insert(now);
        }
    }

    /// This replica holds everything the other side announced.
    pub(crate) fn set_synced(&self, id: u64, now: Millis) {
        if let Some(p) = self.lock().peer(id) {
            p.behind_since = None;
            p.last_sync = Some(now);
        }
    }

    /// The freshness a read reports. With one relay or peer, that link's; with several
    /// (docs/freshness.md, "Several peers"): `behind` if any connected one announced what this
    /// replica lacks (since the earliest), else `synced` as of the oldest confirmation among
    /// the connected ones, else (none connected) `offline` since the last one was lost.
    pub(crate) fn freshness(&self) -> Freshness {
        let s = self.lock();
        let each: Vec<Freshness> = s.peers.iter().map(Peer::freshness).collect();
        combine(&each)
    }

    /// Each relay or peer a sync driver is attached to, with its own freshness, in the order
    /// they attached.
    pub(crate) fn peers(&self) -> Vec<PeerFreshness> {
        self.lock().peers.iter().map(|p| PeerFreshness { peer: p.name.clone(), freshness: p.freshness() }).collect()
    }
}

/// Several links' freshness as one (see [`Link::freshness`]).
fn combine(each: &[Freshness]) -> Freshness {
    match each {
        [] => Freshness::Local,
        [one] => *one,
        _ => {
            let behind = each.iter().filter_map(|f| match f {
                Freshness::Behind { since } => Some(*since),
                _ => None,
            });
            if let Some(since) = behind.min() {
                return Freshness::Behind { since };
            }
            let synced = each.iter().filter_map(|f| match f {
                Freshness::Synced { as_of } => Some(*as_of),
                _ => None,
            });
            if let Some(as_of) = synced.min() {
                return Freshness::Synced { as_of };
            }
            let since = each.iter().filter_map(|f| match f {
                Freshness::Offline { since, .. } => Some(*since),
                _ => None,
            });
            let last_sync = each
                .iter()
                .filter_map(|f| match f {
                    Freshness::Offline { last_sync, .. } => *last_sync,
                    _ => None,
                })
                .max();
            Freshness::Offline { since: since.max().unwrap_or_default(), last_sync }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_link_reads_as_before_and_several_combine() {
        let link = Link::default();
        assert_eq!(link.freshness(), Freshness::Local);
        let relay = link.attach(10, "ws://relay");
        assert_eq!(link.freshness(), Freshness::Offline { since: 10, last_sync: None });
        link.set_online(relay);
        link.set_synced(relay, 20);
        assert_eq!(link.freshness(), Freshness::Synced { as_of: 20 });
        // A second peer, unreachable: the replica is still in step with the one it reaches,
        // and the list says which one it cannot reach.
        let peer = link.attach(30, "ws://peer");
        assert_eq!(link.freshness(), Freshness::Synced { as_of: 20 });
        assert_eq!(
            link.peers(),
            [
                PeerFreshness { peer: "ws://relay".into(), freshness: Freshness::Synced { as_of: 20 } },
                PeerFreshness {
                    peer: "ws://peer".into(),
                    freshness: Freshness::Offline { since: 30, last_sync: None }
                },
            ]
        );
        // Connected and not yet in step: behind, whatever the other says.
        link.set_online(peer);
        assert_eq!(link.freshness(), Freshness::Behind { since: 30 });
        link.set_synced(peer, 40);
        assert_eq!(link.freshness(), Freshness::Synced { as_of: 20 });
        link.set_offline(relay, 50);
        link.set_offline(peer, 60);
        assert_eq!(link.freshness(), Freshness::Offline { since: 60, last_sync: Some(40) });
        link.detach(relay);
        link.detach(peer);
        assert_eq!(link.freshness(), Freshness::Local);
        assert!(link.peers().is_empty());
    }
}

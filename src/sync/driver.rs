//! What a sync driver holds of a replica: its documents as [`SyncDocs`] ([`ReplicaDocs`]), and
//! the one handle that reports freshness ([`Driver`]).
//!
//! A replica's freshness is set by nothing but a [`Driver`], from what its session saw: the
//! transport connected or went down, the remote side announced heads this replica lacks, or
//! every announced head is here. A driver counts as attached from [`Driver::attach`] until it is
//! dropped, whichever way its task ends (a panic included), so a replica never reads `offline`
//! for ever after its sync task died, and never reads `synced` without a session that saw it.

use std::sync::Arc;

use automerge::ChangeHash;
use automerge::sync;

use super::SyncDocs;
use super::session::{ClientSession, Effect, Input, SessionConfig};
use crate::error::Result;
use crate::ids::DocId;
use crate::model::Millis;
use crate::replica::Replica;

/// A replica's documents, as a sync state machine (a client session, or a hub serving the
/// replica to peers) reads and writes them. Each call is one short transaction: call it off any
/// async runtime's worker threads.
#[derive(Debug, Clone)]
pub struct ReplicaDocs {
    replica: Arc<Replica>,
}

impl ReplicaDocs {
    /// The documents of `replica`'s graph.
    pub fn new(replica: Arc<Replica>) -> Self {
        ReplicaDocs { replica }
    }

    /// The replica.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    /// How many changes the file has logged (by any process): a cheap way to notice new ones.
    pub fn log_position(&self) -> Result<crate::ids::LogPosition> {
        self.replica.log_position()
    }

    /// The replica file's storage id, which peers key what they remember about it by.
    pub fn storage_id(&self) -> crate::ids::StorageId {
        self.replica.storage_id()
    }

    /// How many of this replica's changes to `doc` a peer holding `theirs` lacks (genesis, which
    /// every replica has, never counts).
    pub fn missing_from(&self, doc: DocId, theirs: &[ChangeHash]) -> Result<usize> {
        self.replica.missing_from(doc, theirs)
    }
}

impl SyncDocs for ReplicaDocs {
    fn exists(&mut self, doc: &DocId) -> Result<bool> {
        Ok(self.replica.docs().kind_of(doc).is_some())
    }

    fn generate(&mut self, doc: &DocId, state: &mut sync::State) -> Result<Option<sync::Message>> {
        self.replica.generate_sync_message(*doc, state)
    }

    fn receive(&mut self, doc: &DocId, state: &mut sync::State, message: sync::Message) -> Result<usize> {
        self.replica.receive_sync_message(*doc, state, message)
    }

    fn has_all(&mut self, doc: &DocId, heads: &[ChangeHash]) -> Result<bool> {
        self.replica.has_heads(*doc, heads)
    }

    fn heads(&mut self, doc: &DocId) -> Result<Vec<ChangeHash>> {
        self.replica.doc_heads(*doc)
    }

    fn rules(&mut self, doc: &DocId) -> Result<Option<crate::integrity::DocRules>> {
        Ok(self.replica.rules_for(doc).ok().cloned())
    }
}

/// A sync driver's session on a replica, and the only writer of its freshness. Sans-IO like the
/// session it wraps: the driver's transport feeds it [`Input`]s and carries out the returned
/// [`Effect`]s; it does storage work (blocking) and never touches a socket or a clock.
#[derive(Debug)]
pub struct Driver {
    docs: ReplicaDocs,
    session: ClientSession,
    /// This driver's place in the replica's link (its per-peer freshness).
    link: u64,
}

impl Driver {
    /// Attaches to `docs`' replica. Until this driver is dropped, the replica's reads report
    /// `offline` (it starts so), `behind` or `synced`, never `local`.
    pub fn attach(docs: ReplicaDocs, config: SessionConfig, now: Millis) -> Driver {
        Driver::attach_to(docs, config, now, "relay")
    }

    /// [`Driver::attach`], naming what it syncs with (a relay's or peer's URL, without its
    /// query): reads list each attached driver's freshness under its name
    /// ([`crate::Replica::peers`]).
    pub fn attach_to(docs: ReplicaDocs, config: SessionConfig, now: Millis, peer: &str) -> Driver {
        let link = docs.replica.link().attach(now, peer);
        Driver { docs, session: ClientSession::new(config), link }
    }

    /// The documents this driver syncs.
    pub fn docs(&self) -> &ReplicaDocs {
        &self.docs
    }

    /// Advances the session and records in the replica what it learned. Returns what the
    /// transport must do ([`Effect::Send`], [`Effect::Close`], and what the other side announced);
    /// freshness effects are applied here and not returned. An `Err` is a local storage failure.
    pub fn handle(&mut self, now: Millis, input: Input) -> Result<Vec<Effect>> {
        let replica = self.docs.replica.clone();
        let link = replica.link();
        let received = matches!(input, Input::Received(_));
        match &input {
            Input::Connected => link.set_online(self.link),
            Input::Disconnected => link.set_offline(self.link, now),
            _ => {}
        }
        let effects = self.session.handle(now, input, &mut self.docs)?;
        let mut out = Vec::with_capacity(effects.len());
        for effect in effects {
            match effect {
                Effect::Behind => link.set_behind(self.link, now),
                Effect::Synced => link.set_synced(self.link, now),
                other => out.push(other),
            }
        }
        // Every message that finds the replica caught up moves "synced as of" to now.
        if received && self.session.is_synced() {
            link.set_synced(self.link, now);
        }
        Ok(out)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.docs.replica.link().detach(self.link);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freshness::Freshness;

    fn config(docs: &ReplicaDocs) -> SessionConfig {
        SessionConfig {
            peer_id: "me".into(),
            storage_id: Some(docs.storage_id()),
            docs: docs.replica().docs().all().map(|(id, _)| id).collect(),
            resync_after: 5_000,
            handshake_timeout: 5_000,
        }
    }

    #[test]
    fn freshness_follows_the_driver_and_ends_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Arc::new(Replica::open(dir.path().join("a.db"), "a").unwrap());
        assert_eq!(replica.freshness(), Freshness::Local);
        let docs = ReplicaDocs::new(replica.clone());
        let mut driver = Driver::attach(docs.clone(), config(&docs), 1_000);
        assert_eq!(replica.freshness(), Freshness::Offline { since: 1_000, last_sync: None });
        // Connected, handshake not answered yet: not known to be caught up.
        let effects = driver.handle(2_000, Input::Connected).unwrap();
        assert!(matches!(effects.as_slice(), [Effect::Send(crate::sync::wire::Message::Join { .. })]));
        assert!(matches!(replica.freshness(), Freshness::Behind { .. }));
        driver.handle(3_000, Input::Disconnected).unwrap();
        assert_eq!(replica.freshness(), Freshness::Offline { since: 3_000, last_sync: None });
        drop(driver);
        assert_eq!(replica.freshness(), Freshness::Local, "a dropped driver detaches");
    }

    #[test]
    fn a_driver_dropped_by_a_panic_detaches_too() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Arc::new(Replica::open(dir.path().join("a.db"), "a").unwrap());
        let docs = ReplicaDocs::new(replica.clone());
        let driver = Driver::attach(docs.clone(), config(&docs), 1_000);
        let panicked = std::thread::spawn(move || {
            let _driver = driver;
            panic!("a sync task's bug");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(replica.freshness(), Freshness::Local);
    }
}

//! What the hub owes each (connection, document) pair, and when the pair may next hear from it.
//!
//! The relay is quiet by construction: it never answers a sync message as it arrives. A pair that
//! sent messages, or whose document changed, is marked here; at a flush every pair that is due
//! gets at most one sync message, generated then from its Automerge sync state (which says
//! nothing when there is nothing new), carrying the answer and every other writer's changes at
//! once. A pair that had a message less than `interval` ago waits until the interval has passed:
//! under steady writes one message then carries what a whole interval brought, instead of one
//! exchange per change (automerge-repo's own `DocSynchronizer` throttles the same way, at
//! 100 ms). A pair that has been quiet for the interval is answered at once, and so is a pair
//! at rest (both sides hold the same heads and each knows it: a reader that acknowledged
//! everything), so an occasional write, or a writer and a reader taking turns, waits for
//! nothing.
//!
//! A pair also waits for the peer to answer the last changes it was sent (any sync message
//! from it about the document), up to [`ANSWER_WAIT`]: a peer slower than the interval sets
//! the pace itself, and each message it gets carries everything that came while it worked.
//! Without this a slow peer is sent a message every interval whatever it has taken in, so the
//! busier it is the more it is sent: 32 stock clients in one Node process at 2 writes a second
//! each fell behind and never caught up, where with it they kept up (BENCHMARKS.md, issue 17).

use std::collections::{BTreeMap, HashMap, HashSet};

use cairn::automerge::ChangeHash;
use cairn::{DocId, Millis};

use super::ConnId;

/// How long a pair whose last message carried changes waits for the peer's answer before the
/// next may go anyway: a peer that never answers still hears what is new, once a second.
pub(super) const ANSWER_WAIT: Millis = 1_000;

/// What a pair is owed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Owed {
    /// The relay's new heads, as a `remote-heads-changed` (a subscriber whose document changed
    /// through someone else).
    pub(super) heads: bool,
}

/// The pairs owed a message, and when each last had one.
#[derive(Debug)]
pub(super) struct Outbox {
    interval: Millis,
    waiting: BTreeMap<(ConnId, DocId), Owed>,
    last: HashMap<(ConnId, DocId), Millis>,
    /// The heads of the last sync message each pair had.
    told: HashMap<(ConnId, DocId), Vec<ChangeHash>>,
    /// Pairs at rest since their last message: the next one need not wait.
    rest: HashSet<(ConnId, DocId)>,
    /// Pairs sent changes the peer has not answered yet, and when.
    unanswered: HashMap<(ConnId, DocId), Millis>,
}

impl Outbox {
    /// An empty outbox: a pair hears from the hub at most once per `interval` milliseconds.
    pub(super) fn new(interval: Millis) -> Self {
        Outbox {
            interval,
            waiting: BTreeMap::new(),
            last: HashMap::new(),
            told: HashMap::new(),
            rest: HashSet::new(),
            unanswered: HashMap::new(),
        }
    }

    /// `conn` sent a sync message for `doc`: it has answered what it was sent, and is owed an
    /// answer (if its state calls for one).
    pub(super) fn answer(&mut self, conn: ConnId, doc: DocId) {
        self.unanswered.remove(&(conn, doc));
        self.waiting.entry((conn, doc)).or_default();
    }

    /// `doc` changed: `conn`, which has it open, is owed the changes, and its heads if `heads`.
    pub(super) fn changed(&mut self, conn: ConnId, doc: DocId, heads: bool) {
        self.waiting.entry((conn, doc)).or_default().heads |= heads;
    }

    /// Takes the pairs that may have their message now, in a fixed order.
    pub(super) fn due(&mut self, now: Millis) -> Vec<((ConnId, DocId), Owed)> {
        let due: Vec<_> =
            self.waiting.iter().filter(|(pair, _)| self.is_due(pair, now)).map(|(pair, owed)| (*pair, *owed)).collect();
        for (pair, _) in &due {
            self.waiting.remove(pair);
        }
        due
    }

    /// Something was sent to the pair at `now`: a sync message with these heads, if `heads`,
    /// and changes for the peer to answer, if `changes`.
    pub(super) fn sent(&mut self, pair: (ConnId, DocId), now: Millis, heads: Option<Vec<ChangeHash>>, changes: bool) {
        self.last.insert(pair, now);
        self.rest.remove(&pair);
        if changes {
            self.unanswered.insert(pair, now);
        }
        if let Some(heads) = heads {
            self.told.insert(pair, heads);
        }
    }

    /// Both sides of the pair hold the same heads and know it: it is owed nothing now, and its
    /// next message goes at once.
    pub(super) fn rested(&mut self, pair: (ConnId, DocId)) {
        self.waiting.remove(&pair);
        self.rest.insert(pair);
    }

    /// The pairs that wait for their interval.
    pub(super) fn held(&self) -> Vec<((ConnId, DocId), Owed)> {
        self.waiting.iter().map(|(pair, owed)| (*pair, *owed)).collect()
    }

    /// The heads of the last sync message the pair had, if it had one.
    pub(super) fn told(&self, pair: &(ConnId, DocId)) -> Option<&[ChangeHash]> {
        self.told.get(pair).map(Vec::as_slice)
    }

    /// When the next waiting pair falls due, if any waits; the adapter flushes then.
    pub(super) fn next_due(&self) -> Option<Millis> {
        self.waiting.keys().map(|pair| self.due_at(pair)).min()
    }

    /// Forgets a closed connection.
    pub(super) fn forget(&mut self, conn: ConnId) {
        self.waiting.retain(|(c, _), _| *c != conn);
        self.last.retain(|(c, _), _| *c != conn);
        self.told.retain(|(c, _), _| *c != conn);
        self.rest.retain(|(c, _)| *c != conn);
        self.unanswered.retain(|(c, _), _| *c != conn);
    }

    fn due_at(&self, pair: &(ConnId, DocId)) -> Millis {
        let paced = match self.last.get(pair) {
            Some(at) if !self.rest.contains(pair) => at.saturating_add(self.interval),
            _ => 0,
        };
        let answered = self.unanswered.get(pair).map_or(0, |at| at.saturating_add(ANSWER_WAIT));
        paced.max(answered)
    }

    fn is_due(&self, pair: &(ConnId, DocId), now: Millis) -> bool {
        now >= self.due_at(pair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(n: u8) -> DocId {
        cairn::GraphDocs::of(&cairn::GraphName::default_graph()).shards[n as usize]
    }

    #[test]
    fn a_quiet_pair_is_due_at_once_and_a_busy_one_after_the_interval() {
        let mut out = Outbox::new(50);
        // Step 1: connection 1 sends a message: it is answered at the next flush.
        out.answer(1, doc(0));
        assert_eq!(out.next_due(), Some(0));
        assert_eq!(out.due(1_000), [((1, doc(0)), Owed::default())]);
        out.sent((1, doc(0)), 1_000, None, false);
        assert_eq!(out.next_due(), None, "nothing waits");
        // Step 2: more comes within the interval: it waits, and is owed once, heads included.
        out.answer(1, doc(0));
        out.changed(1, doc(0), true);
        out.changed(1, doc(0), false);
        assert!(out.due(1_049).is_empty());
        assert_eq!(out.next_due(), Some(1_050));
        assert_eq!(out.due(1_050), [((1, doc(0)), Owed { heads: true })]);
        // Step 3: other pairs are paced on their own.
        out.changed(2, doc(0), false);
        out.answer(1, doc(1));
        assert_eq!(out.due(1_051).len(), 2);
    }

    #[test]
    fn a_pair_at_rest_is_owed_nothing_and_its_next_message_goes_at_once() {
        let mut out = Outbox::new(50);
        out.answer(1, doc(0));
        out.due(1_000);
        out.sent((1, doc(0)), 1_000, Some(vec![]), false);
        // Step 1: the peer acknowledges within the interval: held, until the hub sees it rests.
        out.answer(1, doc(0));
        assert_eq!(out.held(), [((1, doc(0)), Owed::default())]);
        out.rested((1, doc(0)));
        assert_eq!(out.next_due(), None, "owed nothing");
        // Step 2: the document changes: due at once, interval or not; then paced again.
        out.changed(1, doc(0), false);
        assert_eq!(out.due(1_001).len(), 1);
        out.sent((1, doc(0)), 1_001, Some(vec![]), false);
        out.changed(1, doc(0), false);
        assert!(out.due(1_002).is_empty());
    }

    #[test]
    fn a_pair_sent_changes_waits_for_the_answer_or_for_answer_wait() {
        let mut out = Outbox::new(50);
        out.changed(1, doc(0), false);
        out.due(1_000);
        out.sent((1, doc(0)), 1_000, Some(vec![]), true);
        // Step 1: more changes, no answer yet: held past the interval.
        out.changed(1, doc(0), false);
        assert!(out.due(1_050).is_empty(), "the peer has not answered");
        assert_eq!(out.next_due(), Some(1_000 + ANSWER_WAIT));
        // Step 2: the peer answers: due at once, the interval having passed.
        out.answer(1, doc(0));
        assert_eq!(out.due(1_060).len(), 1);
        // Step 3: a peer that never answers still hears what is new after ANSWER_WAIT.
        out.sent((1, doc(0)), 1_060, Some(vec![]), true);
        out.changed(1, doc(0), false);
        assert!(out.due(1_060 + ANSWER_WAIT - 1).is_empty());
        assert_eq!(out.due(1_060 + ANSWER_WAIT).len(), 1);
        // Step 4: a message without changes asks for no answer.
        out.sent((1, doc(0)), 3_000, Some(vec![]), false);
        out.changed(1, doc(0), false);
        assert_eq!(out.due(3_050).len(), 1);
    }

    #[test]
    fn a_closed_connection_is_forgotten() {
        let mut out = Outbox::new(50);
        out.answer(1, doc(0));
        out.sent((1, doc(0)), 10, Some(vec![]), true);
        out.answer(1, doc(0));
        out.forget(1);
        assert_eq!(out.next_due(), None);
        assert!(out.last.is_empty() && out.told.is_empty() && out.rest.is_empty() && out.unanswered.is_empty());
    }
}

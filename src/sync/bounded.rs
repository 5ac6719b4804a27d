//! Keeping a sync message within what a peer accepts.
//!
//! Automerge puts every change a peer lacks into one sync message, or the whole document when
//! that is over a third of it. A relay refuses a message over its limit (16 MiB by default) and
//! closes the connection, so a replica that wrote a few large observations offline, or imported
//! a large file, would never sync again: each reconnection sends the same message. So a message
//! carries at most [`MAX_MESSAGE_CHANGE_BYTES`] of changes (always at least one change), and the
//! rest go in the next rounds: each answer from the peer lets the next message offer more.

use automerge::{Automerge, Change, sync};

/// The most bytes of changes one sync message carries, unless a single change is larger (8 MiB:
/// half a relay's default message limit, and a write is at most [`crate::MAX_WRITE_BYTES`]).
pub const MAX_MESSAGE_CHANGE_BYTES: usize = 8 << 20;

/// `message` with at most `max` bytes of changes: a prefix of them, in the order Automerge gave
/// them (so that dependencies come first). The changes left out are taken out of
/// `state.sent_hashes`, so that the next message generated for this peer offers them again. A
/// whole document that does not fit is sent as the changes the peer may lack instead.
pub(crate) fn bound(doc: &Automerge, state: &mut sync::State, mut message: sync::Message, max: usize) -> sync::Message {
    let total: usize = message.changes.iter().map(<[u8]>::len).sum();
    if total <= max {
        return message;
    }
    let parsed: Option<Vec<Change>> = message.changes.iter().map(|c| Change::try_from(c).ok()).collect();
    let candidates = match parsed {
        Some(changes) => changes,
        // A document chunk (or anything that is not a list of changes): the changes since what
        // both sides are known to share, a superset of what the peer lacks.
        None => doc.get_changes(&state.shared_heads),
    };
    let (mut kept, mut bytes) = (Vec::new(), 0);
    for change in candidates {
        let size = change.raw_bytes().len();
        if kept.is_empty() || bytes + size <= max {
            bytes += size;
            kept.push(change.raw_bytes().to_vec());
        } else {
            state.sent_hashes.remove(&change.hash());
        }
    }
    message.changes = kept.into();
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ROOT, sync::SyncDoc};

    /// A document with `n` changes of `size` bytes each (incompressible text).
    fn doc_with(n: usize, size: usize) -> Automerge {
        let mut doc = Automerge::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 0..n {
            let text: String = (0..size)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    char::from(b'a' + (seed % 26) as u8)
                })
                .collect();
            let mut tx = doc.transaction();
            tx.put(ROOT, format!("k{i}"), text).unwrap();
            tx.commit();
        }
        doc
    }

    /// Syncs `a` into an empty document, each message bounded; returns the largest message's
    /// change bytes and how many messages `a` sent.
    fn sync_bounded(a: &Automerge, max: usize) -> (Automerge, usize, usize) {
        let mut b = Automerge::new();
        let (mut sa, mut sb) = (sync::State::new(), sync::State::new());
        let (mut largest, mut sent) = (0, 0);
        for _round in 0..100 {
            let mut quiet = true;
            if let Some(m) = a.generate_sync_message(&mut sa) {
                let m = bound(a, &mut sa, m, max);
                largest = largest.max(m.changes.iter().map(<[u8]>::len).sum());
                sent += 1;
                b.receive_sync_message(&mut sb, m).unwrap();
                quiet = false;
            }
            if let Some(m) = b.generate_sync_message(&mut sb) {
                let m = bound(&b, &mut sb, m, max);
                let mut a = a.clone();
                a.receive_sync_message(&mut sa, m).unwrap();
                quiet = false;
            }
            if quiet {
                break;
            }
        }
        (b, largest, sent)
    }

    #[test]
    fn a_backlog_larger_than_a_message_arrives_over_several() {
        let a = doc_with(5, 300_000);
        let (b, largest, sent) = sync_bounded(&a, 700_000);
        assert_eq!(b.get_heads(), a.get_heads(), "everything arrived");
        assert!(largest <= 700_000, "a message carried {largest} bytes of changes");
        assert!(sent >= 3, "five 300 kB changes need at least three messages of 700 kB; {sent} were sent");
    }

    #[test]
    fn a_change_larger_than_the_bound_still_goes_alone() {
        let a = doc_with(2, 300_000);
        let (b, largest, _) = sync_bounded(&a, 100_000);
        assert_eq!(b.get_heads(), a.get_heads());
        assert!(largest < 400_000, "one change per message: {largest}");
    }

    #[test]
    fn a_message_within_the_bound_is_untouched() {
        let a = doc_with(3, 1000);
        let mut state = sync::State::new();
        let m = a.generate_sync_message(&mut state).unwrap();
        let before = m.clone().encode();
        assert_eq!(bound(&a, &mut state, m, 1 << 20).encode(), before);
    }
}

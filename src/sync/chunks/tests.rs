//! The chunk checks on real and hostile chunks, and every message of a real sync.

use automerge::transaction::Transactable;

use super::*;

fn check(entries: &[&[u8]], limit: u64) -> Result<(), ChunkError> {
    read(entries, limit).map(drop)
}

fn carried(entries: &[&[u8]], limit: u64) -> Result<Vec<Carried>, ChunkError> {
    read(entries, limit).map(|d| d.carried)
}

/// A document with a long text, so that saving it compresses columns.
fn big_document() -> automerge::Automerge {
    let mut doc = automerge::Automerge::new();
    let mut tx = doc.transaction();
    for i in 0..2_000 {
        tx.put(automerge::ROOT, format!("key-{i}"), "the same value again and again").unwrap();
    }
    tx.commit();
    doc
}

#[test]
fn real_chunks_are_charged_what_they_inflate_to() {
    let doc = big_document();
    let saved = doc.save();
    assert_eq!(check(&[saved.as_slice()], 64 << 20), Ok(()));
    // The same document is refused under a budget smaller than its decompressed size (which is
    // larger than its saved size, so compressed columns were counted as inflated).
    let too_small = saved.len() as u64;
    assert_eq!(check(&[saved.as_slice()], too_small), Err(ChunkError::TooLarge { limit: too_small }));
    let change = doc.get_last_local_change().unwrap().clone();
    let mut compressed = change.clone();
    let compressed = compressed.bytes();
    assert_eq!(compressed[8], COMPRESSED_CHANGE, "a large change is stored compressed");
    assert_eq!(check(&[compressed.as_ref()], 64 << 20), Ok(()));
    assert_eq!(check(&[change.raw_bytes()], 64 << 20), Ok(()));
}

#[test]
fn chunks_laid_end_to_end_are_each_checked() {
    let mut doc = automerge::Automerge::new();
    for i in 0..2 {
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "k", i).unwrap();
        tx.commit();
    }
    let joined: Vec<u8> = doc.get_changes(&[]).iter().flat_map(|c| c.raw_bytes().to_vec()).collect();
    assert_eq!(check(&[joined.as_slice()], 1 << 20), Ok(()));
    let mut damaged = joined.clone();
    let last = damaged.len() - 2;
    damaged[last] ^= 0xff;
    // Refused by the row count's walk of the columns, or by Automerge.
    let refused = check(&[damaged.as_slice()], 1 << 20);
    assert!(matches!(refused, Err(ChunkError::Undecodable(_) | ChunkError::Malformed(_))), "{refused:?}");
    assert!(matches!(check(&[&joined[..joined.len() - 1]], 1 << 20), Err(ChunkError::Malformed("truncated"))));
}

#[test]
fn a_deflate_bomb_is_refused_after_inflating_only_the_budget() {
    // 64 MiB of zeros compress to about 64 KiB.
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut encoder, &vec![0u8; 64 << 20]).unwrap();
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let chunk = framed(COMPRESSED_CHANGE, &bomb);
    assert_eq!(check(&[chunk.as_slice()], 1 << 20), Err(ChunkError::TooLarge { limit: 1 << 20 }));
}

fn leb(out: &mut Vec<u8>, mut n: i64, signed: bool) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        let done = if signed { (n == 0 && byte & 0x40 == 0) || (n == -1 && byte & 0x40 != 0) } else { n == 0 };
        out.push(if done { byte } else { byte | 0x80 });
        if done {
            return;
        }
    }
}

/// A chunk of `kind` around `body` (checksum left zero: the budget is charged before
/// Automerge would check it).
fn framed(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut chunk = MAGIC.to_vec();
    chunk.extend([0, 0, 0, 0, kind]);
    leb(&mut chunk, body.len() as i64, false);
    chunk.extend(body);
    chunk
}

#[test]
fn a_run_length_bomb_is_refused_by_its_row_count() {
    // A change whose one operation column is a single run claiming ten million rows: eight
    // bytes that Automerge would expand into ten million operations.
    let mut body = vec![0, 16];
    body.extend([7; 16]); // no dependencies; the actor
    body.extend([1, 1, 0, 0, 0]); // seq, start op, time, no message, no other actors
    let mut data = Vec::new();
    leb(&mut data, 10_000_000, true);
    leb(&mut data, 1, false);
    body.push(1); // one column: the action column, unsigned LEB128
    leb(&mut body, (4 << 4) | i64::from(super::budget::column::ULEB), false);
    leb(&mut body, data.len() as i64, false);
    body.extend(&data);
    let chunk = framed(CHANGE, &body);
    assert!(chunk.len() < 64);
    assert_eq!(check(&[chunk.as_slice()], 128 << 20), Err(ChunkError::TooLarge { limit: 128 << 20 }));
}

#[test]
fn a_real_change_is_charged_for_its_operations() {
    let doc = big_document();
    let change = doc.get_last_local_change().unwrap();
    let bytes = change.raw_bytes();
    // 2,000 operations: their rows cost more than the change's bytes.
    let rows = 2_000 * ROW_COST;
    assert_eq!(check(&[bytes], rows + bytes.len() as u64), Ok(()));
    assert!(matches!(check(&[bytes], rows), Err(ChunkError::TooLarge { .. })));
}

/// `bytes` with its checksum's first byte flipped: everything else stays valid.
fn bad_checksum(bytes: &[u8]) -> Vec<u8> {
    let mut damaged = bytes.to_vec();
    damaged[4] ^= 0xff;
    damaged
}

#[test]
fn a_valid_change_with_a_wrong_checksum_is_refused() {
    let mut doc = big_document();
    let mut tx = doc.transaction();
    tx.put(automerge::ROOT, "small", 1).unwrap();
    tx.commit();
    let small = doc.get_last_local_change().unwrap().clone();
    let mut large = doc.get_changes(&[])[0].clone();
    let compressed = large.bytes().to_vec();
    assert_eq!(compressed[8], COMPRESSED_CHANGE);
    for (what, bytes) in [("a change", small.raw_bytes().to_vec()), ("a compressed change", compressed)] {
        assert_eq!(check(&[bytes.as_slice()], 64 << 20), Ok(()), "{what}, intact");
        let damaged = bad_checksum(&bytes);
        // Automerge takes it: the checksum is not what it checks here.
        let taken = automerge::Change::try_from(damaged.as_slice()).map(|c| c.hash());
        assert!(taken.is_ok(), "{what}: Automerge decodes the damaged change: {taken:?}");
        assert_eq!(check(&[damaged.as_slice()], 64 << 20), Err(ChunkError::BadChecksum), "{what}");
        assert_eq!(carried(&[damaged.as_slice()], 64 << 20), Err(ChunkError::BadChecksum), "{what}");
    }
    // Documents and bundles have checksums too.
    let saved = doc.save();
    let bundle = doc.bundle(doc.get_changes(&[]).iter().map(|c| c.hash())).unwrap().bytes().to_vec();
    for (what, bytes) in [("a document", saved), ("a bundle", bundle)] {
        assert_eq!(check(&[bytes.as_slice()], 64 << 20), Ok(()), "{what}, intact");
        assert_eq!(check(&[bad_checksum(&bytes).as_slice()], 64 << 20), Err(ChunkError::BadChecksum), "{what}");
    }
}

#[test]
fn automerge_drops_a_change_with_a_wrong_checksum_silently() {
    // Why the check matters: applied to a document with history, the damaged change is
    // dropped with a warning and no error.
    use automerge::sync::SyncDoc;
    let mut doc = automerge::Automerge::new();
    let mut tx = doc.transaction();
    tx.put(automerge::ROOT, "a", 1).unwrap();
    tx.commit();
    let mut other = doc.fork();
    let mut tx = other.transaction();
    tx.put(automerge::ROOT, "b", 2).unwrap();
    tx.commit();
    let change = other.get_last_local_change().unwrap().raw_bytes().to_vec();
    let mut message = automerge::sync::Message::decode(
        &automerge::Automerge::new().generate_sync_message(&mut automerge::sync::State::new()).unwrap().encode(),
    )
    .unwrap();
    message.changes = vec![bad_checksum(&change)].into();
    let before = doc.get_heads();
    assert!(doc.receive_sync_message(&mut automerge::sync::State::new(), message).is_ok());
    assert_eq!(doc.get_heads(), before, "nothing applied, and no error");
}

#[test]
fn carried_changes_are_known_by_hash_and_dependencies() {
    let mut doc = big_document(); // its one change is compressed when sent
    for i in 0..3 {
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "k", i).unwrap();
        tx.commit();
    }
    let changes = doc.get_changes(&[]);
    let mut entries: Vec<Vec<u8>> = changes.iter().map(|c| c.clone().bytes().to_vec()).collect();
    assert_eq!(entries[0][8], COMPRESSED_CHANGE);
    // Two changes laid end to end in one entry, as Automerge allows.
    let last = entries.pop().unwrap();
    entries.last_mut().unwrap().extend(last);
    let slices: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    let got = carried(&slices, 64 << 20).unwrap();
    assert_eq!(got.len(), changes.len());
    for (g, c) in got.iter().zip(&changes) {
        let Carried::Change(g) = g else { panic!("a change: {g:?}") };
        assert_eq!((g.hash, g.deps.as_slice()), (c.hash(), c.deps()));
        assert!(g.cost >= c.raw_bytes().len() as u64);
    }
    // A bundle's changes come one by one; a document as it is.
    let bundle = doc.bundle(changes.iter().skip(1).map(|c| c.hash())).unwrap().bytes().to_vec();
    let got = carried(&[bundle.as_slice()], 64 << 20).unwrap();
    let hashes: Vec<_> =
        got.iter().map(|g| if let Carried::Change(c) = g { c.hash } else { panic!("{g:?}") }).collect();
    assert_eq!(hashes, changes[1..].iter().map(|c| c.hash()).collect::<Vec<_>>());
    let saved = doc.save();
    assert_eq!(carried(&[saved.as_slice()], 64 << 20), Ok(vec![Carried::Document(saved.clone())]));
}

#[test]
fn negative_and_long_integers_decode() {
    for n in [0i64, 1, -1, 63, -64, 64, -65, 10_000_000, -10_000_000, i64::MAX, i64::MIN] {
        let mut out = Vec::new();
        leb(&mut out, n, true);
        assert_eq!(Reader(&out).sleb(), Ok(n), "{n}");
    }
}

#[test]
fn malformed_framing_is_an_error_not_a_panic() {
    assert_eq!(check(&[&b""[..]], 1 << 20), Ok(()), "an empty entry holds no chunk");
    let cases: [&[u8]; 4] = [
        b"not a chunk at all",
        &[0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 9, 0],
        &[0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, DOCUMENT, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        &[0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, DOCUMENT, 3, 0xff, 0xff, 0x0f],
    ];
    for case in cases {
        assert!(matches!(check(&[case], 1 << 20), Err(ChunkError::Malformed(_))), "{case:?}");
    }
}

/// Every message of a real sync passes.
mod sync_messages {
    use automerge::sync::SyncDoc;
    use automerge::transaction::Transactable;

    #[test]
    fn every_message_of_a_real_sync_passes() {
        let mut a = automerge::Automerge::new();
        let mut b = automerge::Automerge::new();
        for i in 0..50 {
            let mut tx = a.transaction();
            tx.put(automerge::ROOT, format!("a{i}"), "x".repeat(i)).unwrap();
            tx.commit();
            let mut tx = b.transaction();
            tx.put(automerge::ROOT, format!("b{i}"), i as i64).unwrap();
            tx.commit();
        }
        let (mut sa, mut sb) = (automerge::sync::State::new(), automerge::sync::State::new());
        for _ in 0..20 {
            let mut quiet = true;
            if let Some(m) = a.generate_sync_message(&mut sa) {
                quiet = false;
                for c in m.changes.iter() {
                    assert_eq!(
                        super::read(&[c], 1 << 30).map(drop),
                        Ok(()),
                        "chunk type {}",
                        c.get(8).copied().unwrap_or(255)
                    );
                }
                b.receive_sync_message(&mut sb, m).unwrap();
            }
            if let Some(m) = b.generate_sync_message(&mut sb) {
                quiet = false;
                for c in m.changes.iter() {
                    assert_eq!(
                        super::read(&[c], 1 << 30).map(drop),
                        Ok(()),
                        "chunk type {}",
                        c.get(8).copied().unwrap_or(255)
                    );
                }
                a.receive_sync_message(&mut sa, m).unwrap();
            }
            if quiet {
                break;
            }
        }
        assert_eq!(a.get_heads(), b.get_heads());
    }
}

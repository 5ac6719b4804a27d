//! The change chunks of a sync message, checked without trusting them.
//!
//! One entry of a sync message's change list may hold several Automerge chunks back to back
//! (Automerge itself joins the entries and loads them incrementally), each a change, a
//! compressed change, a bundle of changes, or a whole saved document.
//!
//! Automerge inflates compressed changes and the compressed columns of documents and bundles
//! with an unbounded `read_to_end`, and checks the checksum only afterwards: a few megabytes of
//! DEFLATE can claim gigabytes (a ratio of about 1000:1). So before any chunk reaches Automerge,
//! [`check`] walks the chunk framing and column metadata (the binary format's public layout,
//! <https://automerge.org/automerge-binary-format-spec/>) and inflates every compressed part
//! into a sink, counting, stopping as soon as the total passes a budget. Only then does it let
//! Automerge decode each chunk.

use std::io::Read;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const DOCUMENT: u8 = 0;
const CHANGE: u8 = 1;
const COMPRESSED_CHANGE: u8 = 2;
const BUNDLE: u8 = 3;
/// The bit of a column specification that marks its data as DEFLATE-compressed.
const DEFLATE_BIT: u32 = 0b1000;

/// Why a sync message's changes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The chunk framing or column metadata does not parse.
    #[error("malformed chunk: {0}")]
    Malformed(&'static str),
    /// Decompressed, the changes would exceed the budget.
    #[error("the changes would take more than {limit} bytes decompressed")]
    TooLarge {
        /// The budget, in bytes.
        limit: u64,
    },
    /// The chunk is well framed but Automerge cannot decode it.
    #[error("undecodable changes ({0})")]
    Undecodable(String),
}

/// One chunk: its type and its bytes (header included).
struct Chunk<'a> {
    kind: u8,
    bytes: &'a [u8],
    body: &'a [u8],
}

/// Checks every chunk of `entries`: first that all of them together inflate to at most `limit`
/// bytes, then that Automerge decodes each one.
pub(crate) fn check(entries: &[&[u8]], limit: u64) -> Result<(), ChunkError> {
    let mut budget = Budget { left: limit, limit };
    for entry in entries {
        for chunk in split(entry) {
            budget.charge(&chunk?)?;
        }
    }
    for entry in entries {
        for chunk in split(entry) {
            decode(&chunk?)?;
        }
    }
    Ok(())
}

/// The chunks laid end to end in `bytes`.
fn split(bytes: &[u8]) -> impl Iterator<Item = Result<Chunk<'_>, ChunkError>> {
    let mut rest = Reader(bytes);
    std::iter::from_fn(move || {
        if rest.0.is_empty() {
            return None;
        }
        let start = rest.0;
        let chunk = (|| {
            if rest.take(4)? != MAGIC {
                return Err(ChunkError::Malformed("not an Automerge chunk"));
            }
            rest.take(4)?; // checksum: Automerge verifies it
            let kind = rest.take(1)?[0];
            let len = usize::try_from(rest.uleb()?).map_err(|_| ChunkError::Malformed("chunk length"))?;
            let body = rest.take(len)?;
            let whole = start.len() - rest.0.len();
            Ok(Chunk { kind, bytes: &start[..whole], body })
        })();
        if chunk.is_err() {
            rest.0 = &[]; // stop after the first error
        }
        Some(chunk)
    })
}

/// Whether Automerge decodes the chunk on its own (a change does not need its dependencies).
fn decode(chunk: &Chunk<'_>) -> Result<(), ChunkError> {
    let undecodable = |e: &dyn std::fmt::Display| ChunkError::Undecodable(e.to_string());
    match chunk.kind {
        CHANGE | COMPRESSED_CHANGE => {
            automerge::Change::from_bytes(chunk.bytes.to_vec()).map(drop).map_err(|e| undecodable(&e))
        }
        BUNDLE => automerge::Bundle::try_from(chunk.bytes)
            .map_err(|e| undecodable(&e))
            .and_then(|b| b.to_changes().map(drop).map_err(|e| undecodable(&e))),
        DOCUMENT => automerge::Automerge::load(chunk.bytes).map(drop).map_err(|e| undecodable(&e)),
        _ => Err(ChunkError::Malformed("unknown chunk type")),
    }
}

struct Budget {
    left: u64,
    limit: u64,
}

impl Budget {
    fn spend(&mut self, n: u64) -> Result<(), ChunkError> {
        self.left = self.left.checked_sub(n).ok_or(ChunkError::TooLarge { limit: self.limit })?;
        Ok(())
    }

    /// Inflates `data` into nothing, spending what it produces; never produces more than is left.
    fn inflate(&mut self, data: &[u8]) -> Result<(), ChunkError> {
        let mut decoder = flate2::read::DeflateDecoder::new(data).take(self.left.saturating_add(1));
        let produced = std::io::copy(&mut decoder, &mut std::io::sink())
            .map_err(|_| ChunkError::Malformed("invalid DEFLATE data"))?;
        self.spend(produced)
    }

    /// Spends what the chunk takes decompressed.
    fn charge(&mut self, chunk: &Chunk<'_>) -> Result<(), ChunkError> {
        let mut b = Reader(chunk.body);
        match chunk.kind {
            CHANGE => self.spend(chunk.body.len() as u64),
            COMPRESSED_CHANGE => self.inflate(chunk.body),
            DOCUMENT => {
                b.actors()?;
                b.hashes()?;
                let changes = b.columns()?;
                let ops = b.columns()?;
                b.column_data(&changes, self)?;
                b.column_data(&ops, self)
            }
            BUNDLE => {
                b.hashes()?;
                b.actors()?;
                let changes = b.columns()?;
                b.column_data(&changes, self)?;
                let ops = b.columns()?;
                b.column_data(&ops, self)
            }
            _ => Err(ChunkError::Malformed("unknown chunk type")),
        }
    }
}

/// A cursor over untrusted bytes: every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ChunkError> {
        if n > self.0.len() {
            return Err(ChunkError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn uleb(&mut self) -> Result<u64, ChunkError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ChunkError::Malformed("integer too long"))
    }

    fn count(&mut self) -> Result<usize, ChunkError> {
        usize::try_from(self.uleb()?).map_err(|_| ChunkError::Malformed("count"))
    }

    /// Length-prefixed actor ids. Each consumes at least one byte, so a huge count fails fast.
    fn actors(&mut self) -> Result<(), ChunkError> {
        for _ in 0..self.count()? {
            let len = self.count()?;
            self.take(len)?;
        }
        Ok(())
    }

    /// Length-prefixed 32-byte change hashes.
    fn hashes(&mut self) -> Result<(), ChunkError> {
        let n = self.count()?;
        self.take(n.checked_mul(32).ok_or(ChunkError::Malformed("count"))?)?;
        Ok(())
    }

    /// Column metadata: (specification, data length) pairs.
    fn columns(&mut self) -> Result<Vec<(u32, usize)>, ChunkError> {
        let n = self.count()?;
        let mut columns = Vec::new();
        for _ in 0..n {
            let spec = u32::try_from(self.uleb()?).map_err(|_| ChunkError::Malformed("column specification"))?;
            columns.push((spec, self.count()?));
        }
        Ok(columns)
    }

    /// The columns' data, inflating the compressed ones.
    fn column_data(&mut self, columns: &[(u32, usize)], budget: &mut Budget) -> Result<(), ChunkError> {
        for &(spec, len) in columns {
            let data = self.take(len)?;
            if spec & DEFLATE_BIT != 0 {
                budget.inflate(data)?;
            } else {
                budget.spend(len as u64)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;

    use super::*;

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
        assert!(matches!(check(&[damaged.as_slice()], 1 << 20), Err(ChunkError::Undecodable(_))));
        assert!(matches!(check(&[&joined[..joined.len() - 1]], 1 << 20), Err(ChunkError::Malformed("truncated"))));
    }

    #[test]
    fn a_deflate_bomb_is_refused_after_inflating_only_the_budget() {
        // 64 MiB of zeros compress to about 64 KiB.
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut encoder, &vec![0u8; 64 << 20]).unwrap();
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        let mut chunk = MAGIC.to_vec();
        chunk.extend([0, 0, 0, 0, COMPRESSED_CHANGE]);
        let mut len = bomb.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                chunk.push(byte);
                break;
            }
            chunk.push(byte | 0x80);
        }
        chunk.extend(&bomb);
        assert_eq!(check(&[chunk.as_slice()], 1 << 20), Err(ChunkError::TooLarge { limit: 1 << 20 }));
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
}

#[cfg(test)]
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
                    assert_eq!(super::check(&[c], 1 << 30), Ok(()), "chunk type {}", c.get(8).copied().unwrap_or(255));
                }
                b.receive_sync_message(&mut sb, m).unwrap();
            }
            if let Some(m) = b.generate_sync_message(&mut sb) {
                quiet = false;
                for c in m.changes.iter() {
                    assert_eq!(super::check(&[c], 1 << 30), Ok(()), "chunk type {}", c.get(8).copied().unwrap_or(255));
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

//! The change chunks of a sync message, checked without trusting them.
//!
//! One entry of a sync message's change list may hold several Automerge chunks back to back
//! (Automerge itself joins the entries and loads them incrementally), each a change, a
//! compressed change, a bundle of changes, or a whole saved document.
//!
//! Automerge inflates compressed changes and the compressed columns of documents and bundles
//! with an unbounded `read_to_end`, and checks the checksum only afterwards: a few megabytes of
//! DEFLATE can claim gigabytes (a ratio of about 1000:1). And its columns are run-length
//! encoded: a few bytes can claim ten million operations, each of which Automerge decodes and
//! allocates. So before any chunk reaches Automerge, [`check`] walks the chunk framing and
//! column metadata (the binary format's public layout,
//! <https://automerge.org/automerge-binary-format-spec/>), inflates every compressed part
//! (stopping as soon as the total passes a budget), sums each column's run lengths, and charges
//! the budget for the bytes and for the rows. Then it checks each chunk's checksum (Automerge's
//! `Change::try_from` does not, and when it applies changes to a document with history it drops
//! a chunk whose checksum is wrong with only a warning), and only then does it let Automerge
//! decode each chunk.
//!
//! The same walk tells the relay what each change is (its hash and its dependencies) without
//! Automerge decoding its operations: [`carried`].

use std::io::Read;

use automerge::ChangeHash;
use sha2::{Digest, Sha256};

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
    /// The chunk claims far more operations than its size allows: run-length encoding lets a
    /// few bytes claim millions of rows, each of which costs decoding and applying time.
    #[error(
        "refused: rule \"ops\": a {bytes}-byte chunk claims {rows} operations; at most {limit} fit a chunk that size ({ROWS_PER_BYTE} per byte plus {ROWS_BASE})"
    )]
    TooManyOps {
        /// The chunk's size on the wire.
        bytes: usize,
        /// The rows it claims.
        rows: u64,
        /// The most it may claim.
        limit: u64,
    },
    /// The chunk's checksum does not match its contents: damaged on the way, or forged.
    #[error("a change's checksum does not match its contents (damaged or forged); send it again, unaltered")]
    BadChecksum,
    /// The chunk is well framed but Automerge cannot decode it.
    #[error("undecodable changes ({0})")]
    Undecodable(String),
}

/// One chunk of a sync message's changes, as [`carried_changes`](super::carried_changes) reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carried {
    /// A change (a bundle's changes come one by one).
    Change(CarriedChange),
    /// A whole saved document: its own history from the start, so it needs nothing else.
    Document(Vec<u8>),
}

/// A change a sync message carries, known by its framing only (its operations not decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarriedChange {
    /// Its hash (its identity in the document's history).
    pub hash: ChangeHash,
    /// The changes it depends on.
    pub deps: Vec<ChangeHash>,
    /// The chunk as it arrived (compressed, if it was).
    pub bytes: Vec<u8>,
    /// What it would take decompressed and decoded, as the per-message budget counts it.
    pub cost: u64,
}

/// One chunk: its type and its bytes (header included).
struct Chunk<'a> {
    kind: u8,
    bytes: &'a [u8],
    body: &'a [u8],
}

/// Checks every chunk of `entries`: first that all of them together inflate to at most `limit`
/// bytes, claim no more rows than their size allows and carry checksums that match, then that
/// Automerge decodes each one; returns the changes they hold, in order.
pub(crate) fn decode_all(entries: &[&[u8]], limit: u64) -> Result<Vec<automerge::Change>, ChunkError> {
    let chunks: Vec<Chunk<'_>> = entries.iter().flat_map(|entry| split(entry)).collect::<Result<_, _>>()?;
    let mut budget = Budget { left: limit, limit };
    for chunk in &chunks {
        let inflated = budget.charge(chunk)?;
        verify(chunk, inflated.as_deref())?;
    }
    let mut changes = Vec::new();
    for chunk in &chunks {
        changes.extend(decode(chunk)?);
    }
    Ok(changes)
}

/// What each chunk of `entries` is: each change with its hash, dependencies and cost (a bundle's
/// changes decoded one by one), each document as it is. The budget and the checksums are
/// checked as in [`decode_all`]; operations are not decoded (that is [`decode_all`]'s job).
pub(crate) fn carried(entries: &[&[u8]], limit: u64) -> Result<Vec<Carried>, ChunkError> {
    let mut budget = Budget { left: limit, limit };
    let mut out = Vec::new();
    for chunk in entries.iter().flat_map(|entry| split(entry)) {
        let chunk = chunk?;
        let before = budget.left;
        let inflated = budget.charge(&chunk)?;
        let hash = verify(&chunk, inflated.as_deref())?;
        let cost = before - budget.left;
        match chunk.kind {
            CHANGE | COMPRESSED_CHANGE => {
                let deps = Reader(inflated.as_deref().unwrap_or(chunk.body)).deps()?;
                out.push(Carried::Change(CarriedChange { hash, deps, bytes: chunk.bytes.to_vec(), cost }));
            }
            BUNDLE => {
                let bundle =
                    automerge::Bundle::try_from(chunk.bytes).map_err(|e| ChunkError::Undecodable(e.to_string()))?;
                for change in bundle.to_changes().map_err(|e| ChunkError::Undecodable(e.to_string()))? {
                    let bytes = change.raw_bytes().to_vec();
                    let cost = (bytes.len() as u64).saturating_add((change.len() as u64).saturating_mul(ROW_COST));
                    let deps = change.deps().to_vec();
                    out.push(Carried::Change(CarriedChange { hash: change.hash(), deps, bytes, cost }));
                }
            }
            _ => out.push(Carried::Document(chunk.bytes.to_vec())),
        }
    }
    Ok(out)
}

/// The hash Automerge gives a chunk: SHA-256 of its type, its length (LEB128) and its body. A
/// chunk's checksum is the first four bytes of it, and a change's hash is its identity.
fn hash(kind: u8, body: &[u8]) -> ChangeHash {
    let mut header = vec![kind];
    let mut len = body.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            header.push(byte);
            break;
        }
        header.push(byte | 0x80);
    }
    ChangeHash(Sha256::new().chain_update(&header).chain_update(body).finalize().into())
}

/// Checks a chunk's checksum (a compressed change's is its inflated change's, passed as
/// `inflated`); returns the chunk's hash.
fn verify(chunk: &Chunk<'_>, inflated: Option<&[u8]>) -> Result<ChangeHash, ChunkError> {
    let hash = match inflated {
        Some(body) => hash(CHANGE, body),
        None => hash(chunk.kind, chunk.body),
    };
    if hash.0[..4] == chunk.bytes[4..8] { Ok(hash) } else { Err(ChunkError::BadChecksum) }
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

/// Decodes one chunk on its own (a change does not need its dependencies) into its changes.
fn decode(chunk: &Chunk<'_>) -> Result<Vec<automerge::Change>, ChunkError> {
    let undecodable = |e: &dyn std::fmt::Display| ChunkError::Undecodable(e.to_string());
    match chunk.kind {
        CHANGE | COMPRESSED_CHANGE => {
            automerge::Change::from_bytes(chunk.bytes.to_vec()).map(|c| vec![c]).map_err(|e| undecodable(&e))
        }
        BUNDLE => automerge::Bundle::try_from(chunk.bytes)
            .map_err(|e| undecodable(&e))
            .and_then(|b| b.to_changes().map_err(|e| undecodable(&e))),
        DOCUMENT => {
            automerge::Automerge::load(chunk.bytes).map(|doc| doc.get_changes(&[])).map_err(|e| undecodable(&e))
        }
        _ => Err(ChunkError::Malformed("unknown chunk type")),
    }
}

/// What one encoded row (an operation, or a change's metadata) counts against the budget: a
/// run-length encoded column can claim millions of rows in a few bytes, and Automerge decodes
/// (and allocates) every one of them.
const ROW_COST: u64 = 64;

/// How many rows a chunk may claim: [`ROWS_BASE`] plus [`ROWS_PER_BYTE`] per byte of the chunk
/// as sent. Every operation Cairn writes carries a key of its own and most a record, so even
/// compressed an honest change takes well over a byte per operation (the differential tests run
/// Cairn's own writes through this); a change that claims more is a few bytes of run-length
/// encoding asking for seconds of work.
pub(crate) const ROWS_PER_BYTE: u64 = 16;
/// See [`ROWS_PER_BYTE`].
pub(crate) const ROWS_BASE: u64 = 1024;

/// Column types (the low three bits of a column specification).
mod column {
    pub(super) const GROUP: u32 = 0;
    pub(super) const ACTOR: u32 = 1;
    pub(super) const ULEB: u32 = 2;
    pub(super) const DELTA: u32 = 3;
    pub(super) const BOOLEAN: u32 = 4;
    pub(super) const STRING: u32 = 5;
    pub(super) const VALUE_METADATA: u32 = 6;
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

    /// Inflates `data`, spending what it produces; never produces more than is left.
    fn inflate(&mut self, data: &[u8]) -> Result<Vec<u8>, ChunkError> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(data)
            .take(self.left.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|_| ChunkError::Malformed("invalid DEFLATE data"))?;
        self.spend(out.len() as u64)?;
        Ok(out)
    }

    /// Spends the chunk's bytes (a compressed change's inflated), what its compressed columns
    /// inflate to, and what its rows take decoded. Returns a compressed change's body inflated.
    fn charge(&mut self, chunk: &Chunk<'_>) -> Result<Option<Vec<u8>>, ChunkError> {
        if chunk.kind != COMPRESSED_CHANGE {
            self.spend(chunk.body.len() as u64)?;
        }
        let (rows, inflated) = self.rows(chunk)?;
        let limit = ROWS_BASE.saturating_add(ROWS_PER_BYTE.saturating_mul(chunk.bytes.len() as u64));
        if rows > limit {
            return Err(ChunkError::TooManyOps { bytes: chunk.bytes.len(), rows, limit });
        }
        Ok(inflated)
    }

    /// Spends what a chunk's compressed parts inflate to; returns the rows it claims, and a
    /// compressed change's body inflated.
    fn rows(&mut self, chunk: &Chunk<'_>) -> Result<(u64, Option<Vec<u8>>), ChunkError> {
        match chunk.kind {
            CHANGE => Ok((self.change_rows(chunk.body)?, None)),
            COMPRESSED_CHANGE => {
                let body = self.inflate(chunk.body)?;
                Ok((self.change_rows(&body)?, Some(body)))
            }
            DOCUMENT => {
                let mut b = Reader(chunk.body);
                b.actors()?;
                b.hashes()?;
                let changes = b.columns()?;
                let ops = b.columns()?;
                Ok((self.columns(&mut b, &changes)?.saturating_add(self.columns(&mut b, &ops)?), None))
            }
            BUNDLE => {
                let mut b = Reader(chunk.body);
                b.hashes()?;
                b.actors()?;
                let changes = b.columns()?;
                let change_rows = self.columns(&mut b, &changes)?;
                let ops = b.columns()?;
                Ok((change_rows.saturating_add(self.columns(&mut b, &ops)?), None))
            }
            _ => Err(ChunkError::Malformed("unknown chunk type")),
        }
    }

    /// Charges the rows of a change's operation columns (a change is compressed whole, if at
    /// all, never column by column).
    fn change_rows(&mut self, body: &[u8]) -> Result<u64, ChunkError> {
        let mut b = Reader(body);
        b.hashes()?; // dependencies
        let len = b.count()?;
        b.take(len)?; // actor
        b.uleb()?; // sequence number
        b.uleb()?; // start op
        b.uleb()?; // time (signed, but only skipped here)
        let len = b.count()?;
        b.take(len)?; // message
        b.actors()?; // other actors
        let ops = b.columns()?;
        self.columns(&mut b, &ops)
    }

    /// Spends what the columns' compressed data inflates to, and their rows (the most any
    /// column holds), which it returns.
    fn columns(&mut self, b: &mut Reader<'_>, columns: &[(u32, usize)]) -> Result<u64, ChunkError> {
        let mut rows = 0;
        for &(spec, len) in columns {
            let data = b.take(len)?;
            let n = if spec & DEFLATE_BIT != 0 {
                column_rows(spec, &self.inflate(data)?)?
            } else {
                column_rows(spec, data)?
            };
            rows = rows.max(n);
        }
        self.spend(rows.saturating_mul(ROW_COST))?;
        Ok(rows)
    }
}

/// How many rows a column's (decompressed) data encodes, without decoding them one by one: the
/// lengths of its runs summed. Raw value bytes encode no rows of their own.
fn column_rows(spec: u32, data: &[u8]) -> Result<u64, ChunkError> {
    let mut r = Reader(data);
    let mut rows = 0u64;
    let value = |r: &mut Reader<'_>| -> Result<(), ChunkError> {
        match spec & 0b111 {
            column::STRING => {
                let len = r.count()?;
                r.take(len).map(drop)
            }
            _ => r.uleb().map(drop), // unsigned and signed LEB128 end the same way
        }
    };
    match spec & 0b111 {
        // Run lengths, alternately of false and true.
        column::BOOLEAN => {
            while !r.0.is_empty() {
                rows = rows.saturating_add(r.uleb()?);
            }
        }
        column::GROUP | column::ACTOR | column::ULEB | column::DELTA | column::STRING | column::VALUE_METADATA => {
            // Runs: n > 0 repeats one value n times, n < 0 lists -n values, 0 is a run of nulls.
            while !r.0.is_empty() {
                let n = r.sleb()?;
                match n {
                    0 => rows = rows.saturating_add(r.uleb()?),
                    n if n > 0 => {
                        value(&mut r)?;
                        rows = rows.saturating_add(n.unsigned_abs());
                    }
                    n => {
                        for _ in 0..n.unsigned_abs() {
                            value(&mut r)?; // each literal takes at least a byte: bounded by the data
                        }
                        rows = rows.saturating_add(n.unsigned_abs());
                    }
                }
            }
        }
        _ => {}
    }
    Ok(rows)
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

    /// A LEB128 integer's low 64 bits, and how many bits it was written with.
    fn leb(&mut self) -> Result<(u64, u32), ChunkError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                return Ok((value, shift + 7));
            }
        }
        Err(ChunkError::Malformed("integer too long"))
    }

    fn uleb(&mut self) -> Result<u64, ChunkError> {
        Ok(self.leb()?.0)
    }

    fn sleb(&mut self) -> Result<i64, ChunkError> {
        let (value, bits) = self.leb()?;
        // Sign-extend from the last bit written (as u64 -> i64, the bits are reinterpreted).
        let negative = bits < 64 && (value >> (bits - 1)) & 1 == 1;
        Ok(if negative { value | (u64::MAX << bits) } else { value } as i64)
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
    fn hashes(&mut self) -> Result<&'a [u8], ChunkError> {
        let n = self.count()?;
        self.take(n.checked_mul(32).ok_or(ChunkError::Malformed("count"))?)
    }

    /// A change's dependencies: the hashes its body starts with.
    fn deps(&mut self) -> Result<Vec<ChangeHash>, ChunkError> {
        let bytes = self.hashes()?;
        Ok(bytes.chunks_exact(32).map(|h| ChangeHash(h.try_into().expect("32 bytes"))).collect())
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
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;

    use super::*;

    fn check(entries: &[&[u8]], limit: u64) -> Result<(), ChunkError> {
        decode_all(entries, limit).map(drop)
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
        leb(&mut body, (4 << 4) | i64::from(column::ULEB), false);
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
                    assert_eq!(
                        super::decode_all(&[c], 1 << 30).map(drop),
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
                        super::decode_all(&[c], 1 << 30).map(drop),
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

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
//! allocates. So before any chunk reaches Automerge, [`read`] walks the chunk framing and
//! column metadata (the binary format's public layout,
//! <https://automerge.org/automerge-binary-format-spec/>), inflates every compressed part
//! (stopping as soon as the total passes a budget), sums each column's run lengths, and charges
//! the budget for the bytes and for the rows. Then it checks each chunk's checksum (Automerge's
//! `Change::try_from` does not, and when it applies changes to a document with history it drops
//! a chunk whose checksum is wrong with only a warning), and only then does it let Automerge
//! decode each chunk.
//!
//! The same walk tells the relay what each change is (its hash, dependencies and cost), for the
//! changes it holds back until their dependencies arrive: [`Decoded::carried`].
//!
//! `budget.rs` charges the budget (bytes and rows); `reader.rs` is the bounds-checked cursor
//! both walks read with.

mod budget;
mod reader;

use automerge::ChangeHash;
use sha2::{Digest, Sha256};

use budget::{Budget, ROW_COST};
pub(crate) use budget::{ROWS_BASE, ROWS_PER_BYTE};
use reader::Reader;

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

/// One chunk of a sync message's changes, as the relay reads it (its hash, dependencies and cost).
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

/// What a sync message's changes hold: the changes themselves, decoded (for the schema check),
/// and what each chunk is by its framing (for the relay's held changes).
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// Every change, in order (a bundle's and a saved document's one by one).
    pub changes: Vec<automerge::Change>,
    /// Each change with its hash, dependencies and cost, and each whole document as it is.
    pub carried: Vec<Carried>,
}

/// Checks every chunk of `entries`: first that all of them together inflate to at most `limit`
/// bytes, claim no more rows than their size allows and carry checksums that match, then that
/// Automerge decodes each one. One walk serves both the schema check and the held changes.
pub(crate) fn read(entries: &[&[u8]], limit: u64) -> Result<Decoded, ChunkError> {
    let chunks: Vec<Chunk<'_>> = entries.iter().flat_map(|entry| split(entry)).collect::<Result<_, _>>()?;
    let mut budget = Budget { left: limit, limit };
    let mut charged = Vec::with_capacity(chunks.len());
    for chunk in &chunks {
        let before = budget.left;
        let inflated = budget.charge(chunk)?;
        let hash = verify(chunk, inflated.as_deref())?;
        charged.push((hash, before - budget.left, inflated));
    }
    let mut out = Decoded::default();
    for (chunk, (hash, cost, inflated)) in chunks.iter().zip(charged) {
        let changes = decode(chunk)?;
        match chunk.kind {
            CHANGE | COMPRESSED_CHANGE => {
                let deps = Reader(inflated.as_deref().unwrap_or(chunk.body)).deps()?;
                out.carried.push(Carried::Change(CarriedChange { hash, deps, bytes: chunk.bytes.to_vec(), cost }));
            }
            BUNDLE => {
                for change in &changes {
                    let bytes = change.raw_bytes().to_vec();
                    let cost = (bytes.len() as u64).saturating_add((change.len() as u64).saturating_mul(ROW_COST));
                    let deps = change.deps().to_vec();
                    out.carried.push(Carried::Change(CarriedChange { hash: change.hash(), deps, bytes, cost }));
                }
            }
            _ => out.carried.push(Carried::Document(chunk.bytes.to_vec())),
        }
        out.changes.extend(changes);
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

#[cfg(test)]
mod tests;

//! The budget a sync message's changes are charged against before Automerge decodes them:
//! the bytes their compressed parts inflate to, and the rows their columns claim.

use std::io::Read;

use super::reader::Reader;
use super::{BUNDLE, CHANGE, COMPRESSED_CHANGE, Chunk, ChunkError, DEFLATE_BIT, DOCUMENT};

/// What one encoded row (an operation, or a change's metadata) counts against the budget: a
/// run-length encoded column can claim millions of rows in a few bytes, and Automerge decodes
/// (and allocates) every one of them.
pub(super) const ROW_COST: u64 = 64;

/// How many rows a chunk may claim: [`ROWS_BASE`] plus [`ROWS_PER_BYTE`] per byte of the chunk
/// as sent. Every operation Cairn writes carries a key of its own and most a record, so even
/// compressed an honest change takes well over a byte per operation (the differential tests run
/// Cairn's own writes through this); a change that claims more is a few bytes of run-length
/// encoding asking for seconds of work.
pub(crate) const ROWS_PER_BYTE: u64 = 16;
/// See [`ROWS_PER_BYTE`].
pub(crate) const ROWS_BASE: u64 = 1024;

/// Column types (the low three bits of a column specification).
pub(super) mod column {
    pub(in crate::sync::chunks) const GROUP: u32 = 0;
    pub(in crate::sync::chunks) const ACTOR: u32 = 1;
    pub(in crate::sync::chunks) const ULEB: u32 = 2;
    pub(in crate::sync::chunks) const DELTA: u32 = 3;
    pub(in crate::sync::chunks) const BOOLEAN: u32 = 4;
    pub(in crate::sync::chunks) const STRING: u32 = 5;
    pub(in crate::sync::chunks) const VALUE_METADATA: u32 = 6;
}

pub(super) struct Budget {
    pub(super) left: u64,
    pub(super) limit: u64,
}

impl Budget {
    pub(super) fn spend(&mut self, n: u64) -> Result<(), ChunkError> {
        self.left = self.left.checked_sub(n).ok_or(ChunkError::TooLarge { limit: self.limit })?;
        Ok(())
    }

    /// Inflates `data`, spending what it produces; never produces more than is left.
    pub(super) fn inflate(&mut self, data: &[u8]) -> Result<Vec<u8>, ChunkError> {
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
    pub(super) fn charge(&mut self, chunk: &Chunk<'_>) -> Result<Option<Vec<u8>>, ChunkError> {
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

//! A bounds-checked cursor over untrusted chunk bytes.

use automerge::ChangeHash;

use super::ChunkError;

/// A cursor over untrusted bytes: every read is bounds-checked.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], ChunkError> {
        if n > self.0.len() {
            return Err(ChunkError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// A LEB128 integer's low 64 bits, and how many bits it was written with.
    pub(super) fn leb(&mut self) -> Result<(u64, u32), ChunkError> {
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

    pub(super) fn uleb(&mut self) -> Result<u64, ChunkError> {
        Ok(self.leb()?.0)
    }

    pub(super) fn sleb(&mut self) -> Result<i64, ChunkError> {
        let (value, bits) = self.leb()?;
        // Sign-extend from the last bit written (as u64 -> i64, the bits are reinterpreted).
        let negative = bits < 64 && (value >> (bits - 1)) & 1 == 1;
        Ok(if negative { value | (u64::MAX << bits) } else { value } as i64)
    }

    pub(super) fn count(&mut self) -> Result<usize, ChunkError> {
        usize::try_from(self.uleb()?).map_err(|_| ChunkError::Malformed("count"))
    }

    /// Length-prefixed actor ids. Each consumes at least one byte, so a huge count fails fast.
    pub(super) fn actors(&mut self) -> Result<(), ChunkError> {
        for _ in 0..self.count()? {
            let len = self.count()?;
            self.take(len)?;
        }
        Ok(())
    }

    /// Length-prefixed 32-byte change hashes.
    pub(super) fn hashes(&mut self) -> Result<&'a [u8], ChunkError> {
        let n = self.count()?;
        self.take(n.checked_mul(32).ok_or(ChunkError::Malformed("count"))?)
    }

    /// A change's dependencies: the hashes its body starts with.
    pub(super) fn deps(&mut self) -> Result<Vec<ChangeHash>, ChunkError> {
        let bytes = self.hashes()?;
        Ok(bytes.chunks_exact(32).map(|h| ChangeHash(h.try_into().expect("32 bytes"))).collect())
    }

    /// Column metadata: (specification, data length) pairs.
    pub(super) fn columns(&mut self) -> Result<Vec<(u32, usize)>, ChunkError> {
        let n = self.count()?;
        let mut columns = Vec::new();
        for _ in 0..n {
            let spec = u32::try_from(self.uleb()?).map_err(|_| ChunkError::Malformed("column specification"))?;
            columns.push((spec, self.count()?));
        }
        Ok(columns)
    }
}

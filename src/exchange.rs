//! Offline exchange: move the changes one replica lacks to it through a file, no relay needed.
//!
//! Replica B hands A its [`Heads`]; A exports a [`Bundle`] of every change B lacks; B imports it.
//! For replicas that cannot reach each other over a network; the relay and peers use the
//! automerge-repo sync protocol instead (`sync/`). (`cairn export` and `cairn import` move the
//! reference memory server's `memory.jsonl`, not bundles.)

use std::collections::BTreeMap;

use automerge::{Change, ChangeHash};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::DocId;

/// A replica's heads, per document. Serialises as `{"<doc id>": ["<hex hash>", ...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heads {
    /// Heads per document.
    pub docs: BTreeMap<DocId, Vec<ChangeHash>>,
}

impl Serialize for Heads {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<String, Vec<String>> =
            self.docs.iter().map(|(d, hs)| (d.to_string(), hs.iter().map(|h| h.to_string()).collect())).collect();
        map.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Heads {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, Vec<String>>::deserialize(d)?;
        let mut docs = BTreeMap::new();
        for (doc, hashes) in map {
            let doc: DocId = doc.parse().map_err(serde::de::Error::custom)?;
            let hashes = hashes
                .iter()
                .map(|h| h.parse::<ChangeHash>().map_err(serde::de::Error::custom))
                .collect::<Result<Vec<_>, _>>()?;
            docs.insert(doc, hashes);
        }
        Ok(Heads { docs })
    }
}

/// The file magic of a bundle, with its format version.
const MAGIC: &[u8; 8] = b"CAIRNB01";

/// Changes for several documents. Binary layout: the magic `CAIRNB01`, then per document its
/// 16-byte id, a u32 (big-endian) change count, and per change a u32 length and the change's
/// Automerge encoding.
#[derive(Debug, Default)]
pub(crate) struct Bundle {
    pub(crate) docs: Vec<(DocId, Vec<Change>)>,
}

fn corrupt(what: impl Into<String>) -> Error {
    Error::CorruptChange(what.into())
}

impl Bundle {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (doc, changes) in &self.docs {
            out.extend_from_slice(doc.as_bytes());
            out.extend_from_slice(&(changes.len() as u32).to_be_bytes());
            for c in changes {
                let bytes = c.raw_bytes();
                out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                out.extend_from_slice(bytes);
            }
        }
        out
    }

    /// Parses and checks every change (each carries a checksum); any fault refuses the bundle.
    pub(crate) fn decode(mut input: &[u8]) -> Result<Bundle> {
        fn take<'a>(input: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8]> {
            if input.len() < n {
                return Err(corrupt(format!("bundle is truncated in {what}")));
            }
            let (head, rest) = input.split_at(n);
            *input = rest;
            Ok(head)
        }
        fn u32_be(input: &mut &[u8], what: &str) -> Result<usize> {
            let b = take(input, 4, what)?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        }
        if take(&mut input, MAGIC.len(), "its header")? != MAGIC {
            return Err(corrupt("not a Cairn change bundle (bad header)"));
        }
        let mut docs = Vec::new();
        while !input.is_empty() {
            let mut id = [0u8; 16];
            id.copy_from_slice(take(&mut input, 16, "a document id")?);
            let count = u32_be(&mut input, "a change count")?;
            let mut changes = Vec::with_capacity(count.min(1 << 16));
            for i in 0..count {
                let len = u32_be(&mut input, "a change length")?;
                let bytes = take(&mut input, len, "a change")?;
                let change = Change::from_bytes(bytes.to_vec())
                    .map_err(|e| corrupt(format!("change {i} of document {}: {e}", DocId(id))))?;
                changes.push(change);
            }
            docs.push((DocId(id), changes));
        }
        Ok(Bundle { docs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_serialise_as_readable_json() {
        let mut heads = Heads::default();
        heads.docs.insert(DocId([1; 16]), vec![ChangeHash([0xab; 32])]);
        let json = serde_json::to_string(&heads).unwrap();
        assert!(json.contains(&"ab".repeat(32)), "{json}");
        assert_eq!(serde_json::from_str::<Heads>(&json).unwrap(), heads);
    }

    #[test]
    fn truncated_or_foreign_bundles_are_refused() {
        assert!(matches!(Bundle::decode(b"hello"), Err(Error::CorruptChange(_))));
        assert!(matches!(Bundle::decode(b"NOTCAIRNxxxxx"), Err(Error::CorruptChange(_))));
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[0; 16]);
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&3u32.to_be_bytes());
        b.extend_from_slice(b"abc");
        assert!(matches!(Bundle::decode(&b), Err(Error::CorruptChange(m)) if m.contains("change 0")));
    }
}

//! Identifiers that cross boundaries: document ids (shared with automerge-repo) and versions
//! (handed back to a replica by its agents).

use std::fmt;
use std::str::FromStr;

/// Why an identifier string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// Not a base58check-encoded 16-byte automerge-repo document id.
    #[error("{0:?} is not an automerge-repo document id (base58check of 16 bytes)")]
    DocId(String),
    /// Not a version token as printed by a Cairn read.
    #[error("{0:?} is not a Cairn version; pass a version exactly as a read returned it (like v42.1f2e3d4c)")]
    Version(String),
}

/// An automerge-repo document id: 16 bytes, written as base58check (the form automerge-repo uses
/// in `automerge:` URLs and in every protocol message).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocId(pub(crate) [u8; 16]);

impl DocId {
    /// Wraps raw bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        DocId(bytes)
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The `automerge:` URL a JavaScript client passes to `repo.find`.
    pub fn url(&self) -> String {
        format!("automerge:{self}")
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).with_check().into_string())
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocId({self})")
    }
}

impl FromStr for DocId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("automerge:").unwrap_or(s);
        let bytes = bs58::decode(s).with_check(None).into_vec().map_err(|_| ParseIdError::DocId(s.to_owned()))?;
        let bytes: [u8; 16] = bytes.try_into().map_err(|_| ParseIdError::DocId(s.to_owned()))?;
        Ok(DocId(bytes))
    }
}

/// Defines a protocol id: an opaque string chosen by whoever it names, kept as it came.
macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }
    };
}

opaque_id!(
    /// A peer's id in the sync protocol (`senderId`, `targetId`): chosen by the peer for one
    /// connection, and meaningful only as an address within it.
    PeerId
);

opaque_id!(
    /// A storage's id in the sync protocol: names a peer's persistent storage (a replica file, a
    /// relay's data), stable across its connections, so that what a peer remembers about it stays
    /// right after a reconnect or a restart.
    StorageId
);

/// Identifies one replica database file. Versions carry it so that a version from another
/// replica is refused instead of silently meaning something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplicaId(pub(crate) u32);

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A position in a replica file's change log: how many changes it had logged (0: none). An
/// order of arrival in one file, not a time and not comparable across files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct LogPosition(pub(crate) i64);

impl LogPosition {
    /// The position as a number.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The causal version a read saw, as an opaque token (`v42.1f2e3d4c`).
///
/// A replica's change log is append-only and a change is only logged once all its dependencies
/// are, so "every change logged at or before position `seq`" is a causally closed set: exactly
/// the document heads the read saw. The token names that position in the replica database it
/// came from; hand it back to the same database (any process sharing the file) as `since` or as a
/// write precondition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    pub(crate) replica: ReplicaId,
    pub(crate) seq: LogPosition,
}

impl Version {
    /// The position in the replica's change log (how many changes it had logged).
    pub fn seq(&self) -> LogPosition {
        self.seq
    }

    /// The replica database this version belongs to.
    pub fn replica(&self) -> ReplicaId {
        self.replica
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}", self.seq, self.replica)
    }
}

impl FromStr for Version {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseIdError::Version(s.to_owned());
        let (seq, replica) = s.trim().strip_prefix('v').and_then(|r| r.split_once('.')).ok_or_else(err)?;
        let seq: i64 = seq.parse().map_err(|_| err())?;
        if seq < 0 || replica.len() != 8 {
            return Err(err());
        }
        let replica = u32::from_str_radix(replica, 16).map_err(|_| err())?;
        Ok(Version { replica: ReplicaId(replica), seq: LogPosition(seq) })
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_id_round_trips_through_base58check() {
        let id = DocId([7; 16]);
        let s = id.to_string();
        assert_eq!(s.parse::<DocId>().unwrap(), id);
        assert_eq!(id.url().parse::<DocId>().unwrap(), id);
        // A single changed character breaks the checksum.
        let mut broken = s.clone().into_bytes();
        broken[3] = if broken[3] == b'2' { b'3' } else { b'2' };
        assert!(String::from_utf8(broken).unwrap().parse::<DocId>().is_err());
    }

    #[test]
    fn version_round_trips_and_rejects_garbage() {
        let v = Version { replica: ReplicaId(0x1f2e3d4c), seq: LogPosition(42) };
        assert_eq!(v.to_string(), "v42.1f2e3d4c");
        assert_eq!("v42.1f2e3d4c".parse::<Version>().unwrap(), v);
        for bad in ["", "42.1f2e3d4c", "v-1.1f2e3d4c", "v1.xyz", "v1.1f2e3d4c5", "vx.1f2e3d4c"] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }
}

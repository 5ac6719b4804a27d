//! The automerge-repo websocket protocol's messages, and their CBOR encoding.
//!
//! One message is one CBOR map with text keys, sent as one binary websocket frame. Decoding is
//! tolerant where JavaScript peers are loose (`undefined` for absent fields, 16-bit map headers,
//! integers sent as floats, unknown keys) and strict where it matters (every required field
//! present and typed; unknown message types refused). Ids are parsed once, when a message is
//! decoded: a document id that is not one is a malformed message. See `docs/protocol.md`.
//! Decoding is `decode.rs`, encoding `encode.rs`.

mod decode;
mod encode;

use automerge::ChangeHash;

use crate::ids::{DocId, PeerId, StorageId};

/// The protocol version this implementation speaks.
pub const PROTOCOL_VERSION: &str = "1";

/// Deepest nesting of CBOR containers a message may have (real messages have three levels).
pub(super) const MAX_DEPTH: usize = 8;

/// Why bytes are not a protocol message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not well-formed CBOR.
    #[error("invalid CBOR: {0}")]
    Cbor(String),
    /// Well-formed, but not a map at the top.
    #[error("a message must be a CBOR map")]
    NotAMap,
    /// Nested deeper than any message needs.
    #[error("a message nests containers deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Bytes after the message.
    #[error("{0} bytes after the end of the message")]
    Trailing(usize),
    /// A required field is missing.
    #[error("{kind} message is missing its {field:?} field")]
    Missing {
        /// The message type.
        kind: String,
        /// The field.
        field: &'static str,
    },
    /// A field has the wrong type.
    #[error("field {field:?} should be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// A message type this implementation does not know.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
}

/// One head announcement: the heads a storage (a relay, a peer with storage) holds for a document.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteHeads {
    /// The storage the heads belong to.
    pub storage_id: StorageId,
    /// Its heads.
    pub heads: Vec<ChangeHash>,
    /// When it had them, in milliseconds since the Unix epoch.
    pub timestamp: f64,
}

/// A protocol message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Client → server: the handshake.
    Join {
        /// The client's peer id.
        sender: PeerId,
        /// The client's storage id, if it persists documents.
        storage_id: Option<StorageId>,
        /// Whether the client forgets everything when it disconnects.
        ephemeral: bool,
        /// Protocol versions the client speaks (absent means "1").
        versions: Option<Vec<String>>,
    },
    /// Server → client: the handshake answer.
    Peer {
        /// The server's peer id, used as `senderId` in every later message.
        sender: PeerId,
        /// The client's peer id.
        target: PeerId,
        /// The server's storage id.
        storage_id: Option<StorageId>,
        /// Whether the server is ephemeral.
        ephemeral: bool,
        /// The chosen protocol version.
        version: String,
    },
    /// A fatal protocol error; the sender closes the connection after it.
    Error {
        /// Who sends it, if known.
        sender: Option<PeerId>,
        /// Whom it is for, if known.
        target: Option<PeerId>,
        /// What went wrong.
        message: String,
    },
    /// A 1.x client leaving.
    Leave {
        /// The leaving peer.
        sender: PeerId,
    },
    /// "I have nothing of this document; do you?" — carries an Automerge sync message.
    Request {
        /// Sender peer id.
        sender: PeerId,
        /// Target peer id.
        target: PeerId,
        /// The document.
        doc: DocId,
        /// An Automerge sync message.
        data: Vec<u8>,
    },
    /// One step of the Automerge sync protocol for one document.
    Sync {
        /// Sender peer id.
        sender: PeerId,
        /// Target peer id.
        target: PeerId,
        /// The document.
        doc: DocId,
        /// An Automerge sync message.
        data: Vec<u8>,
    },
    /// The answer to a request for a document the server does not have (or will not share).
    DocUnavailable {
        /// Sender peer id.
        sender: PeerId,
        /// Target peer id.
        target: PeerId,
        /// The document.
        doc: DocId,
    },
    /// An application broadcast about a document (presence and the like), relayed as is.
    Ephemeral {
        /// The original sender.
        sender: PeerId,
        /// Target peer id.
        target: PeerId,
        /// The document.
        doc: DocId,
        /// Per-session sequence number.
        count: u64,
        /// The sender's session.
        session: String,
        /// The payload.
        data: Vec<u8>,
    },
    /// Subscribe to (or unsubscribe from) head announcements of storages.
    RemoteSubscriptionChange {
        /// Sender peer id.
        sender: PeerId,
        /// Target peer id.
        target: PeerId,
        /// Storage ids to start hearing about.
        add: Vec<StorageId>,
        /// Storage ids to stop hearing about.
        remove: Vec<StorageId>,
    },
    /// Head announcements for a document.
    RemoteHeadsChanged {
        /// Sender peer id.
        sender: PeerId,
        /// Target peer id.
        target: PeerId,
        /// The document.
        doc: DocId,
        /// The announcements.
        new_heads: Vec<RemoteHeads>,
    },
}

impl Message {
    /// The `type` field on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Join { .. } => "join",
            Message::Peer { .. } => "peer",
            Message::Error { .. } => "error",
            Message::Leave { .. } => "leave",
            Message::Request { .. } => "request",
            Message::Sync { .. } => "sync",
            Message::DocUnavailable { .. } => "doc-unavailable",
            Message::Ephemeral { .. } => "ephemeral",
            Message::RemoteSubscriptionChange { .. } => "remote-subscription-change",
            Message::RemoteHeadsChanged { .. } => "remote-heads-changed",
        }
    }
}

#[cfg(test)]
mod tests {
    use minicbor::Encoder;

    use super::decode::parse_head;
    use super::encode::encode_head;
    use super::*;

    fn doc() -> DocId {
        DocId::from_bytes([3; 16])
    }

    fn round_trip(m: Message) {
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn every_message_round_trips() {
        let s = || PeerId::from("peer-a");
        let t = || PeerId::from("relay");
        round_trip(Message::Join { sender: s(), storage_id: None, ephemeral: true, versions: Some(vec!["1".into()]) });
        round_trip(Message::Peer {
            sender: t(),
            target: s(),
            storage_id: Some("st".into()),
            ephemeral: false,
            version: "1".into(),
        });
        round_trip(Message::Error { sender: Some(t()), target: None, message: "no".into() });
        round_trip(Message::Leave { sender: s() });
        round_trip(Message::Request { sender: s(), target: t(), doc: doc(), data: vec![0x42, 0] });
        round_trip(Message::Sync { sender: s(), target: t(), doc: doc(), data: vec![1, 2, 3] });
        round_trip(Message::DocUnavailable { sender: t(), target: s(), doc: doc() });
        round_trip(Message::Ephemeral {
            sender: s(),
            target: t(),
            doc: doc(),
            count: 5,
            session: "x".into(),
            data: vec![9],
        });
        round_trip(Message::RemoteSubscriptionChange {
            sender: s(),
            target: t(),
            add: vec!["st".into()],
            remove: vec![],
        });
        round_trip(Message::RemoteHeadsChanged {
            sender: t(),
            target: s(),
            doc: doc(),
            new_heads: vec![RemoteHeads {
                storage_id: "st".into(),
                heads: vec![ChangeHash([7; 32])],
                timestamp: 1.75e12,
            }],
        });
    }

    #[test]
    fn decodes_a_join_frame_exactly_as_automerge_repo_sends_it() {
        // Captured from @automerge/automerge-repo 2.5.6 (cbor-x): 16-bit map headers and
        // `undefined` for the missing storage id.
        let mut frame = vec![0xb9, 0x00, 0x04];
        let text = |f: &mut Vec<u8>, s: &str| {
            f.push(0x60 + s.len() as u8);
            f.extend_from_slice(s.as_bytes());
        };
        text(&mut frame, "type");
        text(&mut frame, "join");
        text(&mut frame, "senderId");
        text(&mut frame, "peer-abc");
        text(&mut frame, "peerMetadata");
        frame.extend_from_slice(&[0xb9, 0x00, 0x02]);
        text(&mut frame, "storageId");
        frame.push(0xf7);
        text(&mut frame, "isEphemeral");
        frame.push(0xf5);
        frame.push(0x78);
        frame.push(25);
        frame.extend_from_slice(b"supportedProtocolVersions");
        frame.push(0x81);
        text(&mut frame, "1");
        assert_eq!(
            Message::decode(&frame).unwrap(),
            Message::Join {
                sender: "peer-abc".into(),
                storage_id: None,
                ephemeral: true,
                versions: Some(vec!["1".into()])
            }
        );
    }

    #[test]
    fn refuses_what_is_not_a_message() {
        assert!(matches!(Message::decode(b"hello"), Err(WireError::Cbor(_) | WireError::NotAMap)));
        assert!(matches!(Message::decode(&[0x01]), Err(WireError::NotAMap)));
        assert!(matches!(Message::decode(&[]), Err(WireError::Cbor(_))));
        let unknown = {
            let mut e = Encoder::new(Vec::new());
            e.map(1).unwrap().str("type").unwrap().str("teleport").unwrap();
            e.into_writer()
        };
        assert_eq!(Message::decode(&unknown), Err(WireError::UnknownType("teleport".into())));
        let missing = {
            let mut e = Encoder::new(Vec::new());
            e.map(2).unwrap().str("type").unwrap().str("sync").unwrap().str("senderId").unwrap().str("x").unwrap();
            e.into_writer()
        };
        assert!(matches!(Message::decode(&missing), Err(WireError::Missing { field: "targetId", .. })));
        // Deep nesting is refused, not recursed into without bound.
        let mut deep = vec![0xa1, 0x61, b'x'];
        deep.extend(std::iter::repeat_n(0x81, 100));
        deep.push(0x01);
        assert_eq!(Message::decode(&deep), Err(WireError::TooDeep));
        // Trailing garbage.
        let mut trailing = Message::Leave { sender: "a".into() }.encode();
        trailing.push(0);
        assert_eq!(Message::decode(&trailing), Err(WireError::Trailing(1)));
    }

    #[test]
    fn heads_are_written_as_automerge_repo_2_writes_them() {
        // The vector from automerge-repo: 31 zero bytes and a one.
        let mut h = [0u8; 32];
        h[31] = 1;
        assert_eq!(encode_head(&ChangeHash(h)), "11111111111111111111111111111118qjnEr");
        assert_eq!(parse_head("11111111111111111111111111111118qjnEr"), Some(ChangeHash(h)));
        assert_eq!(parse_head(&format!("{}01", "00".repeat(31))), Some(ChangeHash(h)), "1.x hex heads");
    }
}

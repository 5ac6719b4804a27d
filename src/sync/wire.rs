//! The automerge-repo websocket protocol's messages, and their CBOR encoding.
//!
//! One message is one CBOR map with text keys, sent as one binary websocket frame. Decoding is
//! tolerant where JavaScript peers are loose (`undefined` for absent fields, 16-bit map headers,
//! integers sent as floats, unknown keys) and strict where it matters (every required field
//! present and typed; unknown message types refused). See `docs/protocol.md`.

use std::collections::BTreeMap;

use automerge::ChangeHash;
use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

/// The protocol version this implementation speaks.
pub const PROTOCOL_VERSION: &str = "1";

/// Deepest nesting of CBOR containers a message may have (real messages have three levels).
const MAX_DEPTH: usize = 8;

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
    pub storage_id: String,
    /// Its heads.
    pub heads: Vec<ChangeHash>,
    /// When it had them, in milliseconds since the Unix epoch.
    pub timestamp: f64,
}

/// A protocol message. Peer, storage and document ids are strings as on the wire; document ids
/// are base58check text (see [`crate::DocId`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Client → server: the handshake.
    Join {
        /// The client's peer id.
        sender: String,
        /// The client's storage id, if it persists documents.
        storage_id: Option<String>,
        /// Whether the client forgets everything when it disconnects.
        ephemeral: bool,
        /// Protocol versions the client speaks (absent means "1").
        versions: Option<Vec<String>>,
    },
    /// Server → client: the handshake answer.
    Peer {
        /// The server's peer id, used as `senderId` in every later message.
        sender: String,
        /// The client's peer id.
        target: String,
        /// The server's storage id.
        storage_id: Option<String>,
        /// Whether the server is ephemeral.
        ephemeral: bool,
        /// The chosen protocol version.
        version: String,
    },
    /// A fatal protocol error; the sender closes the connection after it.
    Error {
        /// Who sends it, if known.
        sender: Option<String>,
        /// Whom it is for, if known.
        target: Option<String>,
        /// What went wrong.
        message: String,
    },
    /// A 1.x client leaving.
    Leave {
        /// The leaving peer.
        sender: String,
    },
    /// "I have nothing of this document; do you?" — carries an Automerge sync message.
    Request {
        /// Sender peer id.
        sender: String,
        /// Target peer id.
        target: String,
        /// The document.
        doc: String,
        /// An Automerge sync message.
        data: Vec<u8>,
    },
    /// One step of the Automerge sync protocol for one document.
    Sync {
        /// Sender peer id.
        sender: String,
        /// Target peer id.
        target: String,
        /// The document.
        doc: String,
        /// An Automerge sync message.
        data: Vec<u8>,
    },
    /// The answer to a request for a document the server does not have (or will not share).
    DocUnavailable {
        /// Sender peer id.
        sender: String,
        /// Target peer id.
        target: String,
        /// The document.
        doc: String,
    },
    /// An application broadcast about a document (presence and the like), relayed as is.
    Ephemeral {
        /// The original sender.
        sender: String,
        /// Target peer id.
        target: String,
        /// The document.
        doc: String,
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
        sender: String,
        /// Target peer id.
        target: String,
        /// Storage ids to start hearing about.
        add: Vec<String>,
        /// Storage ids to stop hearing about.
        remove: Vec<String>,
    },
    /// Head announcements for a document.
    RemoteHeadsChanged {
        /// Sender peer id.
        sender: String,
        /// Target peer id.
        target: String,
        /// The document.
        doc: String,
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

    /// The document the message is about, if any.
    pub fn doc(&self) -> Option<&str> {
        match self {
            Message::Request { doc, .. }
            | Message::Sync { doc, .. }
            | Message::DocUnavailable { doc, .. }
            | Message::Ephemeral { doc, .. }
            | Message::RemoteHeadsChanged { doc, .. } => Some(doc),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding: CBOR -> a small value tree -> a message.

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Bytes(Vec<u8>),
    Number(f64),
    Bool(bool),
    /// `null` or `undefined`: both mean "absent" to this protocol.
    Absent,
    Array(Vec<Value>),
    Map(Vec<(String, Value)>),
    /// Anything else (tags, other simple values): tolerated where the field is not used.
    Other,
}

fn cbor_err(e: minicbor::decode::Error) -> WireError {
    WireError::Cbor(e.to_string())
}

fn value(d: &mut Decoder<'_>, depth: usize) -> Result<Value, WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::TooDeep);
    }
    Ok(match d.datatype().map_err(cbor_err)? {
        Type::String | Type::StringIndef => {
            let mut s = String::new();
            for part in d.str_iter().map_err(cbor_err)? {
                s.push_str(part.map_err(cbor_err)?);
            }
            Value::Text(s)
        }
        Type::Bytes | Type::BytesIndef => {
            let mut b = Vec::new();
            for part in d.bytes_iter().map_err(cbor_err)? {
                b.extend_from_slice(part.map_err(cbor_err)?);
            }
            Value::Bytes(b)
        }
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Value::Number(d.u64().map_err(cbor_err)? as f64),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
            Value::Number(i64::try_from(d.int().map_err(cbor_err)?).map_or(f64::NAN, |i| i as f64))
        }
        Type::F16 | Type::F32 | Type::F64 => Value::Number(d.f64().map_err(cbor_err)?),
        Type::Bool => Value::Bool(d.bool().map_err(cbor_err)?),
        Type::Null => {
            d.null().map_err(cbor_err)?;
            Value::Absent
        }
        Type::Undefined => {
            d.undefined().map_err(cbor_err)?;
            Value::Absent
        }
        Type::Array | Type::ArrayIndef => {
            let len = d.array().map_err(cbor_err)?;
            let mut items = Vec::new();
            match len {
                Some(n) => {
                    for _ in 0..n {
                        items.push(value(d, depth + 1)?);
                    }
                }
                None => {
                    while d.datatype().map_err(cbor_err)? != Type::Break {
                        items.push(value(d, depth + 1)?);
                    }
                    d.skip().map_err(cbor_err)?;
                }
            }
            Value::Array(items)
        }
        Type::Map | Type::MapIndef => {
            let len = d.map().map_err(cbor_err)?;
            let mut entries = Vec::new();
            let mut entry = |d: &mut Decoder<'_>| -> Result<(), WireError> {
                let key = match value(d, depth + 1)? {
                    Value::Text(k) => k,
                    _ => String::new(),
                };
                entries.push((key, value(d, depth + 1)?));
                Ok(())
            };
            match len {
                Some(n) => {
                    for _ in 0..n {
                        entry(d)?;
                    }
                }
                None => {
                    while d.datatype().map_err(cbor_err)? != Type::Break {
                        entry(d)?;
                    }
                    d.skip().map_err(cbor_err)?;
                }
            }
            Value::Map(entries)
        }
        Type::Tag => {
            d.tag().map_err(cbor_err)?;
            value(d, depth + 1)?;
            Value::Other
        }
        Type::Simple => {
            d.simple().map_err(cbor_err)?;
            Value::Other
        }
        Type::Break | Type::Unknown(_) => return Err(WireError::Cbor("unexpected CBOR item".into())),
    })
}

/// The fields of a decoded message map, with typed accessors.
struct Fields {
    kind: String,
    map: BTreeMap<String, Value>,
}

impl Fields {
    fn get(&self, field: &'static str) -> Option<&Value> {
        self.map.get(field).filter(|v| **v != Value::Absent)
    }

    fn missing(&self, field: &'static str) -> WireError {
        WireError::Missing { kind: self.kind.clone(), field }
    }

    fn text(&self, field: &'static str) -> Result<String, WireError> {
        self.opt_text(field)?.ok_or_else(|| self.missing(field))
    }

    fn opt_text(&self, field: &'static str) -> Result<Option<String>, WireError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Text(s)) => Ok(Some(s.clone())),
            Some(_) => Err(WireError::WrongType { field, expected: "a text string" }),
        }
    }

    fn bytes(&self, field: &'static str) -> Result<Vec<u8>, WireError> {
        match self.get(field) {
            None => Err(self.missing(field)),
            Some(Value::Bytes(b)) => Ok(b.clone()),
            Some(_) => Err(WireError::WrongType { field, expected: "a byte string" }),
        }
    }

    fn number(&self, field: &'static str) -> Result<f64, WireError> {
        match self.get(field) {
            None => Err(self.missing(field)),
            Some(Value::Number(n)) if n.is_finite() => Ok(*n),
            Some(_) => Err(WireError::WrongType { field, expected: "a number" }),
        }
    }

    fn texts(&self, field: &'static str) -> Result<Option<Vec<String>>, WireError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Text(s) => Ok(s.clone()),
                    _ => Err(WireError::WrongType { field, expected: "an array of text strings" }),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(WireError::WrongType { field, expected: "an array of text strings" }),
        }
    }

    /// `peerMetadata` (`metadata` in some implementations): `(storageId, isEphemeral)`.
    fn metadata(&self) -> (Option<String>, bool) {
        let meta = self.get("peerMetadata").or_else(|| self.get("metadata"));
        let Some(Value::Map(entries)) = meta else { return (None, true) };
        let mut storage = None;
        let mut ephemeral = true;
        for (k, v) in entries {
            match (k.as_str(), v) {
                ("storageId", Value::Text(s)) => storage = Some(s.clone()),
                ("isEphemeral", Value::Bool(b)) => ephemeral = *b,
                _ => {}
            }
        }
        (storage, ephemeral)
    }
}

/// Decodes a change hash as automerge-repo 2.x writes it (base58check of 32 bytes), or as 1.x
/// did (64 hex digits).
fn parse_head(s: &str) -> Option<ChangeHash> {
    if s.len() == 64 {
        if let Ok(h) = s.parse::<ChangeHash>() {
            return Some(h);
        }
    }
    let bytes = bs58::decode(s).with_check(None).into_vec().ok()?;
    ChangeHash::try_from(bytes.as_slice()).ok()
}

fn encode_head(h: &ChangeHash) -> String {
    bs58::encode(h.0).with_check().into_string()
}

impl Message {
    /// Decodes one message from one frame's bytes.
    pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
        let mut d = Decoder::new(bytes);
        let Value::Map(entries) = value(&mut d, 0)? else { return Err(WireError::NotAMap) };
        if d.position() != bytes.len() {
            return Err(WireError::Trailing(bytes.len() - d.position()));
        }
        let map: BTreeMap<String, Value> = entries.into_iter().collect();
        let kind = match map.get("type") {
            Some(Value::Text(t)) => t.clone(),
            _ => return Err(WireError::Missing { kind: "a".into(), field: "type" }),
        };
        let f = Fields { kind, map };
        let sender = || f.text("senderId");
        let target = || f.text("targetId");
        Ok(match f.kind.as_str() {
            "join" => {
                let (storage_id, ephemeral) = f.metadata();
                Message::Join {
                    sender: sender()?,
                    storage_id,
                    ephemeral,
                    versions: f.texts("supportedProtocolVersions")?,
                }
            }
            "peer" => {
                let (storage_id, ephemeral) = f.metadata();
                Message::Peer {
                    sender: sender()?,
                    target: target()?,
                    storage_id,
                    ephemeral,
                    version: f.opt_text("selectedProtocolVersion")?.unwrap_or_else(|| PROTOCOL_VERSION.into()),
                }
            }
            "error" => Message::Error {
                sender: f.opt_text("senderId")?,
                target: f.opt_text("targetId")?,
                message: f.text("message")?,
            },
            "leave" => Message::Leave { sender: sender()? },
            "request" => Message::Request {
                sender: sender()?,
                target: target()?,
                doc: f.text("documentId")?,
                data: f.bytes("data")?,
            },
            "sync" => Message::Sync {
                sender: sender()?,
                target: target()?,
                doc: f.text("documentId")?,
                data: f.bytes("data")?,
            },
            "doc-unavailable" => {
                Message::DocUnavailable { sender: sender()?, target: target()?, doc: f.text("documentId")? }
            }
            "ephemeral" => Message::Ephemeral {
                sender: sender()?,
                target: target()?,
                doc: f.text("documentId")?,
                count: f.number("count")?.max(0.0) as u64,
                session: f.text("sessionId")?,
                data: f.bytes("data")?,
            },
            "remote-subscription-change" => Message::RemoteSubscriptionChange {
                sender: sender()?,
                target: target()?,
                add: f.texts("add")?.unwrap_or_default(),
                remove: f.texts("remove")?.unwrap_or_default(),
            },
            "remote-heads-changed" => {
                const FIELD: &str = "newHeads";
                let Some(Value::Map(entries)) = f.get(FIELD) else {
                    return Err(WireError::WrongType { field: FIELD, expected: "a map of storage id to heads" });
                };
                let mut new_heads = Vec::new();
                for (storage_id, v) in entries {
                    let Value::Map(inner) = v else {
                        return Err(WireError::WrongType { field: FIELD, expected: "a map of storage id to heads" });
                    };
                    let mut heads = Vec::new();
                    let mut timestamp = 0.0;
                    for (k, v) in inner {
                        match (k.as_str(), v) {
                            ("heads", Value::Array(items)) => {
                                for item in items {
                                    let Value::Text(s) = item else {
                                        return Err(WireError::WrongType { field: "heads", expected: "change hashes" });
                                    };
                                    heads.push(
                                        parse_head(s).ok_or(WireError::WrongType {
                                            field: "heads",
                                            expected: "change hashes",
                                        })?,
                                    );
                                }
                            }
                            ("timestamp", Value::Number(n)) => timestamp = *n,
                            _ => {}
                        }
                    }
                    new_heads.push(RemoteHeads { storage_id: storage_id.clone(), heads, timestamp });
                }
                Message::RemoteHeadsChanged {
                    sender: sender()?,
                    target: target()?,
                    doc: f.text("documentId")?,
                    new_heads,
                }
            }
            other => return Err(WireError::UnknownType(other.to_owned())),
        })
    }

    /// Encodes the message as one frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new());
        // Writing CBOR into a Vec cannot fail; the results are ignored only for that reason.
        let _ = self.encode_into(&mut e);
        e.into_writer()
    }

    fn encode_into(&self, e: &mut Encoder<Vec<u8>>) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
        fn metadata(
            e: &mut Encoder<Vec<u8>>,
            storage_id: &Option<String>,
            ephemeral: bool,
        ) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
            e.str("peerMetadata")?;
            match storage_id {
                Some(s) => e.map(2)?.str("storageId")?.str(s)?,
                None => e.map(1)?,
            };
            e.str("isEphemeral")?.bool(ephemeral)?;
            Ok(())
        }
        let kind = self.kind();
        match self {
            Message::Join { sender, storage_id, ephemeral, versions } => {
                e.map(4)?.str("type")?.str(kind)?.str("senderId")?.str(sender)?;
                metadata(e, storage_id, *ephemeral)?;
                let versions = versions.clone().unwrap_or_else(|| vec![PROTOCOL_VERSION.into()]);
                e.str("supportedProtocolVersions")?.array(versions.len() as u64)?;
                for v in &versions {
                    e.str(v)?;
                }
            }
            Message::Peer { sender, target, storage_id, ephemeral, version } => {
                e.map(5)?.str("type")?.str(kind)?.str("senderId")?.str(sender)?.str("targetId")?.str(target)?;
                metadata(e, storage_id, *ephemeral)?;
                e.str("selectedProtocolVersion")?.str(version)?;
            }
            Message::Error { sender, target, message } => {
                let n = 2 + u64::from(sender.is_some()) + u64::from(target.is_some());
                e.map(n)?.str("type")?.str(kind)?.str("message")?.str(message)?;
                if let Some(s) = sender {
                    e.str("senderId")?.str(s)?;
                }
                if let Some(t) = target {
                    e.str("targetId")?.str(t)?;
                }
            }
            Message::Leave { sender } => {
                e.map(2)?.str("type")?.str(kind)?.str("senderId")?.str(sender)?;
            }
            Message::Request { sender, target, doc, data } | Message::Sync { sender, target, doc, data } => {
                e.map(5)?.str("type")?.str(kind)?.str("senderId")?.str(sender)?.str("targetId")?.str(target)?;
                e.str("documentId")?.str(doc)?.str("data")?.bytes(data)?;
            }
            Message::DocUnavailable { sender, target, doc } => {
                e.map(4)?.str("type")?.str(kind)?.str("senderId")?.str(sender)?.str("targetId")?.str(target)?;
                e.str("documentId")?.str(doc)?;
            }
            Message::Ephemeral { sender, target, doc, count, session, data } => {
                e.map(7)?.str("type")?.str(kind)?.str("senderId")?.str(sender)?.str("targetId")?.str(target)?;
                e.str("documentId")?.str(doc)?.str("count")?;
                // cbor-x decodes integers past 32 bits as BigInt; send those as floats like it does.
                match u32::try_from(*count) {
                    Ok(c) => e.u32(c)?,
                    Err(_) => e.f64(*count as f64)?,
                };
                e.str("sessionId")?.str(session)?.str("data")?.bytes(data)?;
            }
            Message::RemoteSubscriptionChange { sender, target, add, remove } => {
                e.map(5)?.str("type")?.str(kind)?.str("senderId")?.str(sender)?.str("targetId")?.str(target)?;
                for (field, ids) in [("add", add), ("remove", remove)] {
                    e.str(field)?.array(ids.len() as u64)?;
                    for id in ids {
                        e.str(id)?;
                    }
                }
            }
            Message::RemoteHeadsChanged { sender, target, doc, new_heads } => {
                e.map(5)?.str("type")?.str(kind)?.str("senderId")?.str(sender)?.str("targetId")?.str(target)?;
                e.str("documentId")?.str(doc)?.str("newHeads")?.map(new_heads.len() as u64)?;
                for h in new_heads {
                    e.str(&h.storage_id)?.map(2)?.str("heads")?.array(h.heads.len() as u64)?;
                    for head in &h.heads {
                        e.str(&encode_head(head))?;
                    }
                    e.str("timestamp")?.f64(h.timestamp)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: Message) {
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn every_message_round_trips() {
        let s = || "peer-a".to_string();
        let t = || "relay".to_string();
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
        round_trip(Message::Request { sender: s(), target: t(), doc: "d".into(), data: vec![0x42, 0] });
        round_trip(Message::Sync { sender: s(), target: t(), doc: "d".into(), data: vec![1, 2, 3] });
        round_trip(Message::DocUnavailable { sender: t(), target: s(), doc: "d".into() });
        round_trip(Message::Ephemeral {
            sender: s(),
            target: t(),
            doc: "d".into(),
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
            doc: "d".into(),
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

//! Decoding: CBOR -> a small value tree -> a message.

use std::collections::BTreeMap;

use automerge::ChangeHash;
use minicbor::Decoder;
use minicbor::data::Type;

use super::{MAX_DEPTH, Message, PROTOCOL_VERSION, RemoteHeads, WireError};
use crate::ids::{DocId, PeerId, StorageId};

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

    fn doc(&self, field: &'static str) -> Result<DocId, WireError> {
        self.text(field)?.parse().map_err(|_| WireError::WrongType { field, expected: "an automerge-repo document id" })
    }

    fn storage_ids(&self, field: &'static str) -> Result<Vec<StorageId>, WireError> {
        Ok(self.texts(field)?.unwrap_or_default().into_iter().map(StorageId::from).collect())
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
    fn metadata(&self) -> (Option<StorageId>, bool) {
        let meta = self.get("peerMetadata").or_else(|| self.get("metadata"));
        let Some(Value::Map(entries)) = meta else { return (None, true) };
        let mut storage = None;
        let mut ephemeral = true;
        for (k, v) in entries {
            match (k.as_str(), v) {
                ("storageId", Value::Text(s)) => storage = Some(StorageId::from(s.as_str())),
                ("isEphemeral", Value::Bool(b)) => ephemeral = *b,
                _ => {}
            }
        }
        (storage, ephemeral)
    }
}

/// Decodes a change hash as automerge-repo 2.x writes it (base58check of 32 bytes), or as 1.x
/// did (64 hex digits).
pub(super) fn parse_head(s: &str) -> Option<ChangeHash> {
    if s.len() == 64
        && let Ok(h) = s.parse::<ChangeHash>()
    {
        return Some(h);
    }
    let bytes = bs58::decode(s).with_check(None).into_vec().ok()?;
    ChangeHash::try_from(bytes.as_slice()).ok()
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
        let sender = || f.text("senderId").map(PeerId::from);
        let target = || f.text("targetId").map(PeerId::from);
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
                sender: f.opt_text("senderId")?.map(PeerId::from),
                target: f.opt_text("targetId")?.map(PeerId::from),
                message: f.text("message")?,
            },
            "leave" => Message::Leave { sender: sender()? },
            "request" => Message::Request {
                sender: sender()?,
                target: target()?,
                doc: f.doc("documentId")?,
                data: f.bytes("data")?,
            },
            "sync" => Message::Sync {
                sender: sender()?,
                target: target()?,
                doc: f.doc("documentId")?,
                data: f.bytes("data")?,
            },
            "doc-unavailable" => {
                Message::DocUnavailable { sender: sender()?, target: target()?, doc: f.doc("documentId")? }
            }
            "ephemeral" => Message::Ephemeral {
                sender: sender()?,
                target: target()?,
                doc: f.doc("documentId")?,
                count: f.number("count")?.max(0.0) as u64,
                session: f.text("sessionId")?,
                data: f.bytes("data")?,
            },
            "remote-subscription-change" => Message::RemoteSubscriptionChange {
                sender: sender()?,
                target: target()?,
                add: f.storage_ids("add")?,
                remove: f.storage_ids("remove")?,
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
                    new_heads.push(RemoteHeads { storage_id: StorageId::from(storage_id.as_str()), heads, timestamp });
                }
                Message::RemoteHeadsChanged {
                    sender: sender()?,
                    target: target()?,
                    doc: f.doc("documentId")?,
                    new_heads,
                }
            }
            other => return Err(WireError::UnknownType(other.to_owned())),
        })
    }
}

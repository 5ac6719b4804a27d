//! Encoding: a message -> one CBOR map, as automerge-repo writes it.

use automerge::ChangeHash;
use minicbor::Encoder;

use super::{Message, PROTOCOL_VERSION};
use crate::ids::{PeerId, StorageId};

type Encoded = Result<(), minicbor::encode::Error<std::convert::Infallible>>;

pub(super) fn encode_head(h: &ChangeHash) -> String {
    bs58::encode(h.0).with_check().into_string()
}

impl Message {
    /// Encodes the message as one frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new());
        // Writing CBOR into a Vec cannot fail; the results are ignored only for that reason.
        let _ = self.encode_into(&mut e);
        e.into_writer()
    }

    fn encode_into(&self, e: &mut Encoder<Vec<u8>>) -> Encoded {
        fn metadata(e: &mut Encoder<Vec<u8>>, storage_id: &Option<StorageId>, ephemeral: bool) -> Encoded {
            e.str("peerMetadata")?;
            match storage_id {
                Some(s) => e.map(2)?.str("storageId")?.str(s.as_str())?,
                None => e.map(1)?,
            };
            e.str("isEphemeral")?.bool(ephemeral)?;
            Ok(())
        }
        let kind = self.kind();
        // The map header of a message addressed from `sender` to `target`, with `fields` entries
        // in all, and its first three: the type, the sender, the target.
        let addressed = |e: &mut Encoder<Vec<u8>>, fields: u64, sender: &PeerId, target: &PeerId| -> Encoded {
            e.map(fields)?.str("type")?.str(kind)?.str("senderId")?.str(sender.as_str())?;
            e.str("targetId")?.str(target.as_str())?;
            Ok(())
        };
        match self {
            Message::Join { sender, storage_id, ephemeral, versions } => {
                e.map(4)?.str("type")?.str(kind)?.str("senderId")?.str(sender.as_str())?;
                metadata(e, storage_id, *ephemeral)?;
                let versions = versions.clone().unwrap_or_else(|| vec![PROTOCOL_VERSION.into()]);
                e.str("supportedProtocolVersions")?.array(versions.len() as u64)?;
                for v in &versions {
                    e.str(v)?;
                }
            }
            Message::Peer { sender, target, storage_id, ephemeral, version } => {
                addressed(e, 5, sender, target)?;
                metadata(e, storage_id, *ephemeral)?;
                e.str("selectedProtocolVersion")?.str(version)?;
            }
            Message::Error { sender, target, message } => {
                let n = 2 + u64::from(sender.is_some()) + u64::from(target.is_some());
                e.map(n)?.str("type")?.str(kind)?.str("message")?.str(message)?;
                if let Some(s) = sender {
                    e.str("senderId")?.str(s.as_str())?;
                }
                if let Some(t) = target {
                    e.str("targetId")?.str(t.as_str())?;
                }
            }
            Message::Leave { sender } => {
                e.map(2)?.str("type")?.str(kind)?.str("senderId")?.str(sender.as_str())?;
            }
            Message::Request { sender, target, doc, data } | Message::Sync { sender, target, doc, data } => {
                addressed(e, 5, sender, target)?;
                e.str("documentId")?.str(&doc.to_string())?.str("data")?.bytes(data)?;
            }
            Message::DocUnavailable { sender, target, doc } => {
                addressed(e, 4, sender, target)?;
                e.str("documentId")?.str(&doc.to_string())?;
            }
            Message::Ephemeral { sender, target, doc, count, session, data } => {
                addressed(e, 7, sender, target)?;
                e.str("documentId")?.str(&doc.to_string())?.str("count")?;
                // cbor-x decodes integers past 32 bits as BigInt; send those as floats like it does.
                match u32::try_from(*count) {
                    Ok(c) => e.u32(c)?,
                    Err(_) => e.f64(*count as f64)?,
                };
                e.str("sessionId")?.str(session)?.str("data")?.bytes(data)?;
            }
            Message::RemoteSubscriptionChange { sender, target, add, remove } => {
                addressed(e, 5, sender, target)?;
                for (field, ids) in [("add", add), ("remove", remove)] {
                    e.str(field)?.array(ids.len() as u64)?;
                    for id in ids {
                        e.str(id.as_str())?;
                    }
                }
            }
            Message::RemoteHeadsChanged { sender, target, doc, new_heads } => {
                addressed(e, 5, sender, target)?;
                e.str("documentId")?.str(&doc.to_string())?.str("newHeads")?.map(new_heads.len() as u64)?;
                for h in new_heads {
                    e.str(h.storage_id.as_str())?.map(2)?.str("heads")?.array(h.heads.len() as u64)?;
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

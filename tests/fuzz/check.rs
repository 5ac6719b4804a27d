//! The check the wire fuzz target runs on every input, written once: the fuzz target
//! (`fuzz_targets/wire.rs`) and the corpus replay on stable (`tests/wire_corpus.rs`) both include
//! this file with `#[path]`.

use cairn::sync::wire::Message;

/// Feeds `data` to the relay's input decoding: as a protocol message, then its sync data as an
/// Automerge sync message and its changes. Nothing may panic, and a decoded message must survive
/// re-encoding unchanged. Returns whether `data` decoded as a message.
pub(crate) fn wire(data: &[u8]) -> bool {
    let Ok(message) = Message::decode(data) else { return false };
    let encoded = message.encode();
    let again = Message::decode(&encoded).expect("a message the relay encodes decodes again");
    assert_eq!(again.encode(), encoded, "re-encoding is stable");
    if let Message::Sync { data, .. } | Message::Request { data, .. } = &message
        && let Ok(sync) = cairn::automerge::sync::Message::decode(data)
    {
        let _ = cairn::sync::decode_changes(&sync, 1 << 20);
    }
    true
}

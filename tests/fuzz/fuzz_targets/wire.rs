//! The relay's input decoding, fed arbitrary bytes: a websocket frame as a protocol message,
//! then its sync data as an Automerge sync message and its changes. Nothing may panic, and a
//! decoded message must survive re-encoding unchanged.
#![no_main]

use cairn::sync::wire::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::decode(data) else { return };
    let encoded = message.encode();
    let again = Message::decode(&encoded).expect("a message the relay encodes decodes again");
    assert_eq!(again.encode(), encoded, "re-encoding is stable");
    if let Message::Sync { data, .. } | Message::Request { data, .. } = &message {
        if let Ok(sync) = cairn::automerge::sync::Message::decode(data) {
            let _ = cairn::sync::check_changes(&sync, 1 << 20);
        }
    }
});

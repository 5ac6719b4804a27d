//! Replays the wire fuzz corpus (`tests/fuzz/corpus/wire`: seeds, and any input the fuzzer ever
//! found interesting or crashing) through the same checks as the fuzz target, on the stable
//! toolchain, so every input stays a regression test.

use cairn::sync::wire::Message;

#[test]
fn every_corpus_input_decodes_or_is_refused_without_panicking() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/wire");
    let mut decoded = 0;
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        inputs += 1;
        let Ok(message) = Message::decode(&bytes) else { continue };
        decoded += 1;
        let encoded = message.encode();
        let again = Message::decode(&encoded).expect("a message the relay encodes decodes again");
        assert_eq!(again.encode(), encoded, "re-encoding is stable");
        if let Message::Sync { data, .. } | Message::Request { data, .. } = &message {
            if let Ok(sync) = cairn::automerge::sync::Message::decode(data) {
                let _ = cairn::sync::check_changes(&sync, 1 << 20);
            }
        }
    }
    assert!(inputs >= 10, "the corpus holds at least the seeds");
    assert!(decoded >= 10, "every seed is a valid message");
}

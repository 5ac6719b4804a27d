//! Replays the wire fuzz corpus (`tests/fuzz/corpus/wire`: seeds, and any input the fuzzer ever
//! found interesting or crashing) through the fuzz target's own check, on the stable toolchain,
//! so every input stays a regression test.

#[path = "fuzz/check.rs"]
mod check;

#[test]
fn every_corpus_input_decodes_or_is_refused_without_panicking() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/wire");
    let mut decoded = 0;
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        inputs += 1;
        if check::wire(&bytes) {
            decoded += 1;
        }
    }
    assert!(inputs >= 10, "the corpus holds at least the seeds");
    assert!(decoded >= 10, "every seed is a valid message");
}

//! Replays the schema fuzz corpus (`tests/fuzz/corpus/schema`: seeds, and any input the fuzzer
//! ever found interesting or crashing) through the fuzz target's own check, on the stable
//! toolchain: no change the check accepts breaks a shard, and Cairn's own writer is never
//! refused (see `tests/fuzz/schema.rs`).

#[path = "fuzz/schema.rs"]
mod schema;

#[test]
fn every_corpus_input_is_judged_as_the_oracle_expects() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/schema");
    let (mut accepted, mut refused, mut inputs) = (0, 0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        inputs += 1;
        match schema::schema(&bytes) {
            schema::Verdict::Accepted => accepted += 1,
            schema::Verdict::Refused => refused += 1,
            schema::Verdict::Nothing => {}
        }
        schema::writer(&bytes);
    }
    assert!(inputs >= 50, "the corpus holds at least the seeds");
    assert!(accepted >= 5 && refused >= 20, "the seeds exercise both verdicts: {accepted} accepted, {refused} refused");
}

/// Seeded random inputs beyond the corpus: a cheap fuzz run on every `cargo test`.
#[test]
fn random_inputs_are_judged_as_the_oracle_expects() {
    let mut x: u64 = 0x5eed_cafe;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut accepted = 0;
    for _ in 0..400 {
        let len = (next() % 40) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if schema::schema(&bytes) == schema::Verdict::Accepted {
            accepted += 1;
        }
    }
    assert!(accepted > 0, "some random programs build valid changes");
}

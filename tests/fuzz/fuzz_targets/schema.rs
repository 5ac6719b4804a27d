//! The schema check, fed changes built from arbitrary bytes on real shard documents; the check
//! itself is in `../schema.rs`, shared with the corpus replay in `tests/schema_corpus.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../schema.rs"]
mod schema;

fuzz_target!(|data: &[u8]| {
    schema::schema(data);
    schema::writer(data);
});

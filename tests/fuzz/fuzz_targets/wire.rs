//! The relay's input decoding, fed arbitrary bytes; the check itself is in `../check.rs`, shared
//! with the corpus replay in `tests/wire_corpus.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::wire(data);
});

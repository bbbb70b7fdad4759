#![no_main]
// The body is shared with `cargo test` (tests/fuzz_corpus.rs): see
// tests/fuzz/targets.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| wschat_fuzz::extension_offer(data));

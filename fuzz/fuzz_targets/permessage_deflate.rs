//! Invariants: see `crypto_ticker::fuzz_checks::permessage_deflate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crypto_ticker::fuzz_checks::permessage_deflate(data));

//! Invariants: see `crypto_ticker::fuzz_checks::tls_records`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crypto_ticker::fuzz_checks::tls_records(data));

//! Replays every committed fuzz corpus file through the invariants its target asserts
//! (`crypto_ticker::fuzz_checks`), so CI re-checks every input the fuzzers kept, and
//! every crash they found, on each run without needing a fuzzing toolchain.

use std::path::Path;

use crypto_ticker::fuzz_checks;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} missing: {e}", dir.display()))
        .map(|entry| entry.expect("readable corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    entries.sort();
    assert!(entries.len() >= 5, "corpus {target} has only {} inputs", entries.len());
    for path in &entries {
        // A fuzzer running beside the tests may have just merged this input away.
        let Ok(data) = std::fs::read(path) else { continue };
        // Name the input when an invariant breaks, so it can be rerun with `cargo fuzz run`.
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{target}: invariant broken by {}", path.display());
        }
    }
    eprintln!("fuzz corpus {target}: {} inputs replayed", entries.len());
}

#[test]
fn http_request_corpus() {
    replay("http_request", fuzz_checks::http_request);
}

#[test]
fn ws_decoder_corpus() {
    replay("ws_decoder", fuzz_checks::ws_decoder);
}

#[test]
fn token_corpus() {
    replay("token", fuzz_checks::token);
}

#[test]
fn auth_body_corpus() {
    replay("auth_body", fuzz_checks::auth_body);
}

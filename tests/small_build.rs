//! A build without the optional parts (`cargo build --no-default-features`, the
//! small-host build): every flag of a missing part is refused at start with a message
//! that names the feature, before anything is opened, and the plain node serves as the
//! default build does (the rest of this test binary runs against it).

use crate::util::*;

/// Runs the binary with `args` in a fresh folder; it must refuse to start (exit 2) and
/// say which feature it lacks, without creating the database.
#[cfg(not(all(feature = "tls", feature = "cluster", feature = "exchanges")))]
fn refused(args: &[&str], feature: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crypto-ticker"))
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(&format!("this build has no `{feature}`")), "{args:?}: {err}");
    assert!(err.contains("cargo build --release"), "says how to get it: {err}");
    assert!(!dir.path().join("data").exists(), "{args:?}: nothing opened before refusing");
}

#[test]
#[cfg(not(feature = "tls"))]
fn without_tls_the_certificate_flags_are_refused() {
    refused(&["--tls-cert", "cert.pem", "--tls-key", "key.pem"], "tls");
}

#[test]
#[cfg(not(feature = "cluster"))]
fn without_the_cluster_redis_is_refused() {
    refused(&["--redis", "redis://127.0.0.1:6379/"], "cluster");
    refused(&["--redis-sentinels", "127.0.0.1:26379"], "cluster");
}

#[test]
#[cfg(not(feature = "exchanges"))]
fn without_exchanges_an_exchange_source_and_source_check_are_refused() {
    refused(&["--source", "coinbase"], "exchanges");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crypto-ticker"))
        .args(["source-check", "--source", "kraken"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("this build has no `exchanges`"), "{err}");
}

/// The environment variables are the same options: refused the same way.
#[test]
#[cfg(not(feature = "cluster"))]
fn the_environment_is_refused_like_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crypto-ticker"))
        .args(["--addr", "127.0.0.1:0"])
        .env("TICKER_REDIS", "redis://127.0.0.1:6379/")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `cluster`"));
}

/// What the small build keeps: tokens, the upgrade, ticks (the whole suite checks the
/// rest); its `listening` line says the port is plain.
#[test]
fn the_plain_node_serves_tokens_and_ticks() {
    let s = TestServer::start();
    let token = s.token();
    let mut ws = s.ws(&token);
    next_of_type(&mut ws, "welcome");
    let first = next_of_type(&mut ws, "ticker")["seq"].as_u64().unwrap();
    let tick = next_of_type(&mut ws, "ticker");
    assert_eq!(tick["seq"].as_u64(), Some(first + 1), "{tick}");
    assert_eq!(tick["data"].as_array().map(Vec::len), Some(3), "{tick}");
    let listening = s.wait_for_log("listening");
    assert_eq!(field(&listening, "tls").as_deref(), Some("false"), "{listening}");
}

/// `--version` names the optional parts built in, so an operator can tell the builds apart.
#[test]
fn the_version_line_names_the_parts_built_in() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crypto-ticker"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    for (part, built) in [
        ("tls", cfg!(feature = "tls")),
        ("cluster", cfg!(feature = "cluster")),
        ("exchanges", cfg!(feature = "exchanges")),
    ] {
        assert_eq!(line.contains(part), built, "{part}: {line}");
    }
    let none = !cfg!(any(feature = "tls", feature = "cluster", feature = "exchanges"));
    assert_eq!(line.contains("no optional parts"), none, "{line}");
}

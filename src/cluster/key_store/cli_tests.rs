//! The `keys` CLI against a real Redis: here rather than in `cli.rs` because the
//! throwaway-Redis fixture is private to `cluster`.

use std::sync::Arc;

use super::RedisKeyStore;
use crate::auth::key_store::KeyStore;
use crate::auth::keys;
use crate::cli::{CliError, run_keys_with};
use crate::cluster::DEFAULT_PREFIX;
use crate::cluster::pool::LinkPool;
use crate::cluster::test_redis::TestRedis;

/// Runs `keys <args>` with no environment; returns (stdout, stderr) or the error.
fn run(args: &[&str]) -> Result<(String, String), CliError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (mut out, mut note) = (Vec::new(), Vec::new());
    run_keys_with(&args, |_| None, &mut out, &mut note)?;
    Ok((String::from_utf8(out).unwrap(), String::from_utf8(note).unwrap()))
}

fn store(url: &str) -> RedisKeyStore {
    RedisKeyStore::new(Arc::new(LinkPool::new(url, 1).unwrap()), DEFAULT_PREFIX)
}

#[test]
fn the_cluster_keys_are_managed_with_the_sqlite_output_formats() {
    let Some(server) = TestRedis::start() else { return };
    let url = server.url();
    let (key, note) =
        run(&["create", "--user", "alice", "--role", "admin", "--redis", &url]).unwrap();
    assert_eq!(key.trim().len(), 32);
    assert!(note.contains("created key 1 for user alice (role admin)"), "{note}");
    run(&["create", "--user", "alice", "--redis", &url]).unwrap();

    let (list, _) = run(&["list", "--redis", &url]).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].trim_start().starts_with("id  user"), "{list}");
    assert!(lines[1].contains("alice") && lines[1].contains(&key.trim()[..6]), "{list}");
    assert!(lines[1].ends_with(" -"), "live: {list}");

    assert_eq!(run(&["revoke", "1", "--redis", &url]).unwrap().0, "revoked key 1\n");
    assert!(matches!(run(&["revoke", "1", "--redis", &url]), Err(CliError::NoLiveKey(_))));
    let (out, _) = run(&["revoke", "--user", "alice", "--redis", &url]).unwrap();
    assert_eq!(out, "revoked 1 key(s) of user alice\n");

    // The cluster store answers lookups the way the server will.
    let store = store(&url);
    assert_eq!(store.lookup(key.trim()).unwrap(), None);
}

#[test]
fn import_moves_a_single_node_store_into_the_cluster() {
    let Some(server) = TestRedis::start() else { return };
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("auth.db");
    let db_arg = db.to_str().unwrap();
    // As a single node's first start leaves it: with the demo key (the CLI makes none).
    keys::migrate(&keys::open(&db).unwrap(), &keys::demo_key_file(&db)).unwrap();
    let (alice, _) = run(&["create", "--user", "alice", "--db", db_arg]).unwrap();
    let (out, _) = run(&["import", "--db", db_arg, "--redis", &url]).unwrap();
    assert!(out.contains("imported 2 key(s)"), "{out}");
    assert!(out.contains("demo key: carried over"), "{out}");
    let (again, _) = run(&["import", "--db", db_arg, "--redis", &url]).unwrap();
    assert!(again.contains("imported 0 key(s)") && again.contains("2 already"), "{again}");

    let store = store(&url);
    assert_eq!(store.lookup(alice.trim()).unwrap().unwrap().user_id, "alice");
    let demo = std::fs::read_to_string(keys::demo_key_file(&db)).unwrap();
    assert_eq!(store.prepare().unwrap().key, demo.trim());
}

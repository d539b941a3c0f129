//! Start-up migration: the database is created with its folder, the demo key is created
//! once and stays the same across restarts.

use crate::util::*;

#[test]
fn the_first_start_creates_the_database_and_the_demo_key() {
    let s = TestServer::start();
    assert!(s.db_path().exists());
    let line = s.wait_for_log("demo API key");
    assert!(line.contains("demo API key created"), "{line}");
    assert_eq!(s.demo_key.len(), 32);
    assert!(s.demo_key.bytes().all(|b| b.is_ascii_alphanumeric()));
}

#[test]
fn restarts_keep_the_demo_key_and_do_not_migrate_twice() {
    let first = TestServer::start();
    let key = first.demo_key.clone();
    let dir = first.stop();
    for _ in 0..2 {
        let again = TestServer::start_with(Opts { dir: Some(dir.clone()), ..Opts::default() });
        assert_eq!(again.demo_key, key);
        assert!(again.wait_for_log("demo API key").contains("demo API key exists"));
        assert_eq!(again.post("/auth/token", &format!(r#"{{"api_key":"{key}"}}"#)).status, 200);
        again.stop();
    }
}

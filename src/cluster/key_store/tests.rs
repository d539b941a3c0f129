//! The Redis key store against a real redis-server.
use std::sync::Barrier;

use super::*;
use crate::cluster::test_redis::TestRedis;

fn store(server: &TestRedis) -> RedisKeyStore {
    RedisKeyStore::new(Arc::new(LinkPool::new(&server.url(), 2).unwrap()), "t:")
}

/// Every key name and string value in Redis, to look for secrets.
fn dump(server: &TestRedis) -> String {
    let mut c = server.conn();
    let names: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    let mut out = names.join("\n");
    for name in names {
        let ty: String = redis::cmd("TYPE").arg(&name).query(&mut c).unwrap();
        let values: Vec<String> = match ty.as_str() {
            "string" => vec![redis::cmd("GET").arg(&name).query(&mut c).unwrap()],
            "hash" => redis::cmd("HVALS").arg(&name).query(&mut c).unwrap(),
            "list" => redis::cmd("LRANGE").arg(&name).arg(0).arg(-1).query(&mut c).unwrap(),
            "zset" => redis::cmd("ZRANGE").arg(&name).arg(0).arg(-1).query(&mut c).unwrap(),
            _ => vec![],
        };
        out.push('\n');
        out.push_str(&values.join("\n"));
    }
    out
}

#[test]
fn keys_are_created_looked_up_listed_and_revoked_and_only_their_hash_is_stored() {
    let Some(server) = TestRedis::start() else { return };
    let s = store(&server);
    let (a, key_a) = s.create_key("alice", "admin").unwrap();
    let (b, key_b) = s.create_key("bob", "user").unwrap();
    assert_eq!((a, b), (ApiKeyId(1), ApiKeyId(2)));
    assert_eq!(key_a.len(), 32);

    let rec = s.lookup(&key_a).unwrap().unwrap();
    assert_eq!(rec, ApiKeyRecord { id: a, user_id: "alice".into(), role: "admin".into() });
    assert_eq!(s.lookup("not-a-key").unwrap(), None);

    let list = s.list_keys().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!((list[0].id, list[0].prefix.as_str()), (a, &key_a[..6]));
    assert_eq!(list[1].user_id, "bob");
    assert!(list.iter().all(|k| k.revoked_at.is_none() && k.created_at > 0));

    let stored = dump(&server);
    for key in [&key_a, &key_b] {
        assert!(!stored.contains(key.as_str()), "plaintext key stored");
        assert!(stored.contains(&keys::hash_key(key)));
    }

    assert!(s.revoke_key(a).unwrap());
    assert!(!s.revoke_key(a).unwrap(), "already revoked");
    assert!(!s.revoke_key(ApiKeyId(99)).unwrap(), "no such key");
    assert_eq!(s.lookup(&key_a).unwrap(), None);
    assert!(s.list_keys().unwrap()[0].revoked_at.is_some());

    s.create_key("bob", "user").unwrap();
    assert_eq!(s.revoke_user("bob").unwrap(), 2);
    assert_eq!(s.revoke_user("bob").unwrap(), 0);
    assert_eq!(s.lookup(&key_b).unwrap(), None);
}

#[test]
fn the_feed_carries_key_and_token_revocations_in_order() {
    let Some(server) = TestRedis::start() else { return };
    let (s, other_node) = (store(&server), store(&server));
    let cursor = other_node.revocation_cursor().unwrap();
    assert_eq!(cursor, 0);
    let (a, _) = s.create_key("alice", "user").unwrap();
    let token = TokenId([7; 32]);
    s.revoke_key(a).unwrap();
    s.announce_token_revoked(token).unwrap();

    let (revoked, next) = other_node.revoked_since(cursor).unwrap();
    assert_eq!(revoked, vec![Revocation::ApiKey(a), Revocation::Token(token)]);
    assert_eq!(next, 2);
    assert_eq!(other_node.revocation_cursor().unwrap(), 2);
    assert_eq!(other_node.revoked_since(next).unwrap(), (vec![], 2));

    // Foreign entries are skipped, not fatal.
    let mut c = server.conn();
    let _: () = redis::cmd("RPUSH").arg("t:revlog").arg("x:junk").query(&mut c).unwrap();
    assert_eq!(other_node.revoked_since(next).unwrap(), (vec![], 3));
}

#[test]
fn a_redis_that_restarted_empty_is_read_from_its_start() {
    let Some(server) = TestRedis::start() else { return };
    let s = store(&server);
    for _ in 0..3 {
        s.announce_token_revoked(TokenId([1; 32])).unwrap();
    }
    let cursor = s.revocation_cursor().unwrap();
    assert_eq!(cursor, 3);
    let _: () = redis::cmd("FLUSHALL").query(&mut server.conn()).unwrap();
    s.announce_token_revoked(TokenId([2; 32])).unwrap();
    // The feed (1 entry) is behind the cursor (3): the new entry is not lost.
    let (revoked, next) = s.revoked_since(cursor).unwrap();
    assert_eq!(revoked, vec![Revocation::Token(TokenId([2; 32]))]);
    assert_eq!(next, 1);
}

#[test]
fn a_trimmed_feed_keeps_cursors_absolute() {
    let Some(server) = TestRedis::start() else { return };
    let mut s = store(&server);
    s.revlog_max = 4;
    let id = |n: u8| Revocation::Token(TokenId([n; 32]));
    for n in 0..4 {
        s.announce_token_revoked(TokenId([n; 32])).unwrap();
    }
    let (_, cursor) = s.revoked_since(0).unwrap();
    assert_eq!(cursor, 4);
    // The fifth entry trims the oldest three (down to half the max): positions move
    // into revlog-base, so the cursor 4 still points after entry 3.
    s.announce_token_revoked(TokenId([4; 32])).unwrap();
    s.announce_token_revoked(TokenId([5; 32])).unwrap();
    let len: i64 = redis::cmd("LLEN").arg("t:revlog").query(&mut server.conn()).unwrap();
    assert!(len < 6, "trimmed to {len}");
    assert_eq!(s.revocation_cursor().unwrap(), 6);
    assert_eq!(s.revoked_since(cursor).unwrap(), (vec![id(4), id(5)], 6));
    // A cursor that fell off the head reads what is left, from the head.
    let (revoked, next) = s.revoked_since(1).unwrap();
    assert_eq!((revoked.last(), next), (Some(&id(5)), 6));
}

#[test]
fn nodes_starting_at_once_create_one_demo_key() {
    let Some(server) = TestRedis::start() else { return };
    let n = 6;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let s = store(&server);
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                s.prepare().unwrap()
            })
        })
        .collect();
    let demos: Vec<DemoKey> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(demos.iter().filter(|d| d.created).count(), 1, "{demos:?}");
    assert!(demos.iter().all(|d| d.key == demos[0].key));

    let s = store(&server);
    assert_eq!(s.prepare().unwrap(), DemoKey { key: demos[0].key.clone(), created: false });
    assert_eq!(s.lookup(&demos[0].key).unwrap().unwrap().user_id, DEMO_USER);
    assert_eq!(s.list_keys().unwrap().len(), 1, "one demo key record");
}

#[test]
fn a_revoked_demo_key_is_replaced_and_older_demo_keys_retired() {
    let Some(server) = TestRedis::start() else { return };
    let s = store(&server);
    let first = s.prepare().unwrap();
    let (extra, _) = s.create_key(DEMO_USER, "user").unwrap();
    let first_id = s.lookup(&first.key).unwrap().unwrap().id;
    s.revoke_key(first_id).unwrap();

    let second = s.prepare().unwrap();
    assert!(second.created);
    assert_ne!(second.key, first.key);
    assert!(s.lookup(&second.key).unwrap().is_some());
    let list = s.list_keys().unwrap();
    assert!(list.iter().find(|k| k.id == extra).unwrap().revoked_at.is_some());
    assert_eq!(s.prepare().unwrap(), DemoKey { key: second.key, created: false });
}

#[test]
fn an_unreachable_redis_is_an_unreachable_store() {
    let s = RedisKeyStore::new(Arc::new(LinkPool::new("redis://127.0.0.1:1/", 1).unwrap()), "t:");
    assert_eq!(s.lookup("k").unwrap_err().kind, DbErrorKind::Unreachable);
    assert_eq!(s.revoked_since(0).unwrap_err().kind, DbErrorKind::Unreachable);
    assert_eq!(s.prepare().unwrap_err().kind, DbErrorKind::Unreachable);
}

#[test]
fn feed_entries_parse_strictly() {
    assert_eq!(parse_entry("k:12"), Some(Revocation::ApiKey(ApiKeyId(12))));
    let h = hex(&[0xab; 32]);
    assert_eq!(parse_entry(&format!("t:{h}")), Some(Revocation::Token(TokenId([0xab; 32]))));
    for bad in ["", "k:", "k:x", "t:abc", "t:zz", "q:1", &format!("t:{h}00")] {
        assert_eq!(parse_entry(bad), None, "{bad}");
    }
    assert_eq!(unhex32(&"é".repeat(32)), None, "non-ASCII never panics");
}

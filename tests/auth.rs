//! `POST /auth/token`: one test per answer it gives, token validation on the WebSocket
//! route, the limits per client address (failed logins, lookups in flight, behind
//! trusted proxies) and the token table's bounds.

use std::process::Command;

use crate::util::*;

#[test]
fn a_valid_api_key_gets_a_signed_token_for_the_demo_user() {
    let s = TestServer::start();
    let r = s.post("/auth/token", &format!(r#"{{"api_key":"{}"}}"#, s.demo_key));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["user_id"], "demo");
    assert_eq!(v["role"], "user");
    assert_eq!(v["expires_in"], 3600);
    let token = v["token"].as_str().unwrap();
    // Padded base64url(32 bytes) + "." + padded base64url(HMAC-SHA256): 44 + 1 + 44.
    let (id, sig) = token.split_once('.').unwrap();
    assert_eq!((id.len(), sig.len()), (44, 44));
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=.".contains(&b)));
}

#[test]
fn a_body_that_is_not_json_is_400_invalid_json() {
    let s = TestServer::start();
    let r = s.post("/auth/token", "api_key=abc");
    assert_eq!((r.status, r.error().as_str()), (400, "invalid JSON"));
}

#[test]
fn a_missing_empty_or_non_string_api_key_is_400_api_key_required() {
    let s = TestServer::start();
    for body in
        ["{}", r#"{"api_key":""}"#, r#"{"api_key":12}"#, r#"{"api_key":null}"#, r#"{"other":"x"}"#]
    {
        let r = s.post("/auth/token", body);
        assert_eq!((r.status, r.error().as_str()), (400, "api_key required"), "{body}");
    }
}

#[test]
fn an_unknown_api_key_is_401_invalid_api_key() {
    let s = TestServer::start();
    let r = s.post("/auth/token", r#"{"api_key":"not-a-real-key-000000000000000000"}"#);
    assert_eq!((r.status, r.error().as_str()), (401, "invalid API key"));
}

#[test]
fn other_methods_on_the_token_path_are_405_with_allow() {
    let s = TestServer::start();
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let r = s.raw(
            format!("{method} /auth/token HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("Allow"), Some("POST, OPTIONS"));
        assert_eq!(r.error(), "method not allowed");
    }
}

#[test]
fn the_database_unavailable_is_500_and_the_server_recovers() {
    let s = TestServer::start();
    let db = s.db_path();
    let moved = db.with_extension("moved");
    std::fs::rename(&db, &moved).unwrap();
    let r = s.post("/auth/token", &format!(r#"{{"api_key":"{}"}}"#, s.demo_key));
    assert_eq!((r.status, r.error().as_str()), (500, "database unavailable"));
    std::fs::rename(&moved, &db).unwrap();
    assert_eq!(s.post("/auth/token", &format!(r#"{{"api_key":"{}"}}"#, s.demo_key)).status, 200);
}

#[test]
fn a_corrupt_database_is_500_and_the_server_recovers_when_it_is_restored() {
    let s = TestServer::start();
    let db = s.db_path();
    let body = format!(r#"{{"api_key":"{}"}}"#, s.demo_key);
    let saved = db.with_extension("saved");
    std::fs::rename(&db, &saved).unwrap();
    std::fs::write(&db, vec![0x5Au8; 8192]).unwrap();
    let r = s.post("/auth/token", &body);
    assert_eq!((r.status, r.error().as_str()), (500, "database unavailable"));
    // The event loop is not held up meanwhile.
    assert_eq!(s.get("/healthz").status, 200);
    std::fs::rename(&saved, &db).unwrap();
    assert_eq!(s.post("/auth/token", &body).status, 200);
}

/// Replaces the server's database with a copy in rollback-journal mode held under an
/// exclusive lock (as a restore or a long write by another program would): every
/// lookup then waits out SQLite's busy timeout (2 s) and fails, until `COMMIT`.
fn lock_database(s: &TestServer) -> rusqlite::Connection {
    let db = s.db_path();
    let copy = db.with_extension("restore");
    let live = rusqlite::Connection::open(&db).unwrap();
    live.execute("VACUUM INTO ?1", [copy.to_str().unwrap()]).unwrap();
    drop(live);
    let holder = rusqlite::Connection::open(&copy).unwrap();
    holder.pragma_update(None, "journal_mode", "DELETE").unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    std::fs::rename(&copy, &db).unwrap();
    holder
}

#[test]
fn a_locked_database_is_500_and_the_server_recovers_when_it_is_released() {
    let s = TestServer::start();
    let body = format!(r#"{{"api_key":"{}"}}"#, s.demo_key);
    let token = s.token();
    let holder = lock_database(&s);

    // The lookup waits out SQLite's busy timeout on a worker, then answers 500; the
    // event loop keeps serving meanwhile.
    let pending = {
        let (addr, body) = (s.addr, body.clone());
        std::thread::spawn(move || post_to(addr, "/auth/token", &body))
    };
    let mut ws = s.ws(&token);
    assert_eq!(s.get("/healthz").status, 200);
    next_of_type(&mut ws, "ticker");
    let r = pending.join().unwrap();
    assert_eq!((r.status, r.error().as_str()), (500, "database unavailable"));

    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    assert_eq!(s.post("/auth/token", &body).status, 200);
}

#[test]
fn a_full_token_table_is_503_token_store_unavailable() {
    // A table of two holds one token per key (a tenth of it, at least one): it takes
    // two keys to fill it.
    let s = TestServer::start_with(Opts::default().arg("--token-capacity", "2"));
    let bob = keys_cli(&s.db_path(), &["create", "--user", "bob"]).trim().to_owned();
    let carol = keys_cli(&s.db_path(), &["create", "--user", "carol"]).trim().to_owned();
    s.token();
    s.token();
    assert_eq!(s.post("/auth/token", &key_body(&bob)).status, 200);
    let r = s.post("/auth/token", &key_body(&carol));
    assert_eq!((r.status, r.error().as_str()), (503, "token store unavailable"));
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let s = TestServer::start();
    let mut c = s.connect();
    use std::io::Write;
    for _ in 0..3 {
        let body = format!(r#"{{"api_key":"{}"}}"#, s.demo_key);
        write!(
            c,
            "POST /auth/token HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let r = read_response(&mut c).expect("response on the same connection");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), None);
    }
    // Pipelined: two requests in one write, two answers in order.
    c.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /nope-on-auth HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut c).unwrap().json()["status"], "ok");
    assert_eq!(read_response(&mut c).unwrap().status, 200, "SPA fallback answers the second");
}

#[test]
fn http_1_0_is_answered_and_closed() {
    let s = TestServer::start();
    let mut c = s.connect();
    use std::io::{Read, Write};
    c.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let r = read_response(&mut c).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).unwrap(), 0, "closed after the answer");
}

/// The status of a WebSocket upgrade with `token` (101, or the refusal's).
fn upgrade_status(s: &TestServer, token: &str) -> u16 {
    let mut c = s.raw_subscriber(token);
    read_response(&mut c).expect("an answer to the upgrade").status
}

#[test]
fn one_key_past_its_token_bound_retires_its_oldest_tokens_and_locks_no_one_out() {
    let s = TestServer::start_with(
        Opts::default().arg("--token-capacity", "500").arg("--tokens-per-key", "100"),
    );
    let early = s.token();
    let mut session = s.ws(&early);
    next_of_type(&mut session, "ticker");

    // More tokens than the whole table holds, all for one key: every request succeeds.
    let flood: Vec<String> = (0..600).map(|_| s.token()).collect();
    // Only the key's newest 100 stay live; the older ones are refused at upgrade...
    for (i, token) in std::iter::once(&early).chain(&flood[..500]).enumerate() {
        assert_eq!(upgrade_status(&s, token), 401, "token {i} of 601 should be retired");
    }
    for (i, token) in flood[500..].iter().enumerate() {
        assert_eq!(upgrade_status(&s, token), 101, "token {} of 601 should work", 501 + i);
    }
    // ...but a session opened with a retired token before stays open and ticking.
    let seq = next_of_type(&mut session, "ticker")["seq"].as_u64().expect("seq");
    session.send(tungstenite::Message::Ping(b"still here".to_vec().into())).expect("ping");
    loop {
        match session.read().expect("the session is still open") {
            tungstenite::Message::Pong(p) => break assert_eq!(&p[..], b"still here"),
            tungstenite::Message::Close(f) => panic!("closed: {f:?}"),
            _ => {}
        }
    }
    assert!(next_of_type(&mut session, "ticker")["seq"].as_u64().expect("seq") > seq);

    // Another user's key still gets a token: the table is not the flooding key's.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crypto-ticker"))
        .args(["keys", "create", "--user", "bob", "--db"])
        .arg(s.db_path())
        .output()
        .expect("run the CLI");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bob_key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let r = s.post("/auth/token", &format!(r#"{{"api_key":"{bob_key}"}}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user_id"], "bob");
    assert_eq!(upgrade_status(&s, r.json()["token"].as_str().expect("token")), 101);
}

#[test]
fn with_the_derived_per_key_bound_one_key_cannot_fill_the_table() {
    // --tokens-per-key is not given: a tenth of the 500, 50 per key.
    let s = TestServer::start_with(Opts::default().arg("--token-capacity", "500"));
    for i in 0..600 {
        let r = s.post("/auth/token", &key_body(&s.demo_key));
        assert_eq!(r.status, 200, "login {i} of 600 with one key: {}", r.text());
    }
    let bob = keys_cli(&s.db_path(), &["create", "--user", "bob"]).trim().to_owned();
    let r = s.post("/auth/token", &key_body(&bob));
    assert_eq!((r.status, r.json()["user_id"].as_str()), (200, Some("bob")), "{}", r.text());
    assert_eq!(upgrade_status(&s, r.json()["token"].as_str().expect("token")), 101);
}

#[test]
fn a_per_key_bound_above_half_the_token_table_is_refused_at_start_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("auth.db");
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-ticker"))
        .args(["--addr", "127.0.0.1:0", "--token-capacity", "500", "--tokens-per-key", "600"])
        .arg("--db")
        .arg(&db)
        .output()
        .expect("run the server");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--tokens-per-key 600 is more than half of --token-capacity 500")
            && err.contains("at most 250"),
        "{err}"
    );
    assert!(!db.exists(), "refused before the database is touched");
}

const WRONG: &str = r#"{"api_key":"not-a-real-key-000000000000000000"}"#;

#[test]
fn ten_wrong_keys_from_an_address_never_refuse_the_next_valid_key_and_the_eleventh_gets_429() {
    let s = TestServer::start();
    for i in 0..10 {
        let r = s.post("/auth/token", WRONG);
        assert_eq!((r.status, r.error().as_str()), (401, "invalid API key"), "wrong key {i}");
    }
    let r = s.post("/auth/token", &key_body(&s.demo_key));
    assert_eq!(r.status, 200, "a valid key after ten failures: {}", r.text());
    let r = s.post("/auth/token", WRONG);
    assert_eq!((r.status, r.error().as_str()), (429, "too many failed attempts"));
    let retry: u64 = r.header("Retry-After").expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Beyond the limit, a valid key still gets its token.
    assert_eq!(s.post("/auth/token", &key_body(&s.demo_key)).status, 200);
    assert_eq!(s.metric("ticker_auth_requests_total{outcome=\"rate_limited\"}"), 1.0);
}

/// A server that trusts 127.0.0.1, the tests' own address, as a proxy: each test
/// client then claims an address of its own in `X-Forwarded-For`.
fn behind_a_proxy(opts: Opts) -> TestServer {
    TestServer::start_with(opts.arg("--trusted-proxies", "127.0.0.1"))
}

fn post_from(s: &TestServer, xff: &str, body: &str) -> HttpResponse {
    post_with(s.addr, "/auth/token", body, &[("X-Forwarded-For", xff)])
}

#[test]
fn behind_a_trusted_proxy_the_limit_counts_the_forwarded_address() {
    let s = behind_a_proxy(Opts::default().arg("--login-failures", "2"));
    for _ in 0..2 {
        assert_eq!(post_from(&s, "203.0.113.1", WRONG).status, 401);
    }
    assert_eq!(post_from(&s, "203.0.113.1", WRONG).status, 429);
    // Addresses the client wrote left of the proxy's entry are not believed.
    assert_eq!(post_from(&s, "203.0.113.2, 203.0.113.1", WRONG).status, 429);
    // Another client behind the same proxy has its own count.
    assert_eq!(post_from(&s, "203.0.113.2", WRONG).status, 401);
    // The forwarded address is the token's and the log's.
    let r = post_from(&s, "198.51.100.7", &key_body(&s.demo_key));
    assert_eq!(r.status, 200);
    let line = s.wait_for_log("token issued");
    assert_eq!(field(&line, "ip").as_deref(), Some("198.51.100.7"), "{line}");
}

#[test]
fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let s = TestServer::start_with(Opts::default().arg("--login-failures", "2"));
    assert_eq!(post_from(&s, "203.0.113.1", WRONG).status, 401);
    assert_eq!(post_from(&s, "203.0.113.2", WRONG).status, 401);
    // All three came from 127.0.0.1, whatever they said.
    assert_eq!(post_from(&s, "203.0.113.3", WRONG).status, 429);
    assert_eq!(post_from(&s, "198.51.100.7", &key_body(&s.demo_key)).status, 200);
    let line = s.wait_for_log("token issued");
    assert_eq!(field(&line, "ip").as_deref(), Some("127.0.0.1"), "{line}");
}

#[test]
fn an_address_with_its_bound_of_lookups_in_flight_gets_429_and_the_others_are_served() {
    // One worker and a locked database: each lookup holds the worker for SQLite's busy
    // timeout, so the exchanges queued behind it stay in flight until the lock goes.
    let s = behind_a_proxy(Opts::default().arg("--workers", "1").arg("--login-concurrency", "2"));
    let holder = lock_database(&s);
    let in_flight = |n: f64| {
        let deadline = std::time::Instant::now() + PATIENCE;
        while s.metric("ticker_auth_lookups_in_flight") != n {
            assert!(std::time::Instant::now() < deadline, "never {n} lookups in flight");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    let send = |xff: &'static str| {
        let (addr, body) = (s.addr, key_body(&s.demo_key));
        std::thread::spawn(move || {
            post_with(addr, "/auth/token", &body, &[("X-Forwarded-For", xff)])
        })
    };
    // Four other clients keep the worker busy for seconds...
    let busy: Vec<_> =
        ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"].into_iter().map(&send).collect();
    in_flight(4.0);
    // ...so two exchanges from 203.0.113.1 wait behind them.
    let queued = [send("203.0.113.1"), send("203.0.113.1")];
    in_flight(6.0);
    let r = post_from(&s, "203.0.113.1", &key_body(&s.demo_key));
    assert_eq!((r.status, r.error().as_str()), (429, "too many requests in progress"));
    assert_eq!(r.header("Retry-After"), Some("1"));
    // Another address is admitted meanwhile.
    let other = send("198.51.100.7");
    in_flight(7.0);
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    for t in busy.into_iter().chain(queued).chain([other]) {
        let r = t.join().unwrap();
        assert!(matches!(r.status, 200 | 500), "admitted exchanges are answered: {}", r.text());
    }
    in_flight(0.0);
    // The slots came back.
    assert_eq!(post_from(&s, "203.0.113.1", &key_body(&s.demo_key)).status, 200);
    assert_eq!(s.metric("ticker_auth_requests_total{outcome=\"address_busy\"}"), 1.0);
}

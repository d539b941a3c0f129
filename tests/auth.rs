//! `POST /auth/token`: one test per row of the SPEC table, plus token validation on the
//! WebSocket route.

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
    // SPEC: padded base64url(32 bytes) + "." + padded base64url(HMAC-SHA256): 44 + 1 + 44.
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
fn a_full_token_table_is_503_token_store_unavailable() {
    let s = TestServer::start_with(Opts::default().arg("--token-capacity", "2"));
    s.token();
    s.token();
    let r = s.post("/auth/token", &format!(r#"{{"api_key":"{}"}}"#, s.demo_key));
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

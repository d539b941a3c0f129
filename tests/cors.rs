//! CORS on the API routes (seed: `cors.allow.origins: "*"`).

use crate::util::*;

#[test]
fn a_preflight_gets_204_with_the_cors_headers() {
    let s = TestServer::start();
    let r = s.raw(
        b"OPTIONS /auth/token HTTP/1.1\r\nHost: t\r\nOrigin: http://app.example\r\n\
          Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("http://app.example"));
    assert_eq!(r.header("Access-Control-Allow-Methods"), Some("GET, POST, OPTIONS"));
    assert_eq!(
        r.header("Access-Control-Allow-Headers"),
        Some("Origin, Content-Type, Accept, Authorization, X-Requested-With")
    );
    assert_eq!(r.header("Access-Control-Max-Age"), Some("86400"));
    assert_eq!(r.header("Vary"), Some("Origin"));
}

#[test]
fn an_actual_request_echoes_the_origin() {
    let s = TestServer::start();
    let body = format!(r#"{{"api_key":"{}"}}"#, s.demo_key);
    let r = s.raw(
        format!(
            "POST /auth/token HTTP/1.1\r\nHost: t\r\nOrigin: http://app.example\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("http://app.example"));
    assert_eq!(r.header("Vary"), Some("Origin"));
    // Errors carry CORS headers too, so a browser can read them.
    let r = s.raw(b"POST /auth/token HTTP/1.1\r\nHost: t\r\nOrigin: http://app.example\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx");
    assert_eq!(r.status, 400);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("http://app.example"));
}

#[test]
fn a_disallowed_origin_gets_no_cors_headers_but_an_answer() {
    let s = TestServer::start_with(Opts::default().arg("--allowed-origins", "https://ok.example"));
    let r = s.raw(b"GET /healthz HTTP/1.1\r\nHost: t\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
    let r = s.raw(b"OPTIONS /auth/token HTTP/1.1\r\nHost: t\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
}

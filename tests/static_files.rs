//! Static files from `public/`: content types, SPA fallback, traversal refused.

use crate::util::*;

#[test]
fn the_index_is_served_at_root_and_by_name() {
    let s = TestServer::start();
    let index = std::fs::read(repo_path("public/index.html")).unwrap();
    for path in ["/", "/index.html"] {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.body, index);
        assert_eq!(r.header("Content-Length").unwrap().parse::<usize>().unwrap(), index.len());
        assert!(r.header("Last-Modified").is_some());
    }
}

#[test]
fn scripts_and_styles_have_their_content_types() {
    let s = TestServer::start();
    assert_eq!(s.get("/app.js").header("Content-Type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(s.get("/style.css").header("Content-Type"), Some("text/css; charset=utf-8"));
}

#[test]
fn an_unknown_path_falls_back_to_the_index() {
    let s = TestServer::start();
    let r = s.get("/markets/btc");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, std::fs::read(repo_path("public/index.html")).unwrap());
    assert_eq!(s.get("/auth/unknown").status, 404, "API prefixes do not fall back");
}

#[test]
fn if_modified_since_gives_304_and_head_gives_no_body() {
    let s = TestServer::start();
    let first = s.get("/app.js");
    let lm = first.header("Last-Modified").unwrap().to_owned();
    let r = s.raw(format!("GET /app.js HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {lm}\r\nConnection: close\r\n\r\n").as_bytes());
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let mut c = s.connect();
    use std::io::Write;
    c.write_all(b"HEAD /app.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let r = read_response_to(&mut c, true).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length").unwrap(), first.body.len().to_string());
    use std::io::Read;
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "HEAD has no body");
}

#[test]
fn traversal_never_serves_a_file_outside_public() {
    let s = TestServer::start();
    // A file beside public/ that a traversal would reach.
    let secret = std::fs::read(repo_path("Cargo.toml")).unwrap();
    for path in [
        "/../Cargo.toml",
        "/..%2fCargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2E%2E%2FCargo.toml",
        "/public/../../Cargo.toml",
        "/....//Cargo.toml",
        "//etc/passwd",
        "/%00",
    ] {
        let r = s.get(path);
        assert_ne!(r.body, secret, "{path} leaked Cargo.toml");
        assert!(!r.text().contains("root:x:0:0"), "{path} leaked /etc/passwd");
        assert!(r.status == 404 || r.status == 400 || r.status == 200, "{path}: {}", r.status);
    }
}

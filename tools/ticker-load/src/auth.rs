//! Exchanges an API key for a token with `POST /auth/token`: blocking, once per `--url`
//! before the event loops start ([`fetch_token`], over TLS for `https://` and `wss://`);
//! and the same request and answer as pure code, for the churn reconnects the engine
//! makes without blocking.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::tls::{self, TlsFailure, TlsTarget};

const TIMEOUT: Duration = Duration::from_secs(10);
/// A token answer longer than this is not one.
pub(crate) const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) enum AuthError {
    Io(io::Error),
    /// The TLS handshake or a TLS record failed (an untrusted certificate, most often).
    Tls(rustls::Error),
    /// A non-200 answer, with the body (the server's `{"error": ...}`).
    Status(u16, String),
    BadResponse(&'static str),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Io(e) => write!(f, "POST /auth/token: {e}"),
            AuthError::Tls(e) => write!(f, "POST /auth/token: {}; rustls: {e}", TlsFailure::of(e)),
            AuthError::Status(code, body) => write!(f, "POST /auth/token: HTTP {code} {body}"),
            AuthError::BadResponse(why) => write!(f, "POST /auth/token: {why}"),
        }
    }
}

impl From<io::Error> for AuthError {
    /// rustls' streams report TLS errors as I/O errors that carry them.
    fn from(e: io::Error) -> Self {
        match tls::inner_error(&e) {
            Some(tls) => AuthError::Tls(tls.clone()),
            None => AuthError::Io(e),
        }
    }
}

/// Gets a token for `api_key` from `http://host_header/auth/token`, or `https://` when
/// `tls` is given.
pub(crate) fn fetch_token(
    addr: SocketAddr,
    tls: Option<&TlsTarget>,
    host_header: &str,
    api_key: &str,
) -> Result<String, AuthError> {
    let mut request = Vec::with_capacity(256);
    write_request(&mut request, host_header, api_key);
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    match tls {
        None => exchange(stream, &request),
        Some(target) => {
            let session = target.session().map_err(AuthError::Tls)?;
            exchange(rustls::StreamOwned::new(session, stream), &request)
        }
    }
}

/// Sends `request` and reads the answer to its end; the TLS handshake, if any, happens
/// within the first write.
fn exchange(mut stream: impl Read + Write, request: &[u8]) -> Result<String, AuthError> {
    stream.write_all(request)?;
    stream.flush()?;

    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((status, body)) = parse_response(&buf)? {
            return token_from(status, body);
        }
        if buf.len() > MAX_RESPONSE {
            return Err(AuthError::BadResponse("response too large"));
        }
        match stream.read(&mut chunk)? {
            0 => return Err(AuthError::BadResponse("connection closed before the full response")),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Appends `POST /auth/token` for `api_key`, with `Connection: close`.
pub(crate) fn write_request(out: &mut Vec<u8>, host_header: &str, api_key: &str) {
    let body = serde_json::json!({ "api_key": api_key }).to_string();
    let head = format!(
        "POST /auth/token HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: ticker-load\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body.as_bytes());
}

/// `Some((status, body))` once the head and a `Content-Length` body are complete; `None`
/// while they are not (nothing is consumed).
pub(crate) fn parse_response(buf: &[u8]) -> Result<Option<(u16, &[u8])>, AuthError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(AuthError::BadResponse("not an HTTP response")),
    };
    let status = response.code.unwrap_or(0);
    let header = |name: &str| response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name));
    if header("transfer-encoding").is_some() {
        return Err(AuthError::BadResponse("chunked responses are not supported"));
    }
    let len = header("content-length")
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
        .ok_or(AuthError::BadResponse("no Content-Length"))?;
    Ok(buf.get(head_len..head_len + len).map(|body| (status, body)))
}

/// The token of a complete answer, or why there is none.
pub(crate) fn token_from(status: u16, body: &[u8]) -> Result<String, AuthError> {
    if status != 200 {
        return Err(AuthError::Status(status, String::from_utf8_lossy(body).into_owned()));
    }
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| AuthError::BadResponse("body is not JSON"))?;
    match json.get("token").and_then(|t| t.as_str()) {
        Some(token) if !token.is_empty() => Ok(token.to_string()),
        _ => Err(AuthError::BadResponse("no \"token\" in the body")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(response: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"}") {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            assert!(String::from_utf8_lossy(&got).contains(r#"{"api_key":"K\"ey"}"#));
            s.write_all(response.as_bytes()).unwrap();
        });
        addr
    }

    #[test]
    fn a_200_answer_yields_its_token() {
        let body = r#"{"token":"abc.def","user_id":"demo","role":"user","expires_in":3600}"#;
        let response = Box::leak(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                .into_boxed_str(),
        );
        let addr = serve_once(response);
        assert_eq!(fetch_token(addr, None, "h", "K\"ey").unwrap(), "abc.def");
    }

    #[test]
    fn an_answer_split_anywhere_is_partial_until_its_body_is_complete() {
        let body = r#"{"token":"t.1"}"#;
        let whole = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        for cut in 0..whole.len() {
            assert!(parse_response(&whole.as_bytes()[..cut]).unwrap().is_none(), "cut {cut}");
        }
        let (status, got) = parse_response(whole.as_bytes()).unwrap().unwrap();
        assert_eq!(token_from(status, got).unwrap(), "t.1");
        assert!(matches!(token_from(503, b"{}"), Err(AuthError::Status(503, _))));
        assert!(matches!(token_from(200, b"{}"), Err(AuthError::BadResponse(_))));
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn the_request_carries_the_key_as_json() {
        let mut out = Vec::new();
        write_request(&mut out, "h:1", "K\"ey");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("POST /auth/token HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(text.contains("Content-Length: 19\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"api_key\":\"K\\\"ey\"}"), "{text}");
    }

    #[test]
    fn over_tls_a_server_that_does_not_speak_it_is_a_tls_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut hello = [0u8; 512];
            let _ = s.read(&mut hello);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        });
        let config = crate::tls::client_config(None).unwrap();
        let target = TlsTarget::new(config, "localhost").unwrap();
        match fetch_token(addr, Some(&target), "localhost", "k") {
            Err(e @ AuthError::Tls(_)) => assert!(e.to_string().contains("TLS"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_401_answer_is_an_error_with_the_body() {
        let addr = serve_once(
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 29\r\n\r\n{\"error\": \"invalid API key\"}\r\n",
        );
        match fetch_token(addr, None, "h", "K\"ey") {
            Err(AuthError::Status(401, body)) => assert!(body.contains("invalid API key")),
            other => panic!("{other:?}"),
        }
    }
}

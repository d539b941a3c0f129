//! The client side of the RFC 6455 opening handshake: the upgrade request, and the
//! check of the server's answer (101, `Upgrade: websocket`, `Sec-WebSocket-Accept`).
//! A refusal's short JSON body is read too: a subscription refused at the upgrade
//! (`?symbols=`) says why there. Pure code; the engine writes and reads the bytes.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use crate::frame::Status;
use crate::subscribe::Refusal;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A response head longer than this is not a WebSocket handshake answer.
pub(crate) const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// A refusal's body up to this size is waited for and read (crypto-ticker's are JSON
/// lines of a few dozen bytes); a longer one is not.
const MAX_ERROR_BODY: usize = 4 * 1024;

/// Why a server's answer to the upgrade request is not a WebSocket handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeError {
    /// Any status other than 101 (401 for a bad token, 404 for a wrong path...).
    Status(u16),
    /// A status other than 101 whose JSON body names a subscription refusal
    /// (`{"error":"unknown symbol",...}` for `?symbols=`).
    Refused(u16, Refusal),
    /// 101 without `Upgrade: websocket`.
    NotWebSocket,
    /// 101 with a missing or wrong `Sec-WebSocket-Accept`.
    BadAccept,
    /// Not HTTP, or a head over [`MAX_RESPONSE_HEAD`].
    Malformed,
}

/// A fresh `Sec-WebSocket-Key` from 16 random bytes.
pub(crate) fn new_key(random: [u8; 16]) -> String {
    STANDARD.encode(random)
}

/// The `Sec-WebSocket-Accept` a server must answer to `key` (RFC 6455 section 4.2.2).
pub(crate) fn accept_for(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Appends the upgrade request. `authorization` is the whole header value, if any.
pub(crate) fn write_request(
    out: &mut Vec<u8>,
    host: &str,
    path: &str,
    authorization: Option<&str>,
    key: &str,
) {
    let mut head = String::with_capacity(256);
    // Writing to a String cannot fail.
    let _ = write!(
        head,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: ticker-load\r\n"
    );
    if let Some(value) = authorization {
        let _ = write!(head, "Authorization: {value}\r\n");
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
}

/// Checks the response head at the start of `buf`. On `Complete`, `consumed` is the
/// head length; any bytes after it are already WebSocket frames.
pub(crate) fn parse_response(buf: &[u8], accept: &str) -> Result<Status<()>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let consumed = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_RESPONSE_HEAD => {
            return Ok(Status::Partial);
        }
        Ok(httparse::Status::Partial) | Err(_) => return Err(HandshakeError::Malformed),
    };
    let header = |name: &str| {
        response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    };
    match response.code {
        Some(101) => {}
        Some(code) => {
            let length = header("content-length")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<usize>().ok());
            return refusal(code, length, &buf[consumed..]);
        }
        None => return Err(HandshakeError::Malformed),
    }
    if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket")) {
        return Err(HandshakeError::NotWebSocket);
    }
    if header("sec-websocket-accept").map(<[u8]>::trim_ascii) != Some(accept.as_bytes()) {
        return Err(HandshakeError::BadAccept);
    }
    Ok(Status::Complete { value: (), consumed })
}

/// A status other than 101, with the subscription refusal its body names if it has a
/// short JSON body naming one; `Partial` while such a body is still arriving.
fn refusal(code: u16, length: Option<usize>, body: &[u8]) -> Result<Status<()>, HandshakeError> {
    let Some(length) = length.filter(|n| (1..=MAX_ERROR_BODY).contains(n)) else {
        return Err(HandshakeError::Status(code));
    };
    if body.len() < length {
        return Ok(Status::Partial);
    }
    match Refusal::of_json(&body[..length]) {
        Refusal::Other => Err(HandshakeError::Status(code)),
        refusal => Err(HandshakeError::Refused(code, refusal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_matches_the_rfc_example() {
        assert_eq!(accept_for("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_new_key_is_24_base64_characters() {
        assert_eq!(new_key([7; 16]).len(), 24);
    }

    #[test]
    fn the_request_carries_the_key_and_the_bearer_token() {
        let mut out = Vec::new();
        write_request(&mut out, "h:1", "/ws/ticker", Some("Bearer T"), "K");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /ws/ticker HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(text.contains("Sec-WebSocket-Key: K\r\n"));
        assert!(text.ends_with("Authorization: Bearer T\r\n\r\n"));
    }

    const OK: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

    #[test]
    fn a_correct_101_completes_and_leaves_the_frames_after_it() {
        let accept = accept_for("dGhlIHNhbXBsZSBub25jZQ==");
        let mut buf = OK.to_vec();
        buf.extend_from_slice(&[0x81, 0]);
        assert_eq!(
            parse_response(&buf, &accept),
            Ok(Status::Complete { value: (), consumed: OK.len() })
        );
        for end in 0..OK.len() {
            assert_eq!(parse_response(&OK[..end], &accept), Ok(Status::Partial));
        }
    }

    #[test]
    fn wrong_answers_are_typed() {
        let accept = accept_for("other");
        assert_eq!(parse_response(OK, &accept), Err(HandshakeError::BadAccept));
        let denied = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse_response(denied, &accept), Err(HandshakeError::Status(401)));
        let plain = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        assert_eq!(parse_response(plain, &accept), Err(HandshakeError::NotWebSocket));
        assert_eq!(parse_response(b"SSH-2.0-x\r\n\r\n", &accept), Err(HandshakeError::Malformed));
        let not_found =
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 21\r\n\r\n{\"error\":\"not found\"}";
        assert_eq!(parse_response(not_found, &accept), Err(HandshakeError::Status(404)));
        let endless = vec![b'a'; MAX_RESPONSE_HEAD + 1];
        assert_eq!(parse_response(&endless, &accept), Err(HandshakeError::Malformed));
    }

    #[test]
    fn a_subscription_refused_at_the_upgrade_says_why_once_its_body_is_in() {
        let body = r#"{"error":"unknown symbol","symbols":["NOPE-USD"]}"#;
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let accept = accept_for("k");
        let head_len = answer.len() - body.len();
        for end in head_len..answer.len() {
            assert_eq!(parse_response(&answer.as_bytes()[..end], &accept), Ok(Status::Partial));
        }
        assert_eq!(
            parse_response(answer.as_bytes(), &accept),
            Err(HandshakeError::Refused(400, Refusal::UnknownSymbol))
        );
        let busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 54\r\n\r\n\
{\"error\":\"too many distinct symbol sets\",\"symbols\":[]}";
        assert_eq!(
            parse_response(busy, &accept),
            Err(HandshakeError::Refused(503, Refusal::TooManySets))
        );
    }
}

//! The client side of the RFC 6455 opening handshake: the upgrade request, and the
//! check of the server's answer (101, `Upgrade: websocket`, `Sec-WebSocket-Accept`).
//! With `--deflate` the request offers permessage-deflate and the answer's
//! `Sec-WebSocket-Extensions` says what the server accepted (see [`crate::deflate`]).
//! A refusal's short JSON body is read too: a subscription refused at the upgrade
//! (`?symbols=`) says why there. Pure code; the engine writes and reads the bytes.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use crate::deflate::{self, Accepted};
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
    /// 101 with a `Sec-WebSocket-Extensions` answer that was not offered or that the
    /// tool cannot accept (RFC 6455 section 9.1: the client fails the connection).
    BadExtension,
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

/// Appends the upgrade request. `authorization` is the whole header value, if any;
/// `deflate` offers permessage-deflate.
pub(crate) fn write_request(
    out: &mut Vec<u8>,
    host: &str,
    path: &str,
    authorization: Option<&str>,
    key: &str,
    deflate: bool,
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
    if deflate {
        let _ = write!(head, "Sec-WebSocket-Extensions: {}\r\n", deflate::OFFER);
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
}

/// Checks the response head at the start of `buf`. On `Complete`, `consumed` is the
/// head length (any bytes after it are already WebSocket frames) and the value is the
/// permessage-deflate the server accepted, if it did; `offered` says whether the request
/// offered it (an answer to an offer not made fails the connection).
pub(crate) fn parse_response(
    buf: &[u8],
    accept: &str,
    offered: bool,
) -> Result<Status<Option<Accepted>>, HandshakeError> {
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
    let answers: Vec<&[u8]> = response
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|h| h.value.trim_ascii())
        .filter(|v| !v.is_empty())
        .collect();
    let accepted = match answers.as_slice() {
        [] => None,
        [answer] if offered => {
            let text = std::str::from_utf8(answer).map_err(|_| HandshakeError::BadExtension)?;
            Some(deflate::parse_answer(text).map_err(|_| HandshakeError::BadExtension)?)
        }
        _ => return Err(HandshakeError::BadExtension),
    };
    Ok(Status::Complete { value: accepted, consumed })
}

/// A status other than 101, with the subscription refusal its body names if it has a
/// short JSON body naming one; `Partial` while such a body is still arriving.
fn refusal<T>(code: u16, length: Option<usize>, body: &[u8]) -> Result<Status<T>, HandshakeError> {
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
        write_request(&mut out, "h:1", "/ws/ticker", Some("Bearer T"), "K", false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /ws/ticker HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(text.contains("Sec-WebSocket-Key: K\r\n"));
        assert!(text.ends_with("Authorization: Bearer T\r\n\r\n"));
        assert!(!text.contains("Extensions"));
        let mut out = Vec::new();
        write_request(&mut out, "h:1", "/ws/ticker", None, "K", true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ));
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
            parse_response(&buf, &accept, false),
            Ok(Status::Complete { value: None, consumed: OK.len() })
        );
        for end in 0..OK.len() {
            assert_eq!(parse_response(&OK[..end], &accept, false), Ok(Status::Partial));
        }
    }

    #[test]
    fn the_extension_answer_says_what_the_server_accepted() {
        let accept = accept_for("dGhlIHNhbXBsZSBub25jZQ==");
        let with = |ext: &str| {
            let head = String::from_utf8_lossy(&OK[..OK.len() - 2]).into_owned();
            format!("{head}Sec-WebSocket-Extensions: {ext}\r\n\r\n").into_bytes()
        };
        let answer =
            with("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        let Ok(Status::Complete { value: Some(a), .. }) = parse_response(&answer, &accept, true)
        else {
            panic!("not accepted")
        };
        assert!(a.server_no_context_takeover && a.client_no_context_takeover);
        assert_eq!(
            parse_response(OK, &accept, true),
            Ok(Status::Complete { value: None, consumed: OK.len() }),
            "no answer: the session goes on uncompressed"
        );
        // Not offered, not the one offered, or parameters it cannot take: fail.
        assert_eq!(parse_response(&answer, &accept, false), Err(HandshakeError::BadExtension));
        let other = with("x-webkit-deflate-frame");
        assert_eq!(parse_response(&other, &accept, true), Err(HandshakeError::BadExtension));
        let bad = with("permessage-deflate; server_max_window_bits=99");
        assert_eq!(parse_response(&bad, &accept, true), Err(HandshakeError::BadExtension));
    }

    #[test]
    fn wrong_answers_are_typed() {
        let accept = accept_for("other");
        assert_eq!(parse_response(OK, &accept, false), Err(HandshakeError::BadAccept));
        let denied = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse_response(denied, &accept, false), Err(HandshakeError::Status(401)));
        let plain = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        assert_eq!(parse_response(plain, &accept, false), Err(HandshakeError::NotWebSocket));
        assert_eq!(
            parse_response(b"SSH-2.0-x\r\n\r\n", &accept, false),
            Err(HandshakeError::Malformed)
        );
        let not_found =
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 21\r\n\r\n{\"error\":\"not found\"}";
        assert_eq!(parse_response(not_found, &accept, false), Err(HandshakeError::Status(404)));
        let endless = vec![b'a'; MAX_RESPONSE_HEAD + 1];
        assert_eq!(parse_response(&endless, &accept, false), Err(HandshakeError::Malformed));
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
            assert_eq!(
                parse_response(&answer.as_bytes()[..end], &accept, false),
                Ok(Status::Partial)
            );
        }
        assert_eq!(
            parse_response(answer.as_bytes(), &accept, false),
            Err(HandshakeError::Refused(400, Refusal::UnknownSymbol))
        );
        let busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 54\r\n\r\n\
{\"error\":\"too many distinct symbol sets\",\"symbols\":[]}";
        assert_eq!(
            parse_response(busy, &accept, false),
            Err(HandshakeError::Refused(503, Refusal::TooManySets))
        );
    }
}

//! The opening handshake (RFC 6455 section 4.2): validate the upgrade request, derive
//! `Sec-WebSocket-Accept`, build the 101 answer. Token and origin checks come before
//! this, in the server.

use base64::Engine as _;

use crate::error::HttpError;
use crate::http::request::{Method, Request};

/// `base64(SHA-1(key + GUID))`, via tungstenite (an independent implementation).
pub fn accept_key(sec_websocket_key: &str) -> String {
    tungstenite::handshake::derive_accept_key(sec_websocket_key.as_bytes())
}

/// Checks the upgrade headers; returns the client's `Sec-WebSocket-Key`.
pub fn check_upgrade(req: &Request<'_>) -> Result<String, HttpError> {
    if req.method != Method::Get {
        return Err(HttpError::MethodNotAllowed { allow: "GET, OPTIONS" });
    }
    if !req.header_has_token("Upgrade", "websocket")
        || !req.header_has_token("Connection", "upgrade")
    {
        return Err(HttpError::UpgradeRequired);
    }
    if req.header("Sec-WebSocket-Version") != Some("13") {
        return Err(HttpError::UnsupportedWebSocketVersion);
    }
    let key = req.header("Sec-WebSocket-Key").ok_or(HttpError::BadWebSocketKey)?;
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(bytes) if bytes.len() == 16 => Ok(key.to_owned()),
        _ => Err(HttpError::BadWebSocketKey),
    }
}

/// The `101 Switching Protocols` head, with the agreed `Sec-WebSocket-Extensions`.
pub fn switching_protocols(accept: &str, extensions: Option<&str>) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(extensions) = extensions {
        head.push_str(&format!("Sec-WebSocket-Extensions: {extensions}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(extra: &str) -> Request<'static> {
        // Leaked: a test's request must outlive the parse that borrows it.
        let raw: &'static str = Box::leak(
            format!("GET /ws/ticker HTTP/1.1\r\nHost: x\r\n{extra}\r\n").into_boxed_str(),
        );
        crate::http::request::complete(raw)
    }

    const GOOD: &str = "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    #[test]
    fn the_rfc_example_key_gives_the_rfc_accept() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(check_upgrade(&req(GOOD)), Ok("dGhlIHNhbXBsZSBub25jZQ==".into()));
    }

    #[test]
    fn each_missing_piece_has_its_error() {
        assert_eq!(check_upgrade(&req("")), Err(HttpError::UpgradeRequired));
        let v8 = GOOD.replace("Version: 13", "Version: 8");
        assert_eq!(check_upgrade(&req(&v8)), Err(HttpError::UnsupportedWebSocketVersion));
        let short_key = GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
        assert_eq!(check_upgrade(&req(&short_key)), Err(HttpError::BadWebSocketKey));
        let no_key = GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
        assert_eq!(check_upgrade(&req(&no_key)), Err(HttpError::BadWebSocketKey));
    }
}

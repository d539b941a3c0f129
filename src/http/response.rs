//! Response building: status line, headers, JSON error bodies. Pure; the event loop
//! writes the bytes.

use std::time::SystemTime;

use crate::error::HttpError;

/// A response before serialization. Handlers fill status, headers and body; the event
/// loop adds what depends on the connection (`Connection: close`, CORS) and serializes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// `HEAD`: send `Content-Length` of the body but not the body itself.
    pub head_only: bool,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: Vec::new(), head_only: false }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut r = Response::new(status).header("Content-Type", "application/json");
        r.body = value.to_string().into_bytes();
        r
    }

    /// The error shape: `{"error": "..."}` plus the headers the error requires.
    pub fn error(err: &HttpError) -> Response {
        let body = match err {
            HttpError::Symbols(e) => {
                serde_json::json!({ "error": e.message(), "symbols": e.symbols() })
            }
            _ => serde_json::json!({ "error": err.message() }),
        };
        let mut r = Response::json(err.status(), &body);
        match err {
            HttpError::MethodNotAllowed { allow } => r = r.header("Allow", *allow),
            HttpError::UnsupportedWebSocketVersion => r = r.header("Sec-WebSocket-Version", "13"),
            HttpError::TooManyRequests { retry_after_secs } => {
                r = r.header("Retry-After", retry_after_secs.to_string())
            }
            HttpError::AddressBusy => r = r.header("Retry-After", "1"),
            _ => {}
        }
        r
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Serializes the head and body. `keep_alive: false` adds `Connection: close`.
    pub fn to_bytes(&self, keep_alive: bool, now: SystemTime) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + self.body.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason_phrase(self.status).as_bytes());
        out.extend_from_slice(b"\r\nServer: crypto-ticker\r\nDate: ");
        out.extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        // 1xx, 204 and 304 carry no body and no Content-Length (RFC 9110 8.6).
        if !matches!(self.status, 100..=199 | 204 | 304) {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(self.body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !self.head_only && !matches!(self.status, 204 | 304) {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_json_bodies_and_their_extra_headers() {
        let r = Response::error(&HttpError::MethodNotAllowed { allow: "POST, OPTIONS" });
        let text = String::from_utf8(r.to_bytes(true, SystemTime::UNIX_EPOCH)).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("Allow: POST, OPTIONS\r\n"));
        assert!(text.contains("Content-Type: application/json\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"error\":\"method not allowed\"}"));
        let r = Response::error(&HttpError::TooManyRequests { retry_after_secs: 42 });
        assert!(r.headers.contains(&("Retry-After", "42".into())));
    }

    #[test]
    fn head_responses_keep_the_length_but_not_the_body() {
        let mut r = Response::new(200);
        r.body = b"hello".to_vec();
        r.head_only = true;
        let text = String::from_utf8(r.to_bytes(false, SystemTime::UNIX_EPOCH)).unwrap();
        assert!(text.contains("Content-Length: 5\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}

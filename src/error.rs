//! Every error the server answers with, one variant per rule, and the single place where
//! each becomes an HTTP status (with its JSON body) or a WebSocket close code.
//!
//! Tests follow this file as a checklist: each variant has a test that provokes it
//! through a real socket and asserts the status or close code mapped here.

use std::fmt;

/// Errors answered with an HTTP status and a JSON body `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Request line or headers not valid HTTP/1.x.
    Malformed,
    /// Request head larger than the configured limit (16 KiB).
    HeadTooLarge,
    /// More than the configured number of headers (100).
    TooManyHeaders,
    /// Declared or actual body larger than the configured limit (16 KiB).
    BodyTooLarge,
    /// Any `Transfer-Encoding`: bodies are accepted only with `Content-Length`.
    UnsupportedTransferEncoding,
    /// A stalled partial request head.
    RequestTimeout,
    NotFound,
    /// Method not allowed on this path; `allow` is the `Allow` header value.
    MethodNotAllowed {
        allow: &'static str,
    },
    /// `GET /ws/ticker` without `Upgrade: websocket`.
    UpgradeRequired,
    /// `Sec-WebSocket-Version` other than 13 (answered with `Sec-WebSocket-Version: 13`).
    UnsupportedWebSocketVersion,
    /// Missing or malformed `Sec-WebSocket-Key`.
    BadWebSocketKey,
    /// `?delta=` other than `0` or `1`.
    BadDeltaParameter,
    /// WebSocket `Origin` not in the allowed origins.
    OriginNotAllowed,
    /// Missing, invalid, expired or revoked token on a protected route.
    AuthenticationRequired,
    /// `/auth/token` body is not JSON.
    InvalidJson,
    /// `api_key` missing, not a string, or empty.
    ApiKeyRequired,
    /// Unknown or revoked API key.
    InvalidApiKey,
    /// A wrong key from an address beyond its failed-login limit (a valid key is never
    /// refused for it); retry after this many seconds.
    TooManyRequests {
        retry_after_secs: u64,
    },
    /// The client's address already has its bound of token exchanges in flight; refused
    /// before any lookup, retry after a second.
    AddressBusy,
    /// SQLite could not be opened or queried.
    DatabaseUnavailable,
    /// The token table is full of live tokens.
    TokenStoreUnavailable,
    /// The connection limit is reached.
    ServerBusy,
    /// `--max-sessions-per-key` or `--max-sessions-per-ip` is reached.
    TooManySessions(SessionCap),
    /// `?symbols=` on an upgrade that cannot be served: unknown names, too many, none,
    /// or one distinct set too many (503). The body adds `"symbols": [..]`.
    Symbols(crate::control::SubscriptionError),
    /// A bug or an unexpected I/O failure; details go to the log, not the client.
    Internal,
}

impl HttpError {
    /// The HTTP status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed => 400,
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::UnsupportedTransferEncoding => 501,
            HttpError::RequestTimeout => 408,
            HttpError::NotFound => 404,
            HttpError::MethodNotAllowed { .. } => 405,
            HttpError::UpgradeRequired => 426,
            HttpError::UnsupportedWebSocketVersion
            | HttpError::BadWebSocketKey
            | HttpError::BadDeltaParameter => 400,
            HttpError::OriginNotAllowed => 403,
            HttpError::AuthenticationRequired => 401,
            HttpError::InvalidJson | HttpError::ApiKeyRequired => 400,
            HttpError::InvalidApiKey => 401,
            HttpError::TooManyRequests { .. } | HttpError::AddressBusy => 429,
            HttpError::DatabaseUnavailable | HttpError::Internal => 500,
            HttpError::TokenStoreUnavailable
            | HttpError::ServerBusy
            | HttpError::TooManySessions(_) => 503,
            HttpError::Symbols(crate::control::SubscriptionError::TooManySets(_)) => 503,
            HttpError::Symbols(_) => 400,
        }
    }

    /// The message placed in the JSON body (clients match on these: they do not change).
    pub fn message(&self) -> &'static str {
        match self {
            HttpError::Malformed => "malformed request",
            HttpError::HeadTooLarge => "request header fields too large",
            HttpError::TooManyHeaders => "too many header fields",
            HttpError::BodyTooLarge => "payload too large",
            HttpError::UnsupportedTransferEncoding => "transfer-encoding not supported",
            HttpError::RequestTimeout => "request timeout",
            HttpError::NotFound => "not found",
            HttpError::MethodNotAllowed { .. } => "method not allowed",
            HttpError::UpgradeRequired => "websocket upgrade required",
            HttpError::UnsupportedWebSocketVersion => "unsupported websocket version",
            HttpError::BadWebSocketKey => "invalid Sec-WebSocket-Key",
            HttpError::BadDeltaParameter => "delta must be 0 or 1",
            HttpError::OriginNotAllowed => "origin not allowed",
            HttpError::AuthenticationRequired => "authentication required",
            HttpError::InvalidJson => "invalid JSON",
            HttpError::ApiKeyRequired => "api_key required",
            HttpError::InvalidApiKey => "invalid API key",
            HttpError::TooManyRequests { .. } => "too many failed attempts",
            HttpError::AddressBusy => "too many requests in progress",
            HttpError::DatabaseUnavailable => "database unavailable",
            HttpError::TokenStoreUnavailable => "token store unavailable",
            HttpError::ServerBusy => "server busy",
            HttpError::TooManySessions(SessionCap::PerKey) => "too many sessions for this API key",
            HttpError::TooManySessions(SessionCap::PerIp) => "too many sessions from this address",
            HttpError::Symbols(e) => e.message(),
            HttpError::Internal => "internal error",
        }
    }

    /// Whether the connection must be closed after the answer: the request stream can no
    /// longer be trusted to be in sync, or the server wants the client gone (busy). The
    /// event loop asks only this; keep-alive is never decided elsewhere for an error.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            HttpError::Malformed
                | HttpError::HeadTooLarge
                | HttpError::TooManyHeaders
                | HttpError::BodyTooLarge
                | HttpError::UnsupportedTransferEncoding
                | HttpError::RequestTimeout
                | HttpError::ServerBusy
        )
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.message())
    }
}

impl std::error::Error for HttpError {}

/// Which cap refused a session (`--max-sessions-per-key` or `--max-sessions-per-ip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCap {
    PerKey,
    PerIp,
}

impl SessionCap {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            SessionCap::PerKey => "per_key",
            SessionCap::PerIp => "per_ip",
        }
    }
}

/// WebSocket close codes (RFC 6455 section 7.4.1): the ones the server sends by name,
/// and any other a peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    Normal,
    GoingAway,
    ProtocolError,
    Unsupported,
    InvalidPayload,
    PolicyViolation,
    MessageTooBig,
    InternalError,
    /// Any other code (never one of the codes named above: see [`CloseCode::from_u16`]).
    Other(u16),
}

impl CloseCode {
    pub fn as_u16(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::Unsupported => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::PolicyViolation => 1008,
            CloseCode::MessageTooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::Other(code) => code,
        }
    }

    pub fn from_u16(code: u16) -> CloseCode {
        match code {
            1000 => CloseCode::Normal,
            1001 => CloseCode::GoingAway,
            1002 => CloseCode::ProtocolError,
            1003 => CloseCode::Unsupported,
            1007 => CloseCode::InvalidPayload,
            1008 => CloseCode::PolicyViolation,
            1009 => CloseCode::MessageTooBig,
            1011 => CloseCode::InternalError,
            other => CloseCode::Other(other),
        }
    }

    /// Whether a peer may send this code in a close frame (RFC 6455 section 7.4).
    pub fn is_allowed_on_wire(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// The code a peer sent, if a peer may send it ([`CloseCode::is_allowed_on_wire`]).
    pub fn from_wire(code: u16) -> Option<CloseCode> {
        CloseCode::is_allowed_on_wire(code).then(|| CloseCode::from_u16(code))
    }
}

/// Violations of RFC 6455 by the client, one variant per rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// Client frames must be masked (section 5.1).
    UnmaskedFrameFromClient,
    /// RSV1-3 set without a negotiated extension (section 5.2).
    ReservedBitsSet,
    /// Opcode 0x3-0x7 or 0xB-0xF (section 5.2).
    UnknownOpcode(u8),
    /// Control frames must not be fragmented (section 5.5).
    FragmentedControlFrame,
    /// Control frame payloads are at most 125 bytes (section 5.5).
    ControlFrameTooBig,
    /// A continuation frame with no message in progress (section 5.4).
    UnexpectedContinuation,
    /// A new data frame while a fragmented message is in progress (section 5.4).
    ExpectedContinuation,
    /// 64-bit length with the most significant bit set, or a non-minimal length.
    InvalidLength,
    /// A close payload of one byte, or a code not allowed on the wire (section 7.4).
    InvalidCloseFrame,
    /// Text message or close reason that is not UTF-8 (section 8.1).
    InvalidUtf8,
    /// A message over the configured limit (32 KiB), before or after inflating.
    MessageTooBig,
    /// RSV1 on a control or continuation frame (RFC 7692 section 6.1).
    CompressedControlOrContinuation,
    /// A compressed message that is not valid DEFLATE (RFC 7692 section 6.2).
    BadCompressedData,
}

impl ProtocolError {
    /// The close code the server sends for this violation.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 => CloseCode::InvalidPayload,
            ProtocolError::MessageTooBig => CloseCode::MessageTooBig,
            ProtocolError::UnmaskedFrameFromClient
            | ProtocolError::ReservedBitsSet
            | ProtocolError::UnknownOpcode(_)
            | ProtocolError::FragmentedControlFrame
            | ProtocolError::ControlFrameTooBig
            | ProtocolError::UnexpectedContinuation
            | ProtocolError::ExpectedContinuation
            | ProtocolError::InvalidLength
            | ProtocolError::InvalidCloseFrame
            | ProtocolError::CompressedControlOrContinuation => CloseCode::ProtocolError,
            ProtocolError::BadCompressedData => CloseCode::InvalidPayload,
        }
    }

    /// The close reason sent with the code (short, ASCII).
    pub fn reason(&self) -> &'static str {
        match self {
            ProtocolError::UnmaskedFrameFromClient => "unmasked frame",
            ProtocolError::ReservedBitsSet => "reserved bits set",
            ProtocolError::UnknownOpcode(_) => "unknown opcode",
            ProtocolError::FragmentedControlFrame => "fragmented control frame",
            ProtocolError::ControlFrameTooBig => "control frame too big",
            ProtocolError::UnexpectedContinuation => "unexpected continuation",
            ProtocolError::ExpectedContinuation => "expected continuation",
            ProtocolError::InvalidLength => "invalid length",
            ProtocolError::InvalidCloseFrame => "invalid close frame",
            ProtocolError::InvalidUtf8 => "invalid utf-8",
            ProtocolError::MessageTooBig => "message too big",
            ProtocolError::CompressedControlOrContinuation => "rsv1 on control or continuation",
            ProtocolError::BadCompressedData => "bad compressed data",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.close_code().as_u16())
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_code_from_the_wire_keeps_its_number_and_a_forbidden_one_is_refused() {
        for code in 0..=u16::MAX {
            match CloseCode::from_wire(code) {
                Some(c) => assert_eq!(c.as_u16(), code),
                None => assert!(!CloseCode::is_allowed_on_wire(code), "{code}"),
            }
        }
        assert_eq!(CloseCode::from_wire(1008), Some(CloseCode::PolicyViolation));
        assert_eq!(CloseCode::from_wire(4000), Some(CloseCode::Other(4000)));
        assert_eq!(CloseCode::from_wire(1005), None);
    }
}

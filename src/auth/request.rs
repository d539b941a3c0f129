//! What the auth routes read from a request: the `/auth/token` body and the token of a
//! WebSocket upgrade or `/auth/revoke`. Pure functions over a parsed [`Request`].

use crate::error::HttpError;
use crate::http::request::Request;

/// Parses the `/auth/token` body `{"api_key": "..."}`: 400 `invalid JSON` or 400
/// `api_key required` when it cannot be used.
pub fn parse_token_request(body: &[u8]) -> Result<String, HttpError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| HttpError::InvalidJson)?;
    match value.get("api_key") {
        Some(serde_json::Value::String(key)) if !key.is_empty() => Ok(key.clone()),
        _ => Err(HttpError::ApiKeyRequired),
    }
}

/// The token of `Authorization: Bearer <token>`, if that header is present and well formed.
pub fn bearer_token<'b>(req: &Request<'b>) -> Option<&'b str> {
    let value = req.header("Authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("Bearer") && !token.is_empty()).then_some(token)
}

/// The token, first match wins: `Authorization: Bearer`, query `x-auth-token`, cookie
/// `x-auth-token` (browsers cannot set headers on a WebSocket, so they use the query).
pub fn extract_token(req: &Request<'_>) -> Option<String> {
    bearer_token(req)
        .map(str::to_owned)
        .or_else(|| req.query_param("x-auth-token").filter(|t| !t.is_empty()))
        .or_else(|| req.cookie("x-auth-token").filter(|t| !t.is_empty()).map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::http::request::complete as req;

    #[test]
    fn the_token_body_gives_a_key_or_one_of_two_400s() {
        assert_eq!(parse_token_request(br#"{"api_key":"k"}"#), Ok("k".into()));
        assert_eq!(parse_token_request(b"nope"), Err(HttpError::InvalidJson));
        assert_eq!(parse_token_request(b""), Err(HttpError::InvalidJson));
        assert_eq!(parse_token_request(b"{}"), Err(HttpError::ApiKeyRequired));
        assert_eq!(parse_token_request(br#"{"api_key":""}"#), Err(HttpError::ApiKeyRequired));
        assert_eq!(parse_token_request(br#"{"api_key":42}"#), Err(HttpError::ApiKeyRequired));
        assert_eq!(parse_token_request(br#"["api_key"]"#), Err(HttpError::ApiKeyRequired));
    }

    #[test]
    fn the_token_is_taken_from_header_then_query_then_cookie() {
        let r = req(
            "GET /ws/ticker?x-auth-token=q HTTP/1.1\r\nAuthorization: Bearer h\r\nCookie: x-auth-token=c\r\n\r\n",
        );
        assert_eq!(extract_token(&r).as_deref(), Some("h"));
        let r = req("GET /ws/ticker?x-auth-token=q HTTP/1.1\r\nCookie: x-auth-token=c\r\n\r\n");
        assert_eq!(extract_token(&r).as_deref(), Some("q"));
        let r = req("GET /ws/ticker HTTP/1.1\r\nCookie: x-auth-token=c\r\n\r\n");
        assert_eq!(extract_token(&r).as_deref(), Some("c"));
        let r = req("GET /ws/ticker HTTP/1.1\r\nAuthorization: Basic abc\r\n\r\n");
        assert_eq!(extract_token(&r), None);
    }
}

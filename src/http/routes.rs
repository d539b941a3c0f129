//! (method, path) → [`Route`]. Pure: decides what a request needs; the event loop then
//! answers at once, hands blocking work to a worker, or upgrades to WebSocket.
//!
//! | path            | methods            | route                                   |
//! |-----------------|--------------------|-----------------------------------------|
//! | any (preflight) | OPTIONS + ACRM     | 204 with CORS headers                   |
//! | `/auth/token`   | POST               | [`Route::IssueToken`] (worker: SQLite)  |
//! | `/auth/revoke`  | POST               | [`Route::RevokeToken`]                  |
//! | `/ws/ticker`    | GET                | [`Route::Upgrade`] (token, then 101)    |
//! | `/healthz`      | GET, HEAD          | [`Route::Health`]                       |
//! | `/metrics`      | GET, HEAD          | [`Route::Metrics`]                      |
//! | other `/auth/*`, `/ws/*` | any       | 404                                     |
//! | anything else   | GET, HEAD          | [`Route::Static`] with SPA fallback     |

use std::path::PathBuf;
use std::time::SystemTime;

use crate::error::HttpError;
use crate::http::cors::{self, AllowedOrigins};
use crate::http::request::{Method, Request};
use crate::http::response::Response;
use crate::http::static_files;

/// What a request asks for.
#[derive(Debug)]
pub enum Route {
    /// Answer at once with this response.
    Respond(Response),
    /// Exchange this API key for a token (SQLite lookup on a worker).
    IssueToken {
        api_key: String,
    },
    /// End this token (`POST /auth/revoke` with it as Bearer).
    RevokeToken {
        token: String,
    },
    /// Check the token, then upgrade to WebSocket.
    Upgrade {
        token: Option<String>,
    },
    Health,
    Metrics {
        head_only: bool,
    },
    /// A file under the public folder (read on a worker).
    Static(StaticRequest),
}

/// A static-file request whose path is already proven not to escape the public folder
/// lexically (symlinks are checked when the file is opened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRequest {
    /// Relative path below the public folder; empty means the index.
    pub relative: PathBuf,
    pub head_only: bool,
    pub if_modified_since: Option<SystemTime>,
}

const AUTH_TOKEN_ALLOW: &str = "POST, OPTIONS";
const WS_ALLOW: &str = "GET, OPTIONS";
const READ_ONLY_ALLOW: &str = "GET, HEAD, OPTIONS";

pub fn route(req: &Request, allowed: &AllowedOrigins) -> Route {
    if cors::is_preflight(req) {
        return Route::Respond(cors::preflight(req, allowed));
    }
    let path = req.path.as_str();
    match path {
        "/auth/token" => match req.method {
            Method::Post => match parse_token_request(&req.body) {
                Ok(api_key) => Route::IssueToken { api_key },
                Err(e) => Route::Respond(Response::error(&e)),
            },
            Method::Options => options(AUTH_TOKEN_ALLOW),
            _ => not_allowed(AUTH_TOKEN_ALLOW),
        },
        "/auth/revoke" => match req.method {
            Method::Post => match bearer_token(req) {
                Some(token) => Route::RevokeToken { token: token.to_owned() },
                None => Route::Respond(Response::error(&HttpError::AuthenticationRequired)),
            },
            Method::Options => options(AUTH_TOKEN_ALLOW),
            _ => not_allowed(AUTH_TOKEN_ALLOW),
        },
        "/ws/ticker" => match req.method {
            Method::Get => {
                if req.header("Origin").is_some_and(|o| !allowed.allows(o)) {
                    return Route::Respond(Response::error(&HttpError::OriginNotAllowed));
                }
                Route::Upgrade { token: extract_token(req) }
            }
            Method::Options => options(WS_ALLOW),
            _ => not_allowed(WS_ALLOW),
        },
        "/healthz" => match req.method {
            Method::Get | Method::Head => Route::Health,
            Method::Options => options(READ_ONLY_ALLOW),
            _ => not_allowed(READ_ONLY_ALLOW),
        },
        "/metrics" => match req.method {
            Method::Get | Method::Head => Route::Metrics { head_only: req.method == Method::Head },
            Method::Options => options(READ_ONLY_ALLOW),
            _ => not_allowed(READ_ONLY_ALLOW),
        },
        _ if path.starts_with("/auth/")
            || path.starts_with("/ws/")
            || path == "/ws"
            || path == "/auth" =>
        {
            Route::Respond(Response::error(&HttpError::NotFound))
        }
        _ => match req.method {
            Method::Get | Method::Head => match static_files::sanitize(path) {
                Some(relative) => Route::Static(StaticRequest {
                    relative,
                    head_only: req.method == Method::Head,
                    if_modified_since: req
                        .header("If-Modified-Since")
                        .and_then(|v| httpdate::parse_http_date(v).ok()),
                }),
                None => Route::Respond(Response::error(&HttpError::NotFound)),
            },
            Method::Options => options(READ_ONLY_ALLOW),
            _ => not_allowed(READ_ONLY_ALLOW),
        },
    }
}

/// Whether the route is an API route (CORS headers apply) rather than a static file.
pub fn is_api_path(path: &str) -> bool {
    path.starts_with("/auth/")
        || path.starts_with("/ws/")
        || path == "/healthz"
        || path == "/metrics"
}

fn options(allow: &'static str) -> Route {
    Route::Respond(Response::new(204).header("Allow", allow))
}

fn not_allowed(allow: &'static str) -> Route {
    Route::Respond(Response::error(&HttpError::MethodNotAllowed { allow }))
}

/// Parses the `/auth/token` body `{"api_key": "..."}` (SPEC table, rows 2 and 3).
pub fn parse_token_request(body: &[u8]) -> Result<String, HttpError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| HttpError::InvalidJson)?;
    match value.get("api_key") {
        Some(serde_json::Value::String(key)) if !key.is_empty() => Ok(key.clone()),
        _ => Err(HttpError::ApiKeyRequired),
    }
}

/// The token of `Authorization: Bearer <token>`, if that header is present and well formed.
pub fn bearer_token(req: &Request) -> Option<&str> {
    let value = req.header("Authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("Bearer") && !token.is_empty()).then_some(token)
}

/// The token, first match wins: `Authorization: Bearer`, query `x-auth-token`, cookie
/// `x-auth-token` (browsers cannot set headers on a WebSocket, so they use the query).
pub fn extract_token(req: &Request) -> Option<String> {
    bearer_token(req)
        .map(str::to_owned)
        .or_else(|| req.query_param("x-auth-token").filter(|t| !t.is_empty()))
        .or_else(|| req.cookie("x-auth-token").filter(|t| !t.is_empty()).map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{Limits, parse_request};
    use crate::parse::Status;

    fn req(raw: &str) -> Request {
        match parse_request(raw.as_bytes(), &Limits::default()) {
            Ok(Status::Complete { value, .. }) => value,
            other => panic!("{other:?}"),
        }
    }

    fn status_of(route: Route) -> u16 {
        match route {
            Route::Respond(r) => r.status,
            other => panic!("not an immediate answer: {other:?}"),
        }
    }

    #[test]
    fn the_token_body_table_of_the_spec() {
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

    #[test]
    fn wrong_methods_get_405_with_allow() {
        let Route::Respond(r) =
            route(&req("GET /auth/token HTTP/1.1\r\n\r\n"), &AllowedOrigins::Any)
        else {
            panic!()
        };
        assert_eq!(r.status, 405);
        assert!(r.headers.contains(&("Allow", "POST, OPTIONS".into())));
        assert_eq!(
            status_of(route(&req("POST /ws/ticker HTTP/1.1\r\n\r\n"), &AllowedOrigins::Any)),
            405
        );
        assert_eq!(
            status_of(route(&req("DELETE /index.html HTTP/1.1\r\n\r\n"), &AllowedOrigins::Any)),
            405
        );
    }

    #[test]
    fn unknown_api_paths_are_404_and_others_are_static() {
        assert_eq!(
            status_of(route(&req("GET /auth/nope HTTP/1.1\r\n\r\n"), &AllowedOrigins::Any)),
            404
        );
        assert_eq!(
            status_of(route(&req("GET /ws/other HTTP/1.1\r\n\r\n"), &AllowedOrigins::Any)),
            404
        );
        assert!(matches!(
            route(&req("GET /some/page HTTP/1.1\r\n\r\n"), &AllowedOrigins::Any),
            Route::Static(_)
        ));
        assert_eq!(
            status_of(route(&req("GET /%2e%2e/etc/passwd HTTP/1.1\r\n\r\n"), &AllowedOrigins::Any)),
            404
        );
    }

    #[test]
    fn a_websocket_from_a_disallowed_origin_is_403() {
        let allowed = AllowedOrigins::List(vec!["https://ok.example".into()]);
        let r = req("GET /ws/ticker HTTP/1.1\r\nOrigin: https://evil.example\r\n\r\n");
        assert_eq!(status_of(route(&r, &allowed)), 403);
        let r = req("GET /ws/ticker HTTP/1.1\r\nOrigin: https://ok.example\r\n\r\n");
        assert!(matches!(route(&r, &allowed), Route::Upgrade { token: None }));
    }
}

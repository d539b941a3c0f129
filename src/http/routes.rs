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

use crate::auth::request::{bearer_token, extract_token, parse_token_request};
use crate::error::HttpError;
use crate::http::cors::{self, AllowedOrigins};
use crate::http::request::{Method, Request};
use crate::http::response::Response;
use crate::http::static_files::{self, StaticRequest};
use crate::source::SourceHealth;

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

const AUTH_TOKEN_ALLOW: &str = "POST, OPTIONS";
const WS_ALLOW: &str = "GET, OPTIONS";
const READ_ONLY_ALLOW: &str = "GET, HEAD, OPTIONS";

pub fn route(req: &Request<'_>, allowed: &AllowedOrigins) -> Route {
    if cors::is_preflight(req) {
        return Route::Respond(cors::preflight(req, allowed));
    }
    let path = req.path;
    match path {
        "/auth/token" => match req.method {
            Method::Post => match parse_token_request(req.body) {
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
        _ if is_api_path(path) => Route::Respond(Response::error(&HttpError::NotFound)),
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

/// Whether a path is an API path (CORS headers apply; never a static file): the routes
/// of the table above and everything under the `/auth` and `/ws` prefixes. [`route`]
/// answers 404 for the ones it does not know, so the two cannot disagree.
pub fn is_api_path(path: &str) -> bool {
    const EXACT: [&str; 4] = ["/healthz", "/metrics", "/auth", "/ws"];
    const PREFIXES: [&str; 2] = ["/auth/", "/ws/"];
    EXACT.contains(&path) || PREFIXES.iter().any(|p| path.starts_with(p))
}

/// The answer to `/healthz`, for a load balancer and a person alike:
/// - 503 `{"status":"unavailable","reason":..}` while the node is cut off from its
///   cluster (`unhealthy`), or when a node's own price source is down: balancers move
///   users to a node whose prices are live (most route to every node when none is).
/// - 200 `{"status":"degraded","source":"down"}` on a cluster node whose leader's source
///   is down: every node shares that one source, so dropping them all would help nobody;
///   the prices are marked stale on the page and in every tick.
/// - 200 `{"status":"ok","source":"sim"|"live"|"partial"}` otherwise (`partial` adds
///   `stale_symbols`: how many prices are stale).
///
/// A node that finds its Redis through Sentinels adds `redis_master` ([`MasterInfo`]) to
/// each of these, once it has connected to a master.
pub fn health_response(
    unhealthy: Option<&str>,
    source: SourceHealth,
    clustered: bool,
    master: Option<MasterInfo<'_>>,
) -> Response {
    use serde_json::json;
    let label = source.label();
    let (status, mut body) = match (unhealthy, source) {
        (Some(reason), _) => (503, json!({ "status": "unavailable", "reason": reason })),
        (None, SourceHealth::Down) if clustered => {
            (200, json!({ "status": "degraded", "source": label }))
        }
        (None, SourceHealth::Down) => (
            503,
            json!({ "status": "unavailable", "reason": "price source down", "source": label }),
        ),
        (None, SourceHealth::Partial { stale, .. }) => {
            (200, json!({ "status": "ok", "source": label, "stale_symbols": stale }))
        }
        (None, SourceHealth::Simulated | SourceHealth::Live) => {
            (200, json!({ "status": "ok", "source": label }))
        }
    };
    if let (Some(m), Some(body)) = (master, body.as_object_mut()) {
        let value = json!({ "addr": m.addr, "since": m.since_unix, "failovers": m.failovers });
        body.insert("redis_master".into(), value);
    }
    Response::json(status, &body)
}

/// The Redis master a cluster node behind Sentinels uses, for `/healthz`: its address,
/// since when (Unix seconds), and how many changes of master this node has seen.
#[derive(Debug, Clone, Copy)]
pub struct MasterInfo<'a> {
    pub addr: &'a str,
    pub since_unix: u64,
    pub failovers: u64,
}

/// The answer to `/metrics`: the Prometheus text exposition format 0.0.4.
pub fn metrics_response(text: String, head_only: bool) -> Response {
    let mut r =
        Response::new(200).header("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    r.body = text.into_bytes();
    r.head_only = head_only;
    r
}

fn options(allow: &'static str) -> Route {
    Route::Respond(Response::new(204).header("Allow", allow))
}

fn not_allowed(allow: &'static str) -> Route {
    Route::Respond(Response::error(&HttpError::MethodNotAllowed { allow }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(unhealthy: Option<&str>, source: SourceHealth, clustered: bool) -> (u16, String) {
        let r = health_response(unhealthy, source, clustered, None);
        (r.status, String::from_utf8(r.body).unwrap())
    }

    #[test]
    fn healthz_takes_a_node_with_a_dead_source_out_but_never_a_whole_cluster() {
        let live = (200, r#"{"source":"live","status":"ok"}"#.to_string());
        assert_eq!(health(None, SourceHealth::Live, false), live);
        assert_eq!(health(None, SourceHealth::Simulated, true).0, 200);
        let partial = health(None, SourceHealth::Partial { stale: 2, of: 3 }, false);
        assert_eq!(
            partial,
            (200, r#"{"source":"partial","stale_symbols":2,"status":"ok"}"#.into())
        );
        let down = health(None, SourceHealth::Down, false);
        assert_eq!(down.0, 503);
        assert!(down.1.contains(r#""reason":"price source down""#), "{}", down.1);
        let cluster_down = health(None, SourceHealth::Down, true);
        assert_eq!(cluster_down, (200, r#"{"source":"down","status":"degraded"}"#.into()));
        let cut_off = health(Some("redis unreachable"), SourceHealth::Live, true);
        assert_eq!(cut_off.0, 503);
    }

    use crate::http::request::complete as req;

    fn status_of(route: Route) -> u16 {
        match route {
            Route::Respond(r) => r.status,
            other => panic!("not an immediate answer: {other:?}"),
        }
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

//! CORS (seed: `cors.allow.origins: "*"`): echo an allowed `Origin` with `Vary: Origin`,
//! answer preflights with 204. A disallowed origin gets no CORS headers; the request
//! itself is handled normally (the browser enforces the rest).

use crate::http::request::{Method, Request};
use crate::http::response::Response;

const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
const ALLOW_HEADERS: &str = "Origin, Content-Type, Accept, Authorization, X-Requested-With";
const MAX_AGE: &str = "86400";

/// The allowed-origins option: `*` or an exact list (`https://a.example,https://b.example`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    Any,
    List(Vec<String>),
}

impl AllowedOrigins {
    pub fn parse(v: &str) -> Result<AllowedOrigins, String> {
        let items: Vec<String> = v
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if items.iter().any(|s| s == "*") {
            return Ok(AllowedOrigins::Any);
        }
        if items.is_empty() {
            return Err("no origins given (use * to allow any)".into());
        }
        Ok(AllowedOrigins::List(items))
    }

    pub fn allows(&self, origin: &str) -> bool {
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// Adds `Access-Control-Allow-Origin` and `Vary: Origin` when the request's origin is allowed.
pub fn apply(response: &mut Response, origin: Option<&str>, allowed: &AllowedOrigins) {
    if let Some(origin) = origin.filter(|o| allowed.allows(o)) {
        allow_origin(response, origin);
    }
}

/// Adds the headers for an origin the caller has already checked against the list.
pub fn allow_origin(response: &mut Response, origin: &str) {
    response.headers.push(("Access-Control-Allow-Origin", origin.to_owned()));
    response.headers.push(("Vary", "Origin".to_owned()));
}

/// A preflight is `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(req: &Request<'_>) -> bool {
    req.method == Method::Options
        && req.header("Origin").is_some()
        && req.header("Access-Control-Request-Method").is_some()
}

/// The 204 answer to a preflight (CORS headers only when the origin is allowed).
pub fn preflight(req: &Request<'_>, allowed: &AllowedOrigins) -> Response {
    let mut r = Response::new(204);
    let origin = req.header("Origin");
    if origin.is_some_and(|o| allowed.allows(o)) {
        apply(&mut r, origin, allowed);
        r.headers.push(("Access-Control-Allow-Methods", ALLOW_METHODS.to_owned()));
        r.headers.push(("Access-Control-Allow-Headers", ALLOW_HEADERS.to_owned()));
        r.headers.push(("Access-Control-Max-Age", MAX_AGE.to_owned()));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_allows_only_its_origins() {
        let list = AllowedOrigins::parse("https://a.example, https://b.example/").unwrap();
        assert!(list.allows("https://b.example"));
        assert!(!list.allows("https://evil.example"));
        assert_eq!(AllowedOrigins::parse("*").unwrap(), AllowedOrigins::Any);
        assert!(AllowedOrigins::parse(" , ").is_err());
    }

    #[test]
    fn disallowed_origins_get_no_cors_headers() {
        let mut r = Response::new(200);
        apply(
            &mut r,
            Some("https://evil.example"),
            &AllowedOrigins::List(vec!["https://a.example".into()]),
        );
        assert!(r.headers.is_empty());
        apply(&mut r, Some("https://a.example"), &AllowedOrigins::Any);
        assert!(r.has_header("Access-Control-Allow-Origin") && r.has_header("Vary"));
    }
}

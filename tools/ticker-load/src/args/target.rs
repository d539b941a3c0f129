//! `--url`: an `http://` server (crypto-ticker: token from `POST /auth/token`, stream
//! from `--path`) or a `ws://` stream, as a [`Target`].

use super::{ArgError, invalid};

/// Where to connect: host and port, and the WebSocket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Host as written in the URL (also sent as the `Host` header).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// WebSocket request target, with query if the URL had one.
    pub(crate) ws_path: String,
}

impl Target {
    /// The `Host` header value.
    pub(crate) fn host_header(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}:{}{}", self.host, self.port, self.ws_path)
    }
}

/// `http://host[:port][/]` or `ws://host[:port][/path[?query]]`; IPv6 hosts in brackets.
pub(crate) fn parse_url(url: &str, path: Option<&str>) -> Result<Target, ArgError> {
    let bad = |why| invalid("--url", url, why);
    let (scheme, rest) =
        url.split_once("://").ok_or(bad("expected http://HOST:PORT or ws://HOST:PORT/PATH"))?;
    let (authority, url_path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let ws_path = match scheme {
        "ws" => {
            if path.is_some() {
                return Err(ArgError::Conflict(
                    "--path is for http:// URLs; put the path in the ws:// URL",
                ));
            }
            match url_path {
                "" => "/".to_string(),
                p if p.starts_with('?') => format!("/{p}"),
                p => p.to_string(),
            }
        }
        "http" => {
            if !matches!(url_path, "" | "/") {
                return Err(bad(
                    "an http:// URL names the server only; give the WebSocket path with --path",
                ));
            }
            let p = path.unwrap_or("/ws/ticker");
            if !p.starts_with('/') {
                return Err(invalid("--path", p, "must start with /"));
            }
            p.to_string()
        }
        "https" | "wss" => return Err(bad("TLS is not supported; use http:// or ws://")),
        _ => return Err(bad("expected http:// or ws://")),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(bad("unclosed [ in host"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        Some(p) => p.parse().ok().filter(|p| *p != 0).ok_or(bad("bad port"))?,
        None => 80,
    };
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    Ok(Target { host, port, ws_path })
}

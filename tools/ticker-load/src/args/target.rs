//! `--url`: an `http://` or `https://` server (crypto-ticker: token from
//! `POST /auth/token`, stream from `--path`) or a `ws://` or `wss://` stream, as a
//! [`Target`]. The `s` schemes are TLS, port 443 by default (80 for the others).

use super::ArgError;
use super::values::invalid;

/// The WebSocket path of `http(s)://` URLs without `--path`: crypto-ticker's stream.
pub(super) const DEFAULT_WS_PATH: &str = "/ws/ticker";

/// Where to connect: host and port, and the WebSocket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Host as written in the URL (also sent as the `Host` header).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// WebSocket request target, with query if the URL had one.
    pub(crate) ws_path: String,
    /// `https://` or `wss://`: TLS over the TCP connection.
    pub(crate) tls: bool,
}

impl Target {
    /// The `Host` header value.
    pub(crate) fn host_header(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub(crate) fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}:{}{}", self.host, self.port, self.ws_path)
    }
}

/// `http[s]://host[:port][/]` or `ws[s]://host[:port][/path[?query]]`; IPv6 hosts in
/// brackets.
pub(crate) fn parse_url(url: &str, path: Option<&str>) -> Result<Target, ArgError> {
    let bad = |why| invalid("--url", url, why);
    let (scheme, rest) = url
        .split_once("://")
        .ok_or(bad("expects http[s]://HOST[:PORT] or ws[s]://HOST[:PORT]/PATH"))?;
    let (authority, url_path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let tls = matches!(scheme, "https" | "wss");
    let ws_path = match scheme {
        "ws" | "wss" => {
            if path.is_some() {
                return Err(ArgError::Conflict(
                    "--path is for http(s):// URLs; put the path in the ws(s):// URL",
                ));
            }
            match url_path {
                "" => "/".to_string(),
                p if p.starts_with('?') => format!("/{p}"),
                p => p.to_string(),
            }
        }
        "http" | "https" => {
            if !matches!(url_path, "" | "/") {
                return Err(bad(
                    "with http(s):// names the server only: give the WebSocket path with --path",
                ));
            }
            let p = path.unwrap_or(DEFAULT_WS_PATH);
            if !p.starts_with('/') {
                return Err(invalid("--path", p, "must start with /"));
            }
            p.to_string()
        }
        _ => return Err(bad("expects http://, https://, ws:// or wss://")),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(bad("has an unclosed [ in its host"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    let port = match port {
        Some(p) => {
            p.parse().ok().filter(|p| *p != 0).ok_or(bad("expects a port between 1 and 65535"))?
        }
        None if tls => 443,
        None => 80,
    };
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    Ok(Target { host, port, ws_path, tls })
}

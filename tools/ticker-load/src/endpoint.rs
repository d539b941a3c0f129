//! Where connections go: one [`Endpoint`] per `--url`, made ready before the event
//! loops start (address resolved, TLS set up, token obtained), and the round-robin rule
//! that sends
//! connection `i` to endpoint `i % n`. The ramp's connections all use the token obtained
//! here; a `--churn` reconnect with an API key asks for a fresh one ([`Reauth`]).

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;

use crate::args::{Auth, Target};
use crate::auth::{self, AuthError};
use crate::subscribe::percent_encode;
use crate::tls::{self, TlsError, TlsTarget};

/// One server (a cluster node) as the engine connects to it.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) remote: SocketAddr,
    /// `https://` and `wss://`: every connection, token exchanges included, is TLS.
    pub(crate) tls: Option<TlsTarget>,
    /// The `Host` header value.
    pub(crate) host_header: String,
    /// Request target, with the `x-auth-token` query when the token goes there.
    pub(crate) path: String,
    /// `Authorization` header value, if any.
    pub(crate) authorization: Option<String>,
    /// With `--api-key`: what a churn reconnect needs for its own token exchange.
    pub(crate) reauth: Option<Reauth>,
}

/// A fresh token per churn reconnect: `POST /auth/token` to the endpoint, then the
/// upgrade carrying that token, as a returning browser client does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reauth {
    pub(crate) api_key: String,
    /// The WebSocket path before the token is added to it.
    pub(crate) ws_path: String,
    pub(crate) token_in_query: bool,
}

#[derive(Debug)]
pub(crate) enum EndpointError {
    Resolve(String, io::Error),
    Tls(TlsError),
    /// The token exchange with the node at this `host:port` failed.
    Auth(String, AuthError),
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointError::Resolve(host, e) => write!(f, "cannot resolve {host}: {e}"),
            EndpointError::Tls(e) => e.fmt(f),
            EndpointError::Auth(node, e) => write!(f, "getting a token from {node} failed: {e}"),
        }
    }
}

/// One endpoint per target, in the order given. With an API key, every node is asked
/// for a token of its own: a cluster's nodes accept each other's tokens, but separate
/// single nodes do not, so each connection carries a token from the node it goes to.
/// TLS targets share one client configuration, trusting `ca` (`--ca`) or the web PKI.
pub(crate) fn prepare(
    targets: &[Target],
    auth: &Auth,
    token_in_query: bool,
    ca: Option<&Path>,
) -> Result<Vec<Endpoint>, EndpointError> {
    let mut config: Option<Arc<ClientConfig>> = None;
    let mut endpoints = Vec::with_capacity(targets.len());
    for target in targets {
        let tls = if target.tls {
            let shared = match &config {
                Some(c) => Arc::clone(c),
                None => {
                    Arc::clone(config.insert(tls::client_config(ca).map_err(EndpointError::Tls)?))
                }
            };
            Some(TlsTarget::new(shared, &target.host).map_err(EndpointError::Tls)?)
        } else {
            None
        };
        endpoints.push(prepare_one(target, tls, auth, token_in_query)?);
    }
    Ok(endpoints)
}

fn prepare_one(
    target: &Target,
    tls: Option<TlsTarget>,
    auth: &Auth,
    token_in_query: bool,
) -> Result<Endpoint, EndpointError> {
    let bare_host = target.host.trim_start_matches('[').trim_end_matches(']');
    let remote = resolve(bare_host, target.port)?;
    let host_header = target.host_header();
    let token = match auth {
        Auth::ApiKey(key) => Some(
            auth::fetch_token(remote, tls.as_ref(), &host_header, key)
                .map_err(|e| EndpointError::Auth(host_header.clone(), e))?,
        ),
        Auth::Token(token) => Some(token.clone()),
        Auth::None => None,
    };
    let (path, authorization) = request_target(&target.ws_path, token.as_deref(), token_in_query);
    let reauth = match auth {
        Auth::ApiKey(key) => {
            Some(Reauth { api_key: key.clone(), ws_path: target.ws_path.clone(), token_in_query })
        }
        Auth::Token(_) | Auth::None => None,
    };
    Ok(Endpoint { remote, tls, host_header, path, authorization, reauth })
}

/// The request target and the `Authorization` value that carry `token`, if any.
pub(crate) fn request_target(
    ws_path: &str,
    token: Option<&str>,
    in_query: bool,
) -> (String, Option<String>) {
    match token {
        Some(t) if in_query => {
            let sep = if ws_path.contains('?') { '&' } else { '?' };
            (format!("{ws_path}{sep}x-auth-token={}", percent_encode(t)), None)
        }
        Some(t) => (ws_path.to_string(), Some(format!("Bearer {t}"))),
        None => (ws_path.to_string(), None),
    }
}

/// Item `i % len` of `items`, or `None` when there are none: connection `i`'s endpoint,
/// or its source address. Consecutive connections go to different items.
pub(crate) fn round_robin<T>(items: &[T], i: usize) -> Option<&T> {
    if items.is_empty() { None } else { items.get(i % items.len()) }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, EndpointError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| EndpointError::Resolve(host.to_string(), e))?
        .collect();
    // Prefer IPv4: "localhost" often resolves to ::1 first while servers listen on 0.0.0.0.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| EndpointError::Resolve(host.to_string(), io::Error::other("no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_i_goes_to_item_i_mod_n() {
        let urls = ["a", "b", "c"];
        let picked: Vec<&str> = (0..7).map(|i| *round_robin(&urls, i).unwrap()).collect();
        assert_eq!(picked, ["a", "b", "c", "a", "b", "c", "a"]);
        assert_eq!(round_robin(&["only"], 5), Some(&"only"));
        assert_eq!(round_robin::<u8>(&[], 3), None);
    }

    #[test]
    fn four_connections_over_two_urls_are_two_each_whatever_the_thread_count() {
        let urls = ["a", "b"];
        for threads in 1..=4 {
            let mut counts = [0; 2];
            // Thread t opens t, t + threads, ...: together, every index once.
            for t in 0..threads {
                for i in (t..4).step_by(threads) {
                    counts
                        [urls.iter().position(|u| u == round_robin(&urls, i).unwrap()).unwrap()] +=
                        1;
                }
            }
            assert_eq!(counts, [2, 2], "{threads} threads");
        }
    }

    #[test]
    fn tokens_are_percent_encoded_for_the_query() {
        assert_eq!(percent_encode("ab-_.~9"), "ab-_.~9");
        assert_eq!(percent_encode("a=b+/"), "a%3Db%2B%2F");
    }

    #[test]
    fn a_token_goes_in_the_header_or_the_query() {
        assert_eq!(request_target("/ws", None, false), ("/ws".into(), None));
        assert_eq!(
            request_target("/ws", Some("t"), false),
            ("/ws".into(), Some("Bearer t".into()))
        );
        assert_eq!(request_target("/ws", Some("a="), true), ("/ws?x-auth-token=a%3D".into(), None));
        assert_eq!(
            request_target("/ws?x=1", Some("t"), true),
            ("/ws?x=1&x-auth-token=t".into(), None)
        );
    }

    #[test]
    fn each_target_becomes_an_endpoint_in_order() {
        let target =
            |port| Target { host: "127.0.0.1".into(), port, ws_path: "/ws".into(), tls: false };
        let auth = Auth::Token("t".into());
        let endpoints = prepare(&[target(1), target(2)], &auth, false, None).unwrap();
        let ports: Vec<u16> = endpoints.iter().map(|e| e.remote.port()).collect();
        assert_eq!(ports, [1, 2]);
        assert_eq!(endpoints[1].host_header, "127.0.0.1:2");
        assert_eq!(endpoints[1].authorization.as_deref(), Some("Bearer t"));
        assert_eq!(endpoints[1].reauth, None, "a given token is reused on reconnect");
        assert!(endpoints[1].tls.is_none());
    }

    #[test]
    fn tls_targets_get_a_server_name_and_plain_ones_none() {
        let target =
            |port, tls| Target { host: "localhost".into(), port, ws_path: "/".into(), tls };
        let endpoints =
            prepare(&[target(1, true), target(2, false)], &Auth::None, false, None).unwrap();
        let name = endpoints[0].tls.as_ref().map(|t| t.name().to_str().into_owned());
        assert_eq!(name.as_deref(), Some("localhost"));
        assert!(endpoints[1].tls.is_none());
        let bad_ca = Path::new("/nonexistent/ca.pem");
        let err = prepare(&[target(1, true)], &Auth::None, false, Some(bad_ca)).unwrap_err();
        assert!(matches!(err, EndpointError::Tls(TlsError::CaFile(..))), "{err:?}");
    }
}

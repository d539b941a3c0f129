//! Who the client is when the server sits behind proxies: `--trusted-proxies` and
//! `X-Forwarded-For`. Pure: addresses and header text in, an address out.
//!
//! Rules (each has a unit test below):
//! - With no trusted proxy (the default) the client is the TCP peer, and
//!   `X-Forwarded-For` is never read.
//! - A peer that is not a trusted proxy is the client, whatever its headers say: anyone
//!   can write `X-Forwarded-For`.
//! - From a trusted proxy, the client is the rightmost `X-Forwarded-For` entry that is not
//!   itself a trusted proxy. Each proxy appends the address it got the request from, so
//!   the entries right of that one were written by proxies we trust, and the entries left
//!   of it were written by the client and prove nothing. They are never parsed.
//! - Several header lines are one list, in order (RFC 9110, section 5.3).
//! - A malformed entry met before the client is found (not an address, `unknown`), or a
//!   trusted proxy that sent no entry at all, makes the peer the client: the chain
//!   cannot be followed, and the peer is the one address known for sure.
//! - When every entry is a trusted proxy (a proxy's own health check), the client is the
//!   leftmost one: the first hop of the chain.
//! - Entries may carry a port (`192.0.2.7:5123`, `[2001:db8::7]:443`) or brackets; the
//!   port is dropped. An IPv4-mapped IPv6 address (`::ffff:192.0.2.7`, how a dual-stack
//!   socket reports an IPv4 peer) is its IPv4 address, in entries, peers and lists.
//!
//! [`client_ip`] is the rule on one header value; [`client_ip_of`] applies it to a
//! parsed request (every `X-Forwarded-For` line). Both cost nothing when no proxy is
//! trusted or the peer is not one.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use crate::http::request::Request;

/// The header the rules read.
pub const X_FORWARDED_FOR: &str = "X-Forwarded-For";

/// One network of `--trusted-proxies`: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside this network (IPv4 and IPv6 never match each other).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask32(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask128(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }

    /// Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a network of one).
    pub fn parse(s: &str) -> Result<Cidr, ProxyListError> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr =
            addr.parse().map_err(|_| ProxyListError::NotAnAddress(s.to_owned()))?;
        let network = canonical(network);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(ProxyListError::BadPrefix(s.to_owned())),
            },
        };
        let masked = match network {
            IpAddr::V4(a) => IpAddr::from(mask32(u32::from(a), prefix).to_be_bytes()),
            IpAddr::V6(a) => IpAddr::from(mask128(u128::from(a), prefix).to_be_bytes()),
        };
        if masked != network {
            // `10.0.0.1/8` is most likely a typo for a host or for `10.0.0.0/8`; trusting
            // the wider network silently would trust more than was meant.
            return Err(ProxyListError::HostBitsSet {
                given: s.to_owned(),
                network: format!("{masked}/{prefix}"),
            });
        }
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask32(v: u32, prefix: u8) -> u32 {
    v & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(v: u128, prefix: u8) -> u128 {
    v & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// An IPv4-mapped IPv6 address as IPv4; any other address as it is.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Why `--trusted-proxies` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyListError {
    /// Not an IPv4 or IPv6 address.
    NotAnAddress(String),
    /// The part after `/` is not a prefix length of that address family.
    BadPrefix(String),
    /// Bits set after the prefix: probably not the network that was meant.
    HostBitsSet { given: String, network: String },
}

impl fmt::Display for ProxyListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyListError::NotAnAddress(s) => {
                write!(f, "{s:?} is not an address or network (e.g. 10.0.0.0/8, ::1)")
            }
            ProxyListError::BadPrefix(s) => {
                write!(
                    f,
                    "{s:?}: the prefix length must be between 0 and 32 for IPv4, 0 and 128 for IPv6"
                )
            }
            ProxyListError::HostBitsSet { given, network } => {
                write!(f, "{given:?} has bits set after its prefix; did you mean {network}?")
            }
        }
    }
}

impl std::error::Error for ProxyListError {}

/// The proxies whose `X-Forwarded-For` is believed. Empty: trust nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<Cidr>,
}

impl TrustedProxies {
    /// Parses a comma list of networks; empty (or `none`) trusts nobody.
    pub fn parse(s: &str) -> Result<TrustedProxies, ProxyListError> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(TrustedProxies::default());
        }
        let networks = s
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(Cidr::parse)
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { networks })
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(ip))
    }

    pub fn networks(&self) -> &[Cidr] {
        &self.networks
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.networks.is_empty() {
            return f.write_str("none");
        }
        for (i, n) in self.networks.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

/// The client's address: `peer` (the TCP peer) unless it is a trusted proxy, in which
/// case the rightmost `xff` entry that is not a trusted proxy (see the module's rules).
pub fn client_ip(peer: IpAddr, xff: Option<&str>, trusted: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    let Some(xff) = xff else { return peer };
    let mut leftmost = None;
    for entry in xff.rsplit(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some(ip) = parse_entry(entry) else { return peer };
        if !trusted.contains(ip) {
            return ip;
        }
        leftmost = Some(ip);
    }
    leftmost.unwrap_or(peer)
}

/// [`client_ip`] for a parsed request: every `X-Forwarded-For` line, in order. Reads no
/// header unless the peer is a trusted proxy.
pub fn client_ip_of(req: &Request<'_>, peer: IpAddr, trusted: &TrustedProxies) -> IpAddr {
    if !trusted.contains(canonical(peer)) {
        return canonical(peer);
    }
    let mut lines =
        req.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(X_FORWARDED_FOR)).map(
            |(_, v)| {
                // Bytes that are not UTF-8 can only be in a part the client wrote; lossy
                // decoding keeps the proxies' entries after it readable.
                String::from_utf8_lossy(v)
            },
        );
    let xff: Option<Cow<'_, str>> = match (lines.next(), lines.next()) {
        (None, _) => None,
        (Some(only), None) => Some(only),
        (Some(first), Some(second)) => {
            let mut all = format!("{first},{second}");
            for line in lines {
                all.push(',');
                all.push_str(&line);
            }
            Some(Cow::Owned(all))
        }
    };
    client_ip(peer, xff.as_deref(), trusted)
}

/// One entry: an address, optionally bracketed (IPv6) and with a port.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = entry.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        let (addr, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return addr.parse::<std::net::Ipv6Addr>().ok().map(|a| canonical(IpAddr::V6(a)));
    }
    // `v4:port` (a bare IPv6 address parsed above; anything else with colons is not an entry)
    let (addr, port) = entry.split_once(':')?;
    if !is_port(port) {
        return None;
    }
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{Limits, parse_request};
    use crate::parse::Status;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(s: &str) -> TrustedProxies {
        TrustedProxies::parse(s).unwrap()
    }

    #[test]
    fn networks_parse_with_or_without_a_prefix_and_match_their_family_only() {
        let t = trusted("10.0.0.0/8, 192.168.1.7 ,2001:db8::/32,::1");
        assert_eq!(t.to_string(), "10.0.0.0/8,192.168.1.7/32,2001:db8::/32,::1/128");
        for inside in ["10.1.2.3", "192.168.1.7", "2001:db8:ffff::1", "::1", "::ffff:10.9.9.9"] {
            assert!(t.contains(ip(inside)), "{inside}");
        }
        for outside in ["11.0.0.1", "192.168.1.8", "2001:db9::1", "::2", "::ffff:11.0.0.1"] {
            assert!(!t.contains(ip(outside)), "{outside}");
        }
        assert!(trusted("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!trusted("0.0.0.0/0").contains(ip("2001:db8::1")), "v4 never matches v6");
        assert!(trusted("::/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn an_empty_list_or_none_trusts_nobody() {
        for s in ["", "  ", "none", "NONE"] {
            let t = trusted(s);
            assert!(t.is_empty(), "{s:?}");
            assert!(!t.contains(ip("127.0.0.1")));
        }
    }

    #[test]
    fn bad_networks_are_refused_with_what_was_meant() {
        assert!(
            matches!(TrustedProxies::parse("10.0.0.0/8,proxy"), Err(ProxyListError::NotAnAddress(s)) if s == "proxy")
        );
        assert!(matches!(Cidr::parse("10.0.0.0/33"), Err(ProxyListError::BadPrefix(_))));
        assert!(matches!(Cidr::parse("::/129"), Err(ProxyListError::BadPrefix(_))));
        assert!(matches!(Cidr::parse("10.0.0.0/x"), Err(ProxyListError::BadPrefix(_))));
        let err = Cidr::parse("10.0.0.1/8").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#""10.0.0.1/8" has bits set after its prefix; did you mean 10.0.0.0/8?"#
        );
        assert!(Cidr::parse("2001:db8::1/32").is_err());
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header() {
        let none = TrustedProxies::default();
        assert_eq!(client_ip(ip("198.51.100.4"), Some("203.0.113.9"), &none), ip("198.51.100.4"));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_the_header() {
        let t = trusted("10.0.0.0/8");
        let peer = ip("198.51.100.4");
        assert_eq!(client_ip(peer, Some("203.0.113.9"), &t), peer);
        assert_eq!(client_ip(peer, Some("10.0.0.1"), &t), peer);
    }

    #[test]
    fn behind_a_trusted_proxy_the_client_is_the_rightmost_untrusted_entry() {
        let t = trusted("10.0.0.0/8");
        let proxy = ip("10.0.0.2");
        assert_eq!(client_ip(proxy, Some("203.0.113.9"), &t), ip("203.0.113.9"));
        // The client wrote the first two entries; only the one its proxy appended counts.
        let forged = "1.1.1.1, 8.8.8.8, 203.0.113.9";
        assert_eq!(client_ip(proxy, Some(forged), &t), ip("203.0.113.9"));
        // Two trusted hops: skip them.
        assert_eq!(client_ip(proxy, Some("203.0.113.9, 10.1.1.1,10.2.2.2"), &t), ip("203.0.113.9"));
    }

    #[test]
    fn entries_left_of_the_client_are_never_parsed() {
        let t = trusted("10.0.0.0/8");
        let xff = "garbage, unknown, \u{1b}[31m, 203.0.113.9";
        assert_eq!(client_ip(ip("10.0.0.2"), Some(xff), &t), ip("203.0.113.9"));
    }

    #[test]
    fn a_malformed_entry_on_the_walk_or_no_entry_makes_the_peer_the_client() {
        let t = trusted("10.0.0.0/8");
        let proxy = ip("10.0.0.2");
        for xff in ["unknown", "203.0.113.9, not-an-ip", "203.0.113.9, 10.1.1.1, 1.2.3", "", " , "]
        {
            assert_eq!(client_ip(proxy, Some(xff), &t), proxy, "{xff:?}");
        }
        assert_eq!(client_ip(proxy, None, &t), proxy);
    }

    #[test]
    fn when_every_entry_is_trusted_the_client_is_the_leftmost() {
        let t = trusted("10.0.0.0/8");
        assert_eq!(client_ip(ip("10.0.0.2"), Some("10.3.3.3, 10.1.1.1"), &t), ip("10.3.3.3"));
    }

    #[test]
    fn entries_may_carry_ports_and_brackets_and_mapped_addresses_are_ipv4() {
        let t = trusted("10.0.0.0/8,::1");
        let proxy = ip("10.0.0.2");
        let cases = [
            ("203.0.113.9:5123", "203.0.113.9"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("2001:db8::7", "2001:db8::7"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
            ("203.0.113.9, [::1]:80", "203.0.113.9"),
        ];
        for (xff, client) in cases {
            assert_eq!(client_ip(proxy, Some(xff), &t), ip(client), "{xff:?}");
        }
        for bad in ["203.0.113.9:", "203.0.113.9:http", "[2001:db8::7]x", "[203.0.113.9]"] {
            assert_eq!(client_ip(proxy, Some(bad), &t), proxy, "{bad:?}");
        }
        // A dual-stack socket's view of a trusted IPv4 proxy.
        assert_eq!(client_ip(ip("::ffff:10.0.0.2"), Some("203.0.113.9"), &t), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("::ffff:198.51.100.4"), None, &t), ip("198.51.100.4"));
    }

    fn request_client(head: &str, peer: &str, t: &TrustedProxies) -> IpAddr {
        let Ok(Status::Complete { value: req, .. }) =
            parse_request(head.as_bytes(), &Limits::default())
        else {
            panic!("not a request: {head:?}");
        };
        client_ip_of(&req, ip(peer), t)
    }

    #[test]
    fn several_header_lines_are_one_list_in_order() {
        let t = trusted("10.0.0.0/8");
        // A proxy that adds its own line after the client's (HAProxy's `option forwardfor`).
        let head =
            "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 203.0.113.9\r\n\r\n";
        assert_eq!(request_client(head, "10.0.0.2", &t), ip("203.0.113.9"));
        let three = "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 10.1.1.1\r\n\r\n";
        assert_eq!(request_client(three, "10.0.0.2", &t), ip("203.0.113.9"));
        let none = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(request_client(none, "10.0.0.2", &t), ip("10.0.0.2"));
        // An untrusted peer's lines are not even read.
        assert_eq!(request_client(head, "198.51.100.4", &t), ip("198.51.100.4"));
    }

    #[test]
    fn bytes_that_are_not_utf8_in_the_clients_part_do_not_hide_the_proxys_entry() {
        let t = trusted("10.0.0.0/8");
        let head = b"GET / HTTP/1.1\r\nX-Forwarded-For: \xff\xfe, 203.0.113.9\r\n\r\n";
        let Ok(Status::Complete { value: req, .. }) = parse_request(head, &Limits::default())
        else {
            panic!("not a request");
        };
        assert_eq!(client_ip_of(&req, ip("10.0.0.2"), &t), ip("203.0.113.9"));
    }
}

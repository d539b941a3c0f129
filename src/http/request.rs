//! HTTP/1.x request parsing over a byte slice: httparse for the head, our limits on
//! top, `Content-Length` bodies only. No I/O; three outcomes like every parser here.

use crate::error::HttpError;
use crate::parse::Status;

/// Limits applied while parsing. The defaults are `--max-head`, `--max-body` and
/// `--max-headers`' defaults.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_head: usize,
    pub max_body: usize,
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_head: 16 * 1024, max_body: 16 * 1024, max_headers: 100 }
    }
}

/// Methods the server routes on; anything else is kept by name for 405 answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method<'b> {
    Get,
    Head,
    Post,
    Options,
    Other(&'b str),
}

impl<'b> Method<'b> {
    fn from_str(s: &'b str) -> Method<'b> {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "OPTIONS" => Method::Options,
            other => Method::Other(other),
        }
    }
}

/// A parsed request, borrowing every byte from the buffer it was parsed from (as
/// httparse intends): nothing is copied. Header names are kept as sent; lookups are
/// case-insensitive.
#[derive(Debug, Clone)]
pub struct Request<'b> {
    pub method: Method<'b>,
    /// The path part of the request target, still percent-encoded.
    pub path: &'b str,
    /// The query string without `?`, if any.
    pub query: Option<&'b str>,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<(&'b str, &'b [u8])>,
    pub body: &'b [u8],
}

impl<'b> Request<'b> {
    /// The first header with this name (case-insensitive) as UTF-8, if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&'b str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Every value of a header, for headers that may repeat (`Cookie`, `Connection`).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Whether any comma-separated token of the header equals `token` (case-insensitive),
    /// as in `Connection: keep-alive, Upgrade`.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.header_values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// HTTP/1.1 keeps the connection unless `Connection: close`; HTTP/1.0 is answered
    /// and closed (no HTTP/1.0 keep-alive).
    pub fn keep_alive(&self) -> bool {
        self.version == 1 && !self.header_has_token("Connection", "close")
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k)? == name.as_bytes())
                .then(|| percent_decode(v))?
                .and_then(|v| String::from_utf8(v).ok())
        })
    }

    /// The first cookie with this name, as sent.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.header_values("Cookie").flat_map(|v| v.split(';')).find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
    }
}

/// Headers parsed into a stack array; only requests with more (up to the configured
/// limit) pay for a heap array.
const STACK_HEADERS: usize = 64;

/// Parses one request from the start of `buf`.
///
/// `Partial` means `buf` is a valid prefix of a request within the limits: read more.
/// A head that is still incomplete at `max_head` bytes is [`HttpError::HeadTooLarge`].
/// A partial attempt allocates nothing; a complete one allocates only the list of
/// header references.
pub fn parse_request<'b>(buf: &'b [u8], limits: &Limits) -> Result<Status<Request<'b>>, HttpError> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    match parse_with(buf, limits, &mut stack[..limits.max_headers.min(STACK_HEADERS)]) {
        Err(HttpError::TooManyHeaders) if limits.max_headers > STACK_HEADERS => {
            let mut heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
            parse_with(buf, limits, &mut heap)
        }
        other => other,
    }
}

fn parse_with<'b>(
    buf: &'b [u8],
    limits: &Limits,
    headers: &mut [httparse::Header<'b>],
) -> Result<Status<Request<'b>>, HttpError> {
    let mut parsed = httparse::Request::new(headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= limits.max_head {
                Err(HttpError::HeadTooLarge)
            } else {
                Ok(Status::Partial)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(_) => return Err(HttpError::Malformed),
    };
    if head_len > limits.max_head {
        return Err(HttpError::HeadTooLarge);
    }
    // httparse fills these on Complete; a missing one would be a parser bug, so it is
    // answered as malformed rather than trusted.
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(HttpError::Malformed);
    };

    let mut content_length: Option<usize> = None;
    let mut owned_headers: Vec<(&'b str, &'b [u8])> = Vec::new();
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("Transfer-Encoding") {
            return Err(HttpError::UnsupportedTransferEncoding);
        }
        if h.name.eq_ignore_ascii_case("Content-Length") {
            let value = std::str::from_utf8(h.value).map_err(|_| HttpError::Malformed)?.trim();
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::Malformed);
            }
            let n: usize = value.parse().map_err(|_| HttpError::BodyTooLarge)?;
            // Differing repeated lengths are a request-smuggling vector (RFC 9112 6.3).
            if content_length.is_some_and(|prev| prev != n) {
                return Err(HttpError::Malformed);
            }
            content_length = Some(n);
        }
        owned_headers.push((h.name, h.value));
    }

    let body_len = content_length.unwrap_or(0);
    if body_len > limits.max_body {
        return Err(HttpError::BodyTooLarge);
    }
    let total = head_len + body_len;
    if buf.len() < total {
        return Ok(Status::Partial);
    }

    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    // Only origin-form targets are served; absolute-form and `*` are not ours.
    if !path.starts_with('/') {
        return Err(HttpError::Malformed);
    }
    Ok(Status::Complete {
        value: Request {
            method: Method::from_str(method),
            path,
            query,
            version,
            headers: owned_headers,
            body: &buf[head_len..total],
        },
        consumed: total,
    })
}

/// Tests' shorthand: `raw` parsed with the default limits, which must be one complete
/// request.
#[cfg(test)]
pub(crate) fn complete(raw: &str) -> Request<'_> {
    match parse_request(raw.as_bytes(), &Limits::default()) {
        Ok(Status::Complete { value, .. }) => value,
        other => panic!("not one complete request: {other:?}"),
    }
}

/// Decodes `%XX` escapes (and `+` is left as is: it is a literal in paths and this server's
/// query values are tokens). `None` on a malformed escape.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<Status<Request<'_>>, HttpError> {
        parse_request(buf, &Limits::default())
    }

    #[test]
    fn a_complete_get_is_parsed_with_query_and_consumed_length() {
        let buf = b"GET /ws/ticker?x-auth-token=a%2Bb&z=1 HTTP/1.1\r\nHost: x\r\n\r\nNEXT";
        let Ok(Status::Complete { value, consumed }) = parse(buf) else { panic!() };
        assert_eq!(consumed, buf.len() - 4);
        assert_eq!(value.method, Method::Get);
        assert_eq!(value.path, "/ws/ticker");
        assert_eq!(value.query_param("x-auth-token").as_deref(), Some("a+b"));
        assert_eq!(value.header("host"), Some("x"));
        assert!(value.keep_alive());
    }

    #[test]
    fn every_prefix_of_a_request_is_partial() {
        let buf = b"POST /auth/token HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        for end in 0..buf.len() {
            assert_eq!(parse(&buf[..end]).map(|s| s.is_partial()), Ok(true), "prefix {end}");
        }
        let Ok(Status::Complete { value, .. }) = parse(buf) else { panic!() };
        assert_eq!(value.body, b"hello");
    }

    #[test]
    fn limits_map_to_their_errors() {
        let big = vec![b'a'; 17 * 1024];
        assert_eq!(parse(&big).err(), Some(HttpError::HeadTooLarge));
        assert_eq!(parse(b"GET / HTTP/1.1 junk\r\n\r\n").err(), Some(HttpError::Malformed));
        assert_eq!(parse(b"GET http://x/ HTTP/1.1\r\n\r\n").err(), Some(HttpError::Malformed));
        let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 16 * 1024));
        assert_eq!(parse(&head).err(), Some(HttpError::HeadTooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..101 {
            many.extend(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(parse(&many).err(), Some(HttpError::TooManyHeaders));
        let body = b"POST / HTTP/1.1\r\nContent-Length: 16385\r\n\r\n";
        assert_eq!(parse(body).err(), Some(HttpError::BodyTooLarge));
        let te = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(te).err(), Some(HttpError::UnsupportedTransferEncoding));
        let smuggle = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(parse(smuggle).err(), Some(HttpError::Malformed));
    }

    #[test]
    fn http_1_0_and_connection_close_do_not_keep_alive() {
        let Ok(Status::Complete { value, .. }) = parse(b"GET / HTTP/1.0\r\n\r\n") else { panic!() };
        assert!(!value.keep_alive());
        let Ok(Status::Complete { value, .. }) =
            parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        else {
            panic!()
        };
        assert!(!value.keep_alive());
    }

    #[test]
    fn cookies_are_found_by_name() {
        let buf = b"GET / HTTP/1.1\r\nCookie: a=1; x-auth-token=tok; b=2\r\n\r\n";
        let Ok(Status::Complete { value, .. }) = parse(buf) else { panic!() };
        assert_eq!(value.cookie("x-auth-token"), Some("tok"));
        assert_eq!(value.cookie("c"), None);
    }
}

//! Invariants over untrusted input, one function per fuzz target.
//!
//! Each function takes arbitrary bytes and panics only when an invariant breaks, never
//! because the input is bad. The cargo-fuzz targets in `fuzz/` call them, and the tests
//! at the end of this file replay every committed corpus file through them under the
//! normal test command, so a crash once found stays fixed.
//!
//! Panicking checks have no place in the server: this module is compiled only for
//! tests and under `cargo fuzz` (which sets `--cfg fuzzing`).

use std::path::Component;
use std::time::{Duration, UNIX_EPOCH};

use crate::auth::ids::{Actor, ApiKeyId};
use crate::auth::request::parse_token_request;
use crate::auth::token::{TokenKey, Tokens, parse_token};
use crate::error::{HttpError, ProtocolError};
use crate::http::cors::AllowedOrigins;
use crate::http::request::{Limits, parse_request};
use crate::http::routes::{Route, route};
use crate::parse::Status;
use crate::ws::codec::{Decoder, Message};
use crate::ws::frame::{OpCode, encode_client_frame, encode_frame, parse_header};

/// Largest control-frame payload (RFC 6455 section 5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// The HTTP request head parser and the router.
///
/// - a `Complete` request consumed no more than the input, its body is exactly
///   `Content-Length` bytes, and the same request parses from exactly those bytes;
///   one byte fewer is never `Complete`;
/// - `Partial` only below the head plus body limits (what a connection may buffer);
/// - every error maps to a 4xx/5xx status;
/// - routing never panics, a static route never leaves the public folder, and every
///   immediate response serializes to a valid status line.
pub fn http_request(data: &[u8]) {
    // Small limits as well as the defaults, so the limit paths are reached too.
    let small = Limits { max_head: 256, max_body: 64, max_headers: 8 };
    for limits in [Limits::default(), small] {
        match parse_request(data, &limits) {
            Ok(Status::Complete { value: req, consumed }) => {
                assert!(consumed <= data.len(), "consumed past the input");
                assert!(req.body.len() <= limits.max_body, "body over the limit");
                assert!(req.path.starts_with('/'), "non-origin-form target accepted");
                assert_eq!(&data[consumed - req.body.len()..consumed], req.body);
                match parse_request(&data[..consumed], &limits) {
                    Ok(Status::Complete { consumed: again, .. }) => assert_eq!(again, consumed),
                    other => panic!("the exact bytes of a request did not parse: {other:?}"),
                }
                if let Ok(Status::Complete { .. }) = parse_request(&data[..consumed - 1], &limits) {
                    panic!("a strict prefix of a request parsed as complete");
                }
                check_route(&req);
            }
            Ok(Status::Partial) => {
                // What a connection may buffer for one request is bounded by the limits.
                let bound = limits.max_head + limits.max_body;
                assert!(data.len() < bound, "partial at {} bytes, beyond {bound}", data.len());
            }
            Err(e) => check_http_error(&e),
        }
    }
}

fn check_route(req: &crate::http::request::Request<'_>) {
    let allowed = AllowedOrigins::List(vec!["http://localhost:8081".to_owned()]);
    for origins in [AllowedOrigins::Any, allowed] {
        match route(req, &origins) {
            Route::Respond(response) => {
                assert!((100..600).contains(&response.status), "status {}", response.status);
                let bytes = response.to_bytes(req.keep_alive(), UNIX_EPOCH);
                let line_end = bytes.windows(2).position(|w| w == b"\r\n");
                let line = line_end.map(|end| &bytes[..end]);
                assert!(line.is_some_and(|l| l.starts_with(b"HTTP/1.1 ")), "bad status line");
            }
            Route::Static(s) => {
                assert!(
                    s.relative.components().all(|c| matches!(c, Component::Normal(_))),
                    "static path escapes the folder: {:?}",
                    s.relative
                );
            }
            Route::IssueToken { api_key } => assert!(!api_key.is_empty()),
            Route::RevokeToken { token } => assert!(!token.is_empty()),
            Route::Upgrade { token } => assert!(token.is_none_or(|t| !t.is_empty())),
            Route::Health | Route::Metrics { .. } => {}
        }
    }
}

fn check_http_error(e: &HttpError) {
    let status = e.status();
    assert!((400..600).contains(&status), "{e:?} maps to {status}");
    assert!(!e.message().is_empty());
}

/// Limit used by the WebSocket target: small, so "too big" is reachable.
const FUZZ_MAX_MESSAGE: usize = 1024;

/// The WebSocket frame decoder, including fragmentation and control frames.
///
/// The first byte chooses a chunk size; the rest is the byte stream from a client.
/// - decoding the stream whole and in chunks gives the same messages and the same error;
/// - every step consumes at least one byte and no more than it was given;
/// - control payloads are at most 125 bytes, data messages at most the limit;
/// - every decoded message, encoded again as a client frame (whole or fragmented),
///   decodes to itself;
/// - every error has a close code the server may send.
pub fn ws_decoder(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else { return };
    let whole = decode_stream(stream, stream.len().max(1));
    let chunked = decode_stream(stream, usize::from(chunk % 17) + 1);
    assert_eq!(whole, chunked, "chunking changed the outcome");

    let (messages, _) = whole;
    for message in &messages {
        match message {
            Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= MAX_CONTROL_PAYLOAD),
            Message::Close(Some(f)) => assert!(f.reason.len() <= MAX_CONTROL_PAYLOAD - 2),
            Message::Close(None) => {}
            Message::Text(t) => assert!(t.len() <= FUZZ_MAX_MESSAGE),
            Message::Binary(b) => assert!(b.len() <= FUZZ_MAX_MESSAGE),
        }
        round_trip(message, chunk);
    }
}

type DecodeOutcome = (Vec<Message>, Option<ProtocolError>);

/// Feeds `stream` to a decoder `chunk` bytes at a time, as reads from a socket would.
fn decode_stream(stream: &[u8], chunk: usize) -> DecodeOutcome {
    let mut decoder = Decoder::new(FUZZ_MAX_MESSAGE);
    let mut buf = Vec::new();
    let mut messages = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.clone();
            match decoder.decode(&mut buf) {
                Ok(Status::Complete { value, consumed }) => {
                    assert!(consumed > 0 && consumed <= buf.len(), "consumed {consumed}");
                    buf.drain(..consumed);
                    messages.extend(value);
                }
                Ok(Status::Partial) => {
                    assert_eq!(buf, before, "a partial decode changed the buffer");
                    break;
                }
                Err(e) => {
                    assert!(e.close_code().as_u16() >= 1000);
                    assert!(!e.reason().is_empty());
                    return (messages, Some(e));
                }
            }
        }
    }
    (messages, None)
}

fn round_trip(message: &Message, seed: u8) {
    let mask = [seed, seed.wrapping_mul(31), 0x5A, !seed];
    let (opcode, payload): (OpCode, Vec<u8>) = match message {
        Message::Text(t) => (OpCode::Text, t.clone().into_bytes()),
        Message::Binary(b) => (OpCode::Binary, b.clone()),
        Message::Ping(p) => (OpCode::Ping, p.clone()),
        Message::Pong(p) => (OpCode::Pong, p.clone()),
        Message::Close(None) => (OpCode::Close, Vec::new()),
        Message::Close(Some(f)) => {
            let mut p = f.code.as_u16().to_be_bytes().to_vec();
            p.extend_from_slice(f.reason.as_bytes());
            (OpCode::Close, p)
        }
    };
    let mut frames = encode_client_frame(true, opcode, &payload, mask);
    let (messages, error) = decode_stream(&frames, frames.len());
    assert_eq!(error, None);
    assert_eq!(messages, std::slice::from_ref(message), "whole frame did not round-trip");

    // Data messages also round-trip when split into fragments around a ping.
    if !opcode.is_control() && payload.len() >= 2 {
        let split = usize::from(seed) % payload.len();
        frames = encode_client_frame(false, opcode, &payload[..split], mask);
        frames.extend(encode_client_frame(true, OpCode::Ping, b"k", mask));
        frames.extend(encode_client_frame(true, OpCode::Continuation, &payload[split..], mask));
        let (messages, error) = decode_stream(&frames, usize::from(seed % 7) + 1);
        assert_eq!(error, None);
        assert_eq!(messages, [Message::Ping(b"k".to_vec()), message.clone()]);
    }

    // The server's own (unmasked) encoding parses back to the same header.
    let server = encode_frame(opcode, &payload);
    match parse_header(&server) {
        Ok(Status::Complete { value, consumed }) => {
            assert_eq!(value.opcode, opcode);
            assert_eq!(value.payload_len, payload.len() as u64);
            assert!(value.mask.is_none());
            assert_eq!(server.len(), consumed + payload.len());
        }
        other => panic!("server frame header did not parse: {other:?}"),
    }
}

/// permessage-deflate: the offer parser, the bounded inflate and the compressor.
///
/// The input is an offer (`Sec-WebSocket-Extensions` text) up to the first newline, then
/// a compressed client message.
/// - negotiation never panics; an agreed window is 8..=15, and the answer the server
///   would send is itself an acceptable offer that agrees the same window;
/// - inflating never panics and never returns more than the limit;
/// - what inflates, compressed again by the server, inflates to the same bytes;
/// - the same message in a client frame with RSV1 decodes the same way (a deflate
///   session's decoder), and a decoder without deflate refuses it.
pub fn permessage_deflate(data: &[u8]) {
    use crate::ws::deflate::{self, Deflater};
    let (offer, message) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(offer) = std::str::from_utf8(offer)
        && let Some(agreed) = deflate::negotiate([offer])
    {
        assert!((8..=15).contains(&agreed.server_window_bits));
        let answer = agreed.response();
        assert_eq!(deflate::negotiate([answer.as_str()]), Some(agreed), "{answer}");
    }
    const LIMIT: usize = 4096;
    let inflated = deflate::inflate(message, LIMIT);
    if let Ok(bytes) = &inflated {
        assert!(bytes.len() <= LIMIT);
        let frame = Deflater::default().frame(OpCode::Binary, bytes).expect("compresses");
        let again = deflate::inflate(crate::ws::frame::payload_of(&frame), LIMIT);
        assert_eq!(again.as_ref(), Ok(bytes));
    }
    let mut frame = encode_client_frame(true, OpCode::Binary, message, [7, 7, 7, 7]);
    frame[0] |= crate::ws::frame::RSV1;
    let decoded = Decoder::with_deflate(LIMIT).decode(&mut frame.clone());
    match (&decoded, &inflated) {
        (Ok(Status::Complete { value: Some(Message::Binary(b)), .. }), Ok(want)) => {
            assert_eq!(b, want);
        }
        (Err(e), Err(want)) => assert_eq!(e, want),
        (Err(ProtocolError::MessageTooBig), Ok(_)) => assert!(message.len() > LIMIT),
        other => panic!("decoder and inflate disagree: {other:?}"),
    }
    let plain = Decoder::new(LIMIT).decode(&mut frame);
    assert_eq!(plain.err(), Some(ProtocolError::ReservedBitsSet));
}

/// Token parsing and verification.
///
/// - parsing arbitrary text never panics, and only 89-character strings parse;
/// - arbitrary text never verifies (no forgery) and never revokes anything;
/// - a real token with any byte changed no longer verifies; the untouched one still does.
pub fn token(data: &[u8]) {
    let store = Tokens::in_memory(
        TokenKey::from_secret("fuzzing-key-0123456789").expect("a static 22-byte key"),
        Duration::from_secs(3600),
        16,
    );
    let actor = Actor { id: "user:fuzz".into(), user_id: "fuzz".into(), role: "user".into() };
    let now = 1_000_000;
    let issued =
        store.issue(actor, ApiKeyId(1), "127.0.0.1".into(), now).expect("an empty store has room");

    let text = String::from_utf8_lossy(data);
    if parse_token(&text).is_ok() {
        assert_eq!(text.len(), 89, "a token of the wrong length parsed");
    }
    if text != issued.token {
        assert!(store.verify(&text, now).is_err(), "forged token verified");
        assert_eq!(store.revoke_token(&text), Ok(false), "forged token revoked something");
    }

    // Flip bytes of the real token at positions the input chooses.
    let mut tampered = issued.token.clone().into_bytes();
    for pair in data.chunks(2) {
        let position = usize::from(pair[0]) % tampered.len();
        tampered[position] ^= pair.get(1).copied().unwrap_or(1) | 1;
    }
    if let Ok(tampered) = std::str::from_utf8(&tampered)
        && tampered != issued.token
    {
        assert!(store.verify(tampered, now).is_err(), "tampered token verified");
    }
    assert!(store.verify(&issued.token, now).is_ok(), "the real token stopped verifying");
    assert!(store.verify(&issued.token, now + 3600).is_err(), "expired token verified");
}

/// The `/auth/token` body, alone and through the full parse → route path.
///
/// - `Ok` only for a JSON object whose `api_key` is a non-empty string, returned as is;
/// - `Err` is always one of the two 400s (`invalid JSON`, `api_key required`);
/// - the same body in a real POST routes to the same key, or to a 400 response.
pub fn auth_body(data: &[u8]) {
    let direct = parse_token_request(data);
    match &direct {
        Ok(key) => {
            assert!(!key.is_empty());
            let value: serde_json::Value = serde_json::from_slice(data).expect("accepted as JSON");
            assert_eq!(value.get("api_key").and_then(|v| v.as_str()), Some(key.as_str()));
        }
        Err(e) => {
            assert!(matches!(e, HttpError::InvalidJson | HttpError::ApiKeyRequired), "{e:?}");
            assert_eq!(e.status(), 400);
        }
    }

    let mut raw = format!(
        "POST /auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        data.len()
    )
    .into_bytes();
    raw.extend_from_slice(data);
    let limits = Limits::default();
    let req = match parse_request(&raw, &limits) {
        Ok(Status::Complete { value, consumed }) => {
            assert_eq!(consumed, raw.len());
            value
        }
        Err(HttpError::BodyTooLarge) if data.len() > limits.max_body => return,
        other => panic!("a well-formed POST did not parse: {other:?}"),
    };
    match (route(&req, &AllowedOrigins::Any), direct) {
        (Route::IssueToken { api_key }, Ok(key)) => assert_eq!(api_key, key),
        (Route::Respond(response), Err(e)) => assert_eq!(response.status, e.status()),
        (routed, direct) => panic!("router and body parser disagree: {routed:?} vs {direct:?}"),
    }
}

/// The three exchange parsers (`--source`), over any bytes an upstream may send:
///
/// - no parser panics, and each gives the same answer twice (no hidden state);
/// - every price it returns is positive and finite (the book never holds NaN, 0 or a
///   negative price, whatever the exchange sends);
/// - a price's symbol is a substring of the input (borrowed or unescaped, never made up).
pub fn source_message(data: &[u8]) {
    use crate::source::{Event, Exchange, PriceUpdate};
    let check = |u: &PriceUpdate<'_>| {
        assert!(u.price.is_finite() && u.price > 0.0, "price {} accepted", u.price);
        if let std::borrow::Cow::Borrowed(s) = &u.symbol {
            let text = String::from_utf8_lossy(data);
            assert!(text.contains(s), "symbol {s:?} not in the input");
        }
    };
    for exchange in [Exchange::Coinbase, Exchange::Binance, Exchange::Kraken] {
        let first = exchange.parse(data);
        assert_eq!(first, exchange.parse(data), "{exchange} parses differently twice");
        match &first {
            Ok(Event::Price(u)) => check(u),
            Ok(Event::Prices(us)) => us.iter().for_each(check),
            _ => {}
        }
    }
}

/// A client's text message on a session, parsed and then applied to a small table.
///
/// - parsing never panics; anything accepted other than `Ignored` round-trips through
///   its JSON form to the same message, and a `subscribe` is never empty;
/// - a refusal serializes to `{"type":"error","error":..,"symbols":[..]}`;
/// - applying a change never panics; an accepted set respects the per-session limit
///   (or is every symbol), and a refused one leaves the registry as it was.
pub fn control_message(data: &[u8]) {
    use crate::control::{ClientMessage, parse};
    use crate::symbols::sets::SetRegistry;
    use crate::symbols::{Change, SymbolTable, choose};

    let message = match parse(data) {
        Ok(m) => m,
        Err(e) => {
            let v: serde_json::Value = serde_json::from_slice(&e.to_json()).expect("error is JSON");
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"], e.message());
            assert!(v["symbols"].is_array());
            return;
        }
    };
    if let Some(json) = message.to_json() {
        assert_eq!(parse(&json).expect("own form parses"), message, "no round trip");
    }
    let change = match &message {
        ClientMessage::Subscribe(names) => {
            assert!(!names.is_empty(), "an empty subscribe was accepted");
            Change::Subscribe(names)
        }
        ClientMessage::Unsubscribe(names) => Change::Unsubscribe(names),
        ClientMessage::Ping | ClientMessage::Ignored => return,
    };
    let table = SymbolTable::new(["BTC-USD", "ETH-USD", "SOL-USD", "A", "B"].map(String::from));
    let registry = SetRegistry::new(2);
    let _held = choose(&table, &registry, 2, None, None, Change::Choose(&["A".into()]));
    let before = registry.len();
    for chosen in [None, Some(table.resolve(["BTC-USD"]).expect("configured"))] {
        match choose(&table, &registry, 2, chosen.as_ref(), None, change) {
            Ok(sub) => assert!(sub.set.len() <= 2 || sub.set.len() == table.len()),
            Err(_) => assert_eq!(registry.len(), before, "a refusal changed the registry"),
        }
    }
}

/// `--trusted-proxies` and `X-Forwarded-For` (`http::forwarded`), on text from the
/// command line and from the network. The input is a proxy list, a newline, then a
/// header value:
/// - nothing panics, whatever the text;
/// - a list that parses prints as a list that parses to the same networks;
/// - a peer that is not a trusted proxy is the client whatever the header says, and with
///   no trusted proxy at all every peer is;
/// - a trusted peer's answer is the peer, or an address that is not itself trusted, or
///   (every entry trusted) the first hop, empty list elements aside.
pub fn forwarded(data: &[u8]) {
    use crate::http::forwarded::{TrustedProxies, client_ip};
    use std::net::{IpAddr, Ipv4Addr};

    let text = String::from_utf8_lossy(data);
    let (list, xff) = text.split_once('\n').unwrap_or((&text, ""));
    let trusted = match TrustedProxies::parse(list) {
        Ok(t) => {
            let again = TrustedProxies::parse(&t.to_string()).expect("its own form parses");
            assert_eq!(again.networks(), t.networks(), "no round trip");
            t
        }
        Err(_) => TrustedProxies::parse("127.0.0.1,10.0.0.0/8,::1").expect("a valid list"),
    };
    let outsider = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99));
    if !trusted.contains(outsider) {
        assert_eq!(client_ip(outsider, Some(xff), &trusted), outsider, "an outsider's header");
    }
    let none = TrustedProxies::parse("").expect("the empty list");
    assert_eq!(client_ip(outsider, Some(xff), &none), outsider, "nobody trusted");
    if let Some(peer) = trusted.networks().first().map(|n| n.to_string()) {
        let peer: IpAddr = match peer.split('/').next().and_then(|a| a.parse().ok()) {
            Some(ip) => ip,
            None => return,
        };
        let client = client_ip(peer, Some(xff), &trusted);
        if client != peer && trusted.contains(client) {
            // Only the first hop may be a trusted proxy: every entry was one. Empty list
            // elements do not count (RFC 9110, section 5.6.1).
            let first = xff.split(',').map(str::trim).find(|e| !e.is_empty()).unwrap_or("");
            assert!(
                first.contains(&client.to_string()) || first.contains(':'),
                "{client} from {xff:?}"
            );
        }
    }
}

/// The TLS record layer of upgraded sessions, on bytes from the network.
///
/// The first byte picks TLS 1.3 or 1.2 and ChaCha20 or AES-256-GCM, the rest is what a peer sent:
/// - opening never panics, whatever the bytes; a record it opens lies inside the input
///   and consumed at least a header and a tag;
/// - what one side seals the other opens to the same bytes and content type (the keys
///   are fixed, so the fuzzer cannot forge records: authentication must refuse its own);
/// - what the transport would feed rustls before the upgrade lies inside the input and
///   is whole records, up to a header rustls refuses if there is one: never a record's
///   beginning alone.
#[cfg(feature = "tls")]
pub fn tls_records(data: &[u8]) {
    use rustls::crypto::cipher::{AeadKey, Iv};
    use rustls::{ConnectionTrafficSecrets, ExtractedSecrets, ProtocolVersion};

    use crate::parse::Status;
    use crate::tls::records::{APPLICATION_DATA, MAX_FRAGMENT, MAX_RECORD, Records};
    use crate::tls::records::{feedable, frame};

    let Some((&pick, wire)) = data.split_first() else { return };
    let fed = feedable(wire, MAX_RECORD);
    assert!(fed <= wire.len());
    let mut at = 0;
    while at < fed {
        match frame(&wire[at..]) {
            Ok(Status::Complete { consumed, .. }) => at += consumed,
            Ok(Status::Partial) => panic!("a record's beginning was fed"),
            Err(_) => break,
        }
    }
    let refused = at < fed && frame(&wire[at..]).is_err();
    assert!(at == fed || refused, "fed part of a record: {at} != {fed}");
    let version = if pick & 1 == 0 { ProtocolVersion::TLSv1_3 } else { ProtocolVersion::TLSv1_2 };
    let secrets = |fill: u8| {
        let (key, iv) = (AeadKey::from([fill; 32]), Iv::new([fill ^ 0x5a; 12]));
        // (rustls makes 16-byte keys only itself: AES-128 is covered by the unit tests.)
        match (pick >> 1) % 2 {
            0 => ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv },
            _ => ConnectionTrafficSecrets::Aes256Gcm { key, iv },
        }
    };
    let pair = |a: u8, b: u8| ExtractedSecrets { tx: (7, secrets(a)), rx: (7, secrets(b)) };
    let mut server = Records::new(version, u64::MAX, pair(1, 2)).expect("supported");
    let mut client = Records::new(version, u64::MAX, pair(2, 1)).expect("supported");

    let mut buf = wire.to_vec();
    let mut at = 0;
    while at < buf.len() {
        match server.open(&mut buf[at..]) {
            Ok(Some(opened)) => {
                assert!(opened.consumed >= 5 + 16 && at + opened.consumed <= buf.len());
                assert!(opened.plain.end <= opened.consumed);
                at += opened.consumed;
            }
            Ok(None) | Err(_) => break,
        }
    }

    let plain = &wire[..wire.len().min(MAX_FRAGMENT)];
    let mut sealed = Vec::new();
    client.seal(APPLICATION_DATA, plain, &mut sealed).expect("seals");
    assert_eq!(sealed.len(), client.sealed_len(plain.len()));
    let opened = server.open(&mut sealed).expect("own record opens").expect("whole");
    assert_eq!(opened.consumed, sealed.len());
    assert_eq!((opened.content_type, &sealed[opened.plain]), (APPLICATION_DATA, plain));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_accept_ordinary_inputs() {
        http_request(b"GET /ws/ticker?x-auth-token=a HTTP/1.1\r\nHost: x\r\n\r\n");
        http_request(b"POST /auth/token HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
        ws_decoder(&[3, 0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
        token(b"not a token");
        auth_body(br#"{"api_key":"k"}"#);
        auth_body(b"[1,2");
        source_message(br#"{"type":"ticker","product_id":"BTC-USD","price":"1.5"}"#);
        source_message(br#"{"channel":"ticker","data":[{"symbol":"A/B","last":1e308}]}"#);
        control_message(br#"{"type":"subscribe","symbols":["BTC-USD","NOPE"]}"#);
        control_message(br#"{"type":"unsubscribe","symbols":["A"]}"#);
        control_message(b"\xff\xfe");
        #[cfg(feature = "tls")]
        for pick in 0..4u8 {
            tls_records(&[pick, 23, 3, 3, 0, 40, 1, 2, 3]);
            tls_records(&[pick]);
        }
    }
}

/// Replays every committed fuzz corpus file through the invariant its target asserts, so
/// CI re-checks every input the fuzzers kept, and every crash they found, on each run
/// without needing a fuzzing toolchain.
#[cfg(test)]
mod corpus_replay {
    use std::path::Path;

    fn replay(target: &str, check: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {} missing: {e}", dir.display()))
            .map(|entry| entry.expect("readable corpus entry").path())
            .filter(|path| path.is_file())
            .collect();
        entries.sort();
        assert!(entries.len() >= 5, "corpus {target} has only {} inputs", entries.len());
        for path in &entries {
            // A fuzzer running beside the tests may have just merged this input away.
            let Ok(data) = std::fs::read(path) else { continue };
            // Name the input when an invariant breaks, so it can be rerun with `cargo fuzz run`.
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                panic!("{target}: invariant broken by {}", path.display());
            }
        }
        eprintln!("fuzz corpus {target}: {} inputs replayed", entries.len());
    }

    #[test]
    fn http_request_corpus() {
        replay("http_request", super::http_request);
    }

    #[test]
    fn ws_decoder_corpus() {
        replay("ws_decoder", super::ws_decoder);
    }

    #[test]
    fn token_corpus() {
        replay("token", super::token);
    }

    #[test]
    fn auth_body_corpus() {
        replay("auth_body", super::auth_body);
    }

    #[test]
    fn source_message_corpus() {
        replay("source_message", super::source_message);
    }

    #[test]
    fn control_message_corpus() {
        replay("control_message", super::control_message);
    }

    #[test]
    fn forwarded_corpus() {
        replay("forwarded", super::forwarded);
    }

    #[test]
    fn permessage_deflate_corpus() {
        replay("permessage_deflate", super::permessage_deflate);
    }

    #[test]
    #[cfg(feature = "tls")]
    fn tls_records_corpus() {
        replay("tls_records", super::tls_records);
    }
}

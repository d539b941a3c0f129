//! permessage-deflate (RFC 7692) as a receiving client: the offer the upgrade request
//! carries (`--deflate`), the check of the server's answer, and the inflater of
//! compressed messages.
//!
//! A compressed message is raw DEFLATE (no zlib header) whose trailing `00 00 FF FF`
//! (the empty stored block of a sync flush) the sender removed: the receiver appends it
//! again and inflates. With `server_no_context_takeover` each message stands alone and
//! the inflater is reset after each; without it the server's compressor keeps its
//! window across messages, and so must the inflater, one per connection. The tool
//! sends its few messages (subscribe, pong, close) uncompressed, which RFC 7692 allows.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use flate2::{Decompress, FlushDecompress, Status as ZStatus};

/// The `Sec-WebSocket-Extensions` value the upgrade request offers. Offering
/// `client_max_window_bits` (no value) lets the server limit a compressor the tool
/// never uses; any `server_max_window_bits` it picks is inflatable with a full window.
pub(crate) const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// A message inflating to more than this fails its connection: a compression bomb (a
/// few KiB that inflate to GiB) must not take the tool's memory.
pub(crate) const MAX_INFLATED: usize = 16 * 1024 * 1024;

/// The DEFLATE tail a sender strips from each message (RFC 7692 section 7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Output is grown by at most this much per inflate call.
const STEP: usize = 64 * 1024;

/// The parameters the server accepted (RFC 7692 section 7.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// Each server message is compressed on its own: the inflater resets per message.
    pub(crate) server_no_context_takeover: bool,
    pub(crate) client_no_context_takeover: bool,
    pub(crate) server_max_window_bits: Option<u8>,
    pub(crate) client_max_window_bits: Option<u8>,
}

impl fmt::Display for Accepted {
    /// The answer in a canonical form (the summary counts connections per form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("permessage-deflate")?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if let Some(bits) = self.server_max_window_bits {
            write!(f, "; server_max_window_bits={bits}")?;
        }
        if let Some(bits) = self.client_max_window_bits {
            write!(f, "; client_max_window_bits={bits}")?;
        }
        Ok(())
    }
}

/// Why a server's `Sec-WebSocket-Extensions` answer fails the connection (RFC 7692
/// section 5: a client must fail the connection on an answer it cannot accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerError {
    /// An extension other than permessage-deflate, or more than one.
    NotOffered,
    /// A parameter unknown, repeated, or with a bad value.
    BadParameter,
}

/// Reads the server's answer to [`OFFER`] (the `Sec-WebSocket-Extensions` value).
pub(crate) fn parse_answer(value: &str) -> Result<Accepted, AnswerError> {
    if value.contains(',') {
        return Err(AnswerError::NotOffered); // one offer, at most one answer
    }
    let mut parts = value.split(';').map(str::trim);
    if !parts.next().is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate")) {
        return Err(AnswerError::NotOffered);
    }
    let mut a = Accepted::default();
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (part, None),
        };
        let flag = |set: &mut bool| {
            if *set || value.is_some() {
                return Err(AnswerError::BadParameter);
            }
            *set = true;
            Ok(())
        };
        let bits = |set: &mut Option<u8>| {
            let n = value.and_then(|v| v.parse::<u8>().ok()).filter(|n| (8..=15).contains(n));
            match (*set, n) {
                (None, Some(n)) => {
                    *set = Some(n);
                    Ok(())
                }
                _ => Err(AnswerError::BadParameter),
            }
        };
        match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => flag(&mut a.server_no_context_takeover)?,
            "client_no_context_takeover" => flag(&mut a.client_no_context_takeover)?,
            "server_max_window_bits" => bits(&mut a.server_max_window_bits)?,
            "client_max_window_bits" => bits(&mut a.client_max_window_bits)?,
            _ => return Err(AnswerError::BadParameter),
        }
    }
    Ok(a)
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum InflateError {
    /// Over [`MAX_INFLATED`] bytes.
    TooBig,
    /// Not valid DEFLATE data.
    Corrupt,
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InflateError::TooBig => write!(f, "message inflates past {} MiB", MAX_INFLATED >> 20),
            InflateError::Corrupt => f.write_str("bad DEFLATE data"),
        }
    }
}

/// One connection's inflater: fed a compressed message piece by piece, it appends the
/// inflated bytes to the caller's buffer.
pub(crate) struct Inflater {
    z: Decompress,
    /// Reset after every message (`server_no_context_takeover`), else kept.
    reset_per_message: bool,
    /// The sender ended its DEFLATE stream (a block with BFINAL): a new one follows.
    ended: bool,
    limit: usize,
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflater").field("reset_per_message", &self.reset_per_message).finish()
    }
}

impl Inflater {
    pub(crate) fn new(accepted: &Accepted) -> Inflater {
        Inflater::with_limit(accepted, MAX_INFLATED)
    }

    fn with_limit(accepted: &Accepted, limit: usize) -> Inflater {
        Inflater {
            z: Decompress::new(false),
            reset_per_message: accepted.server_no_context_takeover,
            ended: false,
            limit,
        }
    }

    /// Inflates the next piece of a message's payload into `out`.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), InflateError> {
        let mut input = input;
        loop {
            if self.ended {
                // Bytes after a final block belong to no stream: the sender's error.
                return if input.is_empty() { Ok(()) } else { Err(InflateError::Corrupt) };
            }
            let room = (self.limit + 1).saturating_sub(out.len()).min(STEP);
            if out.capacity() - out.len() < room {
                out.reserve_exact(room);
            }
            let (in_before, out_before) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            if out.len() > self.limit {
                return Err(InflateError::TooBig);
            }
            let used = (self.z.total_in() - in_before) as usize;
            let made = self.z.total_out() - out_before;
            input = &input[used..];
            if status == ZStatus::StreamEnd {
                self.ended = true;
                continue;
            }
            // Done when the input is used up and the output had room to spare (nothing
            // more is pending inside the inflater).
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
            if used == 0 && made == 0 && out.len() < out.capacity() {
                return Err(InflateError::Corrupt); // no progress with room and input
            }
        }
    }

    /// Back to a fresh context, as after a message compressed alone.
    fn reset(&mut self) {
        self.z.reset(false);
        self.ended = false;
    }

    /// The message is complete: its stripped tail goes in, and the context is reset when
    /// the server compresses each message alone (or ended its stream).
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), InflateError> {
        if !self.ended {
            self.feed(&TAIL, out)?;
        }
        if self.reset_per_message || self.ended {
            self.reset();
        }
        Ok(())
    }
}

const ALONE: Accepted = Accepted {
    server_no_context_takeover: true,
    client_no_context_takeover: false,
    server_max_window_bits: None,
    client_max_window_bits: None,
};

thread_local! {
    /// One inflater per engine thread for messages compressed alone: an inflater holds
    /// about 40 KiB (its 32 KiB window), which thousands of connections need not each
    /// keep when no message depends on the one before.
    static THREAD_INFLATER: RefCell<Inflater> = RefCell::new(Inflater::new(&ALONE));
}

/// Inflates `payload`, a whole message compressed on its own (no context takeover),
/// into `out` with the thread's inflater.
pub(crate) fn inflate_alone(payload: &[u8], out: &mut Vec<u8>) -> Result<(), InflateError> {
    THREAD_INFLATER.with_borrow_mut(|inflater| {
        let done = inflater.feed(payload, out).and_then(|()| inflater.finish(out));
        if done.is_err() {
            inflater.reset(); // ready for the next connection's message
        }
        done
    })
}

/// `--deflate`: what the upgrades negotiated, and (steady window) what came compressed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeflateCounters {
    /// Upgrades answered with permessage-deflate, by the answer in canonical form
    /// ([`crate::deflate::Accepted`]'s `Display`).
    pub(crate) accepted: BTreeMap<String, u64>,
    /// Upgrades answered without it: those sessions went on uncompressed.
    pub(crate) declined: u64,
    /// Compressed messages, their payload bytes as received, and inflated.
    pub(crate) messages: u64,
    pub(crate) compressed_bytes: u64,
    pub(crate) inflated_bytes: u64,
}

impl DeflateCounters {
    pub(crate) fn add(&mut self, o: &DeflateCounters) {
        for (k, v) in &o.accepted {
            *self.accepted.entry(k.clone()).or_default() += v;
        }
        self.declined += o.declined;
        self.messages += o.messages;
        self.compressed_bytes += o.compressed_bytes;
        self.inflated_bytes += o.inflated_bytes;
    }

    pub(crate) fn accepted_total(&self) -> u64 {
        self.accepted.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use flate2::{Compress, Compression, FlushCompress};

    use super::*;

    /// What a permessage-deflate server sends for `msg`: raw DEFLATE, sync flush, tail
    /// stripped. `z` carries the context from message to message when kept.
    fn compress(z: &mut Compress, msg: &[u8]) -> Vec<u8> {
        let start = z.total_in();
        let mut out = Vec::with_capacity(msg.len() + 64);
        loop {
            let at = (z.total_in() - start) as usize;
            z.compress_vec(&msg[at..], &mut out, FlushCompress::Sync).unwrap();
            if (z.total_in() - start) as usize == msg.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        assert_eq!(&out[out.len() - 4..], &TAIL, "a sync flush ends with the empty block");
        out.truncate(out.len() - 4);
        out
    }

    fn inflate(inf: &mut Inflater, pieces: &[&[u8]]) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        for piece in pieces {
            inf.feed(piece, &mut out)?;
        }
        inf.finish(&mut out)?;
        Ok(out)
    }

    const NO_TAKEOVER: Accepted = Accepted {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: None,
        client_max_window_bits: None,
    };

    #[test]
    fn messages_compressed_alone_inflate_with_a_reset_between() {
        let mut inf = Inflater::new(&NO_TAKEOVER);
        for seq in 0..5 {
            let msg = format!(r#"{{"type":"ticker","seq":{seq},"data":[{{"symbol":"BTC-USD"}}]}}"#);
            // A fresh compressor per message: no context takeover.
            let wire = compress(&mut Compress::new(Compression::default(), false), msg.as_bytes());
            assert_eq!(inflate(&mut inf, &[&wire]).unwrap(), msg.as_bytes(), "seq {seq}");
            // Split anywhere, the same message comes out.
            for cut in 0..wire.len() {
                let got = inflate(&mut inf, &[&wire[..cut], &wire[cut..]]).unwrap();
                assert_eq!(got, msg.as_bytes(), "cut {cut}");
            }
        }
    }

    #[test]
    fn with_context_takeover_one_inflater_follows_the_servers_window() {
        let mut z = Compress::new(Compression::default(), false);
        let mut inf = Inflater::new(&Accepted::default());
        let msg = br#"{"type":"ticker","seq":1,"data":[{"symbol":"ETH-USD","price":3000.5}]}"#;
        let first = compress(&mut z, msg);
        let second = compress(&mut z, msg);
        assert!(second.len() < first.len(), "the second refers back to the first");
        assert_eq!(inflate(&mut inf, &[&first]).unwrap(), msg);
        assert_eq!(inflate(&mut inf, &[&second]).unwrap(), msg);
        // An inflater that resets cannot read the second: it is corrupt without the window.
        let mut alone = Inflater::new(&NO_TAKEOVER);
        assert_eq!(inflate(&mut alone, &[&first]).unwrap(), msg);
        assert_ne!(inflate(&mut alone, &[&second]).ok().as_deref(), Some(&msg[..]));
    }

    #[test]
    fn a_bomb_past_the_bound_is_refused_and_a_message_at_it_is_not() {
        let zeros = vec![0u8; MAX_INFLATED + 1];
        let bomb = compress(&mut Compress::new(Compression::best(), false), &zeros);
        assert!(bomb.len() < 64 * 1024, "{} bytes on the wire", bomb.len());
        let mut inf = Inflater::new(&NO_TAKEOVER);
        assert_eq!(inflate(&mut inf, &[&bomb]), Err(InflateError::TooBig));
        let fits = compress(&mut Compress::new(Compression::best(), false), &zeros[1..]);
        let mut inf = Inflater::new(&NO_TAKEOVER);
        assert_eq!(inflate(&mut inf, &[&fits]).map(|v| v.len()), Ok(MAX_INFLATED));
        // A small bound, crossed in the middle of a piece.
        let mut small = Inflater::with_limit(&NO_TAKEOVER, 1000);
        let wire = compress(&mut Compress::new(Compression::best(), false), &zeros[..1001]);
        assert_eq!(inflate(&mut small, &[&wire]), Err(InflateError::TooBig));
    }

    #[test]
    fn the_threads_inflater_takes_message_after_message_even_after_a_bad_one() {
        let msg = br#"{"type":"ticker","seq":7,"data":[]}"#;
        let wire = compress(&mut Compress::new(Compression::default(), false), msg);
        for round in 0..3 {
            let mut out = Vec::new();
            assert_eq!(inflate_alone(&wire, &mut out), Ok(()), "round {round}");
            assert_eq!(out, msg);
            let mut junk = Vec::new();
            assert_eq!(inflate_alone(&[0xFF, 0xFF], &mut junk), Err(InflateError::Corrupt));
            // Cut short: not an error to the inflater, but it must not leak into the next.
            let mut half = Vec::new();
            let _ = inflate_alone(&wire[..wire.len() / 2], &mut half);
        }
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut inf = Inflater::new(&NO_TAKEOVER);
        // 0xFF: a block of the reserved type 3.
        assert_eq!(inflate(&mut inf, &[&[0xFF, 0xFF, 0xFF]]), Err(InflateError::Corrupt));
    }

    #[test]
    fn the_servers_answer_is_read_parameter_by_parameter() {
        let a = parse_answer(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        )
        .unwrap();
        assert_eq!(a, NO_TAKEOVER);
        assert_eq!(
            a.to_string(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        let a = parse_answer(
            "Permessage-Deflate;server_max_window_bits=10; client_max_window_bits=\"12\"",
        )
        .unwrap();
        assert_eq!((a.server_max_window_bits, a.client_max_window_bits), (Some(10), Some(12)));
        assert!(!a.server_no_context_takeover);
        assert_eq!(parse_answer("permessage-deflate"), Ok(Accepted::default()));
        for bad in ["x-webkit-deflate-frame", "permessage-deflate, permessage-deflate", ""] {
            assert_eq!(parse_answer(bad), Err(AnswerError::NotOffered), "{bad}");
        }
        for bad in [
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=15; client_max_window_bits=15",
            "permessage-deflate; mystery",
        ] {
            assert_eq!(parse_answer(bad), Err(AnswerError::BadParameter), "{bad}");
        }
    }
}

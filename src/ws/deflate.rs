//! permessage-deflate (RFC 7692): the negotiation at the upgrade, compressing a server
//! message once for every session that negotiated it, and inflating a client message
//! under a hard bound. Pure code over bytes; the DEFLATE itself is `flate2` (zlib-rs).
//!
//! What this server agrees to, whatever the offer (section 7.1):
//! - `server_no_context_takeover`: every server message is compressed on its own, so
//!   one compressed frame is valid for every session and nothing is kept per session.
//! - `client_no_context_takeover`: every client message is compressed on its own, so a
//!   message is inflated in one call with the loop's one inflater, not a 32 KiB window
//!   per session. A server may answer with it whether or not the client offered it.
//! - `server_max_window_bits=N` (8..15) offered: echoed. Frames are compressed once with
//!   the full window, and a back-reference can reach at most as far back as the message
//!   is long, so a session whose limit is below 15 gets the compressed frame only when
//!   the payload fits in 2^N bytes, and the plain frame (RSV1 clear, which RFC 7692
//!   allows in a deflate session) otherwise.
//! - `client_max_window_bits` (with or without a value) is accepted and not answered:
//!   the client may use any window, the one-shot inflate handles them all.
//!
//! An offer with an unknown parameter, a repeated one or a bad value is declined, and
//! the next offer in the header is considered (section 5.1).

use std::cell::RefCell;
use std::sync::Arc;

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::ProtocolError;
use crate::ws::frame::{self, OpCode};

/// The extension's token in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";

/// The DEFLATE level of server messages. Measured on this server's tick frames with
/// zlib-rs (docs/performance.md): level 1 leaves 100-symbol frames at 20 % of their
/// size, level 2 at 13.8 % for twice the time (about 15 µs), and higher levels gain
/// under half a point for 40 % more time.
pub const LEVEL: u32 = 2;

/// Server messages shorter than this go uncompressed. A changes message of one symbol or
/// a heartbeat (80 to 160 bytes) compresses by about a sixth and costs a compressor
/// reset (5 µs) per message; at 1,000 sets of 5 symbols that was a third of the
/// server's CPU for 20 % of the bytes (docs/performance.md).
pub const MIN_PAYLOAD: usize = 160;

/// Whether a server message of `payload_len` bytes is compressed (see [`MIN_PAYLOAD`]).
#[inline]
pub fn worth_compressing(payload_len: usize) -> bool {
    payload_len >= MIN_PAYLOAD
}

/// The largest window (2^15 = 32 KiB), what a session without a limit accepts.
pub const MAX_WINDOW_BITS: u8 = 15;

/// `--compression`: whether offers are accepted at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Off,
    Deflate,
}

impl Compression {
    pub fn parse(v: &str) -> Option<Compression> {
        match v.to_ascii_lowercase().as_str() {
            "off" => Some(Compression::Off),
            "deflate" => Some(Compression::Deflate),
            _ => None,
        }
    }
}

/// What was agreed with one client: the window its server messages must fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// `server_max_window_bits`, 8..=15 (15 when the client set no limit).
    pub server_window_bits: u8,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` value of the 101 answer.
    pub fn response(&self) -> String {
        let mut v = format!("{EXTENSION}; server_no_context_takeover; client_no_context_takeover");
        if self.server_window_bits < MAX_WINDOW_BITS {
            v.push_str(&format!("; server_max_window_bits={}", self.server_window_bits));
        }
        v
    }

    /// Whether a message of `payload_len` bytes compressed with the full window is valid
    /// for this session (see the module's notes on `server_max_window_bits`).
    #[inline]
    pub fn fits(&self, payload_len: usize) -> bool {
        self.server_window_bits >= MAX_WINDOW_BITS || payload_len <= 1 << self.server_window_bits
    }
}

/// The first acceptable permessage-deflate offer among the `Sec-WebSocket-Extensions`
/// values (the header may repeat), or `None` if there is none.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Agreed> {
    values.into_iter().flat_map(|v| split_outside_quotes(v, ',')).find_map(accept_offer)
}

/// One offer: `permessage-deflate; param[=value]; ...`.
fn accept_offer(offer: &str) -> Option<Agreed> {
    let mut parts = split_outside_quotes(offer, ';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut agreed = Agreed { server_window_bits: MAX_WINDOW_BITS };
    let mut seen = [false; 4];
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        let slot = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => 1,
            "server_max_window_bits" => {
                agreed.server_window_bits = window_bits(value?)?;
                2
            }
            "client_max_window_bits" => {
                if let Some(v) = value {
                    window_bits(v)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
    }
    Some(agreed)
}

/// A window size parameter: 8 to 15, digits only, no leading zero (section 7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

/// Splits on `sep` except inside double quotes (a quoted parameter value may hold one).
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    s.split(move |c| {
        if c == '"' {
            quoted = !quoted;
        }
        c == sep && !quoted
    })
}

/// A compressor of whole messages, reset before each (no context takeover). Reused: the
/// ticker keeps one, so a tick allocates only the frames it makes.
pub struct Deflater {
    inner: Compress,
    /// The compressed payload of the last message (reused).
    scratch: Vec<u8>,
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater {
            inner: Compress::new(flate2::Compression::new(LEVEL), false),
            scratch: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deflater")
    }
}

impl Deflater {
    /// The compressed frame (RSV1 set, one final frame) of `payload`, a message of type
    /// `opcode`; `None` if DEFLATE failed, which leaves the caller with the plain frame.
    pub fn frame(&mut self, opcode: OpCode, payload: &[u8]) -> Option<Arc<[u8]>> {
        self.inner.reset();
        self.scratch.clear();
        // Deflate's worst case is a few bytes per 16 KiB over the input, so this is enough
        // for one call; the loop only guards against a library that disagrees.
        self.scratch.reserve(payload.len() + payload.len() / 256 + 64);
        loop {
            let read = self.inner.total_in() as usize;
            self.inner
                .compress_vec(&payload[read..], &mut self.scratch, FlushCompress::Sync)
                .ok()?;
            // All input in, and room left over: the flush is complete.
            if self.inner.total_in() as usize == payload.len()
                && self.scratch.len() < self.scratch.capacity()
            {
                break;
            }
            self.scratch.reserve(self.scratch.capacity());
        }
        // Section 7.2.1: the tail of the sync flush is not sent.
        let body = self.scratch.strip_suffix(&SYNC_TAIL)?;
        let (header, header_len) = frame::server_header(opcode, body.len());
        let mut out = Vec::with_capacity(header_len + body.len());
        out.extend_from_slice(&header[..header_len]);
        out[0] |= frame::RSV1;
        out.extend_from_slice(body);
        Some(Arc::from(out))
    }
}

/// The empty stored block a sync flush ends with.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

thread_local! {
    /// One inflater per thread (an event loop's): client messages are independent
    /// (`client_no_context_takeover`), so no window is kept per session.
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
    /// And one compressor, for frames a loop builds itself (a snapshot, a reply).
    static DEFLATER: RefCell<Deflater> = RefCell::new(Deflater::default());
}

/// The compressed frame of `payload`, with this thread's compressor.
pub fn frame_here(opcode: OpCode, payload: &[u8]) -> Option<Arc<[u8]>> {
    DEFLATER.with(|d| d.borrow_mut().frame(opcode, payload))
}

/// Inflates one client message (RSV1 was set on its first frame). The output stops at
/// `max` bytes: a message that would inflate past it is refused as too big, so an
/// inflate bomb costs at most `max` bytes and the time to produce them.
pub fn inflate(compressed: &[u8], max: usize) -> Result<Vec<u8>, ProtocolError> {
    let mut input = Vec::with_capacity(compressed.len() + SYNC_TAIL.len());
    input.extend_from_slice(compressed);
    input.extend_from_slice(&SYNC_TAIL);
    INFLATER.with(|cell| {
        let mut d = cell.borrow_mut();
        d.reset(false);
        // Room for one byte over the limit tells "exactly max" from "more than max".
        let mut out = Vec::with_capacity((compressed.len() * 4).max(64).min(max + 1));
        let mut used = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() > max {
                    return Err(ProtocolError::MessageTooBig);
                }
                out.reserve_exact((out.capacity() * 2).min(max + 1) - out.len());
            }
            let before = d.total_in();
            let status = d
                .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
                .map_err(|_| ProtocolError::BadCompressedData)?;
            let progress = d.total_in() - before;
            used += progress as usize;
            if out.len() > max {
                return Err(ProtocolError::MessageTooBig);
            }
            // A final block ends the message (what follows is not part of it); all input
            // taken with room to spare means nothing more is pending inside.
            if status == Status::StreamEnd || (used == input.len() && out.len() < out.capacity()) {
                return Ok(out);
            }
            if progress == 0 && status == Status::BufError && out.len() < out.capacity() {
                return Err(ProtocolError::BadCompressedData);
            }
        }
    })
}

#[cfg(test)]
mod tests;

//! The record-layer side of a [`TlsStream`](super::TlsStream): once a connection is a
//! WebSocket session and rustls has sent all it held, its records are sealed and opened
//! here by [`crate::tls::records`] with the keys taken from rustls (the hand-over is
//! `TlsStream::hand_over`). The write and read rules of the stream's module doc hold
//! here too: nothing is sealed while a record is pending, and what the socket does not
//! take is one record at most.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::ops::Range;

use mio::net::TcpStream;

use crate::tls::records::{self, Records};

/// Records in a row without plaintext a session may send before it is closed as a
/// flood: OpenSSL's bound (`MAX_EMPTY_RECORDS`). Each is a decryption for nothing.
pub(super) const MAX_EMPTY_RECORDS: u32 = 32;

/// An upgraded session's record layer and its few buffers, empty (unallocated) most of
/// the time: a tick is sealed into the event loop's scratch buffer and written at once.
pub(super) struct Session {
    records: Records,
    /// Ciphertext the socket did not take; `pending_from` is where the rest starts.
    pending: Vec<u8>,
    pending_from: usize,
    /// Bytes received; `plain` is the opened record's unread plaintext inside it, and
    /// `record_end` where the opened records end (what follows is not opened yet).
    /// Opened records are dropped from the front only before the next TCP read, so a
    /// buffer of many small records costs one move, not one per record.
    rx: Vec<u8>,
    plain: Range<usize>,
    record_end: usize,
    /// Records opened in a row that carried no plaintext (see [`MAX_EMPTY_RECORDS`]).
    empty_run: u32,
    /// The peer sent `close_notify`: reads return EOF.
    peer_closed: bool,
}

thread_local! {
    /// The event loop's buffer for sealing: one per io-thread, warm in cache, instead of
    /// a buffer per connection.
    static SEAL_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Records left on a session's sending key below which it is closed in order (1001,
/// "TLS key limit"): the periodic sweep sees it within a quarter second, 25 ticks, and a
/// few pongs and replies may come on top; the client reconnects with fresh keys.
const KEY_LIMIT_MARGIN: u64 = 1_000;

impl Session {
    /// The session as the hand-over leaves it: `rx` holds what rustls decrypted and the
    /// connection had not read (`plain`, at its front), then the ciphertext rustls was
    /// never given.
    pub(super) fn new(
        records: Records,
        rx: Vec<u8>,
        plain: Range<usize>,
        peer_closed: bool,
    ) -> Session {
        Session {
            records,
            pending: Vec::new(),
            pending_from: 0,
            // The leftover plaintext reads as an opened record ending at its end.
            record_end: plain.end,
            plain,
            rx,
            empty_run: 0,
            peer_closed,
        }
    }

    /// The sending key is close to its confidentiality limit: time to close in order.
    pub(super) fn key_nearly_used_up(&self) -> bool {
        self.records.records_left() < KEY_LIMIT_MARGIN
    }

    /// Seals up to one record of `buf` and sends it; what the socket does not take
    /// waits in `pending` (one record at most: nothing is sealed while some waits).
    pub(super) fn write(&mut self, tcp: &mut TcpStream, buf: &[u8]) -> io::Result<usize> {
        if !self.send_pending(tcp)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(records::MAX_FRAGMENT);
        self.send_record(tcp, records::APPLICATION_DATA, &buf[..n])?;
        Ok(n)
    }

    fn send_record(
        &mut self,
        tcp: &mut TcpStream,
        content_type: u8,
        plain: &[u8],
    ) -> io::Result<()> {
        SEAL_SCRATCH.with(|scratch| {
            let mut out = scratch.borrow_mut();
            out.clear();
            self.records
                .seal(content_type, plain, &mut out)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let sent = loop {
                match tcp.write(&out) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            };
            if sent < out.len() {
                self.pending.extend_from_slice(&out[sent..]);
            }
            Ok(())
        })
    }

    pub(super) fn send_pending(&mut self, tcp: &mut TcpStream) -> io::Result<bool> {
        while self.pending_from < self.pending.len() {
            match tcp.write(&self.pending[self.pending_from..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.pending_from += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.pending_from > 0 {
            self.pending = Vec::new();
            self.pending_from = 0;
        }
        Ok(true)
    }

    /// Plaintext of the peer's application-data records; `Ok(0)` at `close_notify` or
    /// TCP EOF; an error for anything a session may not receive.
    pub(super) fn read(&mut self, tcp: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.plain.is_empty() {
                let n = self.plain.len().min(buf.len());
                buf[..n].copy_from_slice(&self.rx[self.plain.start..self.plain.start + n]);
                self.plain.start += n;
                return Ok(n);
            }
            if self.peer_closed {
                return Ok(0);
            }
            let opened = self
                .records
                .open(&mut self.rx[self.record_end..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if let Some(opened) = opened {
                let at = self.record_end;
                self.record_end = at + opened.consumed;
                let plain = at + opened.plain.start..at + opened.plain.end;
                if opened.content_type == records::ALERT {
                    records::alert(&self.rx[plain])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    self.peer_closed = true;
                    return Ok(0);
                }
                // Empty records are allowed, but each costs a decryption and yields
                // nothing: a run of them is a flood (OpenSSL's rule and bound).
                self.empty_run = if plain.is_empty() { self.empty_run + 1 } else { 0 };
                if self.empty_run > MAX_EMPTY_RECORDS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "too many empty records",
                    ));
                }
                self.plain = plain;
                continue;
            }
            // The opened records go, in one move, before more ciphertext comes in.
            self.rx.drain(..self.record_end);
            self.record_end = 0;
            // Need more bytes: the caller's buffer (the loop's read buffer) takes them
            // first, and only what they hold is kept; drained, an idle session holds none.
            match tcp.read(buf) {
                Ok(0) => return Ok(0),
                Ok(n) => self.rx.extend_from_slice(&buf[..n]),
                Err(e) => {
                    if self.rx.is_empty() {
                        self.rx = Vec::new();
                    }
                    return Err(e);
                }
            }
        }
    }

    /// `close_notify`, then what is pending, best effort.
    pub(super) fn close_notify(&mut self, tcp: &mut TcpStream) {
        if self.send_pending(tcp).unwrap_or(false) {
            let _ = self.send_record(tcp, records::ALERT, &records::CLOSE_NOTIFY);
        }
    }
}

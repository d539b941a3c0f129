//! The outbox: bytes waiting for a connection's socket, in the order they must go out,
//! with tick conflation. Pure over any `Write`, so it is tested with in-memory writers.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::Arc;

/// Bytes queued for a connection: a tick frame shared by every subscriber, or bytes
/// owned by this connection (HTTP responses, welcome, pong, close).
pub(crate) enum Chunk {
    Shared(Arc<[u8]>),
    Owned(Vec<u8>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(b) => b,
            Chunk::Owned(b) => b,
        }
    }
}

/// Most owned frames (pongs, replies) a connection may have queued; a client that keeps
/// asking without reading is closed rather than buffered for.
pub(crate) const MAX_QUEUED: usize = 64;

/// What waits to be written, in order: the frame already partly written (it must be
/// finished before anything else: frames cannot interleave), then owned chunks (control
/// frames and replies are never dropped), then the newest tick (conflated: a newer tick
/// replaces an older undelivered one).
#[derive(Default)]
pub struct Outbox {
    current: Option<Chunk>,
    offset: usize,
    queue: VecDeque<Chunk>,
    /// Bytes of the owned chunks in `queue` (answers, replies): what a client that asks
    /// without reading makes the server hold. Ticks are shared and conflated, not counted.
    owned_bytes: usize,
    pub(crate) latest_tick: Option<Arc<[u8]>>,
}

/// What one flush achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub bytes: usize,
    /// Tick frames completed (for `frames_sent`).
    pub ticks: usize,
}

impl Outbox {
    pub fn is_empty(&self) -> bool {
        self.current.is_none() && self.queue.is_empty() && self.latest_tick.is_none()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Bytes of queued answers and replies not yet started (see `owned_bytes`).
    pub fn owned_bytes(&self) -> usize {
        self.owned_bytes
    }

    pub fn push(&mut self, bytes: Vec<u8>) {
        self.owned_bytes += bytes.len();
        self.queue.push_back(Chunk::Owned(bytes));
    }

    /// A tick frame the socket only partly took.
    pub fn set_partial_tick(&mut self, frame: Arc<[u8]>, written: usize) {
        debug_assert!(self.current.is_none());
        self.current = Some(Chunk::Shared(frame));
        self.offset = written;
    }

    /// Offers the newest tick; returns whether an undelivered older tick was dropped.
    pub fn offer_tick(&mut self, frame: Arc<[u8]>) -> bool {
        self.latest_tick.replace(frame).is_some()
    }

    /// Drops the pending tick and queued replies, keeping only the partly written frame
    /// (which must be finished) — used before a close frame goes out.
    pub fn clear_pending(&mut self) {
        self.queue.clear();
        self.owned_bytes = 0;
        self.latest_tick = None;
    }

    /// Writes until the outbox is empty or the socket would block.
    pub fn flush<W: Write>(&mut self, w: &mut W) -> io::Result<Flushed> {
        let mut done = Flushed::default();
        loop {
            if self.current.is_none() {
                self.offset = 0;
                self.current = match self.queue.pop_front() {
                    Some(chunk) => {
                        if let Chunk::Owned(bytes) = &chunk {
                            self.owned_bytes -= bytes.len();
                        }
                        Some(chunk)
                    }
                    None => self.latest_tick.take().map(Chunk::Shared),
                };
            }
            let Some(chunk) = &self.current else { return Ok(done) };
            let bytes = chunk.bytes();
            match w.write(&bytes[self.offset..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done.bytes += n;
                    self.offset += n;
                    if self.offset == bytes.len() {
                        if matches!(chunk, Chunk::Shared(_)) {
                            done.ticks += 1;
                        }
                        self.current = None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(done),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `room` bytes, then would block.
    struct Throttled {
        written: Vec<u8>,
        room: usize,
    }

    impl Write for Throttled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_partly_written_frame_is_finished_before_anything_else() {
        let mut out = Outbox::default();
        out.set_partial_tick(Arc::from(&b"TICK1"[..]), 2);
        out.push(b"PONG".to_vec());
        assert!(!out.offer_tick(Arc::from(&b"TICK2"[..])));
        assert!(out.offer_tick(Arc::from(&b"TICK3"[..])), "TICK2 is conflated");
        let mut w = Throttled { written: Vec::new(), room: 5 };
        let f = out.flush(&mut w).unwrap();
        assert_eq!(f, Flushed { bytes: 5, ticks: 1 });
        w.room = 100;
        out.flush(&mut w).unwrap();
        assert_eq!(w.written, b"CK1PONGTICK3");
        assert!(out.is_empty());
    }

    #[test]
    fn owned_bytes_count_the_queued_answers_not_yet_started() {
        let mut out = Outbox::default();
        out.push(vec![b'a'; 10]);
        out.push(vec![b'b'; 5]);
        out.offer_tick(Arc::from(&b"TICK"[..]));
        assert_eq!(out.owned_bytes(), 15);
        let mut w = Throttled { written: Vec::new(), room: 3 };
        out.flush(&mut w).unwrap();
        assert_eq!(out.owned_bytes(), 5, "the chunk in flight is no longer queued");
        out.clear_pending();
        assert_eq!(out.owned_bytes(), 0);
    }

    #[test]
    fn clearing_keeps_the_partial_frame() {
        let mut out = Outbox::default();
        out.set_partial_tick(Arc::from(&b"ABCD"[..]), 1);
        out.push(b"X".to_vec());
        out.offer_tick(Arc::from(&b"T"[..]));
        out.clear_pending();
        out.push(b"CLOSE".to_vec());
        let mut w = Throttled { written: Vec::new(), room: 100 };
        out.flush(&mut w).unwrap();
        assert_eq!(w.written, b"BCDCLOSE");
    }
}

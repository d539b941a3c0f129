//! One connection: its socket, its state (HTTP → WebSocket → closing), the bytes read but
//! not yet parsed, and the [`Outbox`] of bytes waiting for the socket.
//!
//! Memory per idle subscriber is this struct plus nothing: the read buffer is shared by
//! the whole event loop and `inbuf` only holds the tail of a partly received message.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;

use crate::auth::token::{Actor, TokenId};
use crate::ws::codec::Decoder;

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

    pub fn push(&mut self, bytes: Vec<u8>) {
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
        self.latest_tick = None;
    }

    /// Writes until the outbox is empty or the socket would block.
    pub fn flush<W: Write>(&mut self, w: &mut W) -> io::Result<Flushed> {
        let mut done = Flushed::default();
        loop {
            if self.current.is_none() {
                self.offset = 0;
                self.current = match self.queue.pop_front() {
                    Some(chunk) => Some(chunk),
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

/// Where an HTTP connection is in its request/response cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HttpPhase {
    /// Reading the next request (answers to earlier ones may still be in the outbox).
    Reading,
    /// A worker is preparing the answer; pipelined requests wait in `inbuf`.
    Waiting { keep_alive: bool, origin: Option<String> },
}

/// An open WebSocket session.
pub(crate) struct Session {
    pub(crate) decoder: Decoder,
    pub(crate) actor: Arc<Actor>,
    pub(crate) api_key_id: i64,
    pub(crate) token_id: TokenId,
    /// A heartbeat ping went out and no frame came back since.
    pub(crate) ping_outstanding: bool,
}

pub(crate) enum State {
    /// `idle_since`: when the last answer was queued (or the connection accepted);
    /// `head_since`: when the first byte of the request being read arrived.
    Http {
        phase: HttpPhase,
        idle_since: Instant,
        head_since: Option<Instant>,
        served: u32,
    },
    WebSocket(Box<Session>),
    /// Flushing the last bytes (a close frame, a final response); after them the write
    /// side is shut and the peer's FIN awaited, so no unread byte turns our FIN into a
    /// RST that could destroy the answer. The deadline bounds it all.
    Closing {
        deadline: Instant,
        write_shut: bool,
    },
}

pub(crate) struct Conn {
    pub(crate) socket: TcpStream,
    pub(crate) serial: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) state: State,
    /// Bytes read but not yet consumed by a parser (empty most of the time).
    pub(crate) inbuf: Vec<u8>,
    pub(crate) out: Outbox,
    pub(crate) last_read: Instant,
    /// Last write progress, or when the outbox last became non-empty: a subscriber whose
    /// outbox stays non-empty past this by the slow-consumer timeout is closed.
    pub(crate) last_progress: Instant,
}

impl Conn {
    pub(crate) fn new(socket: TcpStream, serial: u64, peer: SocketAddr, now: Instant) -> Conn {
        Conn {
            socket,
            serial,
            peer,
            state: State::Http {
                phase: HttpPhase::Reading,
                idle_since: now,
                head_since: None,
                served: 0,
            },
            inbuf: Vec::new(),
            out: Outbox::default(),
            last_read: now,
            last_progress: now,
        }
    }

    /// Caps the kernel send buffer (`SO_SNDBUF`; the kernel doubles the value). Best
    /// effort: on failure the kernel default stays.
    pub(crate) fn set_send_buffer(&self, bytes: usize) {
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: setsockopt on a socket this connection owns, with a valid int option.
        let rc = unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            crate::debug!("SO_SNDBUF not set", error = io::Error::last_os_error());
        }
    }

    pub(crate) fn is_subscriber(&self) -> bool {
        matches!(self.state, State::WebSocket(_))
    }

    /// Releases `inbuf`'s memory once it is empty and large, keeping idle sessions lean.
    pub(crate) fn trim_inbuf(&mut self) {
        if self.inbuf.is_empty() && self.inbuf.capacity() > 4096 {
            self.inbuf = Vec::new();
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

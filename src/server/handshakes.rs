//! TLS handshakes off the event loops: the handshake pool (`handshakes/pool.rs`), and each
//! shard's bounded share of it.
//!
//! The rules:
//! - **An event loop never runs handshake crypto.** It only moves bytes: it reads a
//!   client's ciphertext, gives rustls whole records, and writes what rustls wants to
//!   send (`transport/tls_stream.rs`). Once handshake records are fed (a ClientHello, a
//!   client's Finished), the connection's boxed `ServerConnection` is sent to this pool
//!   of `--tls-threads` threads, which runs `process_new_packets` (the key exchange, the
//!   certificate's signature, the key schedule) and sends it back through the shard's
//!   completion channel and `mio::Waker`, as the workers do. While it is away the
//!   connection reads nothing: its input waits in the kernel. The pool is not the worker
//!   pool: a flood of handshakes cannot fill the workers' queue, so logins and static
//!   files keep their own queue.
//! - **At most `STEPS_PER_THREAD` × `--tls-threads` steps are in flight** (queued or
//!   running) per process, that bound split evenly over the shards (each gets at least
//!   one). A step that finds its shard's slots taken waits in the shard's queue
//!   (`Handshakes::park`); its connection keeps the one read rustls was given and
//!   reads nothing more. While any step waits, the shard accepts no new connection
//!   (`Accepting::Throttled` in `shard.rs`), and that is what holds a flood back: an
//!   accepted connection costs a slab slot, a rustls state and buffers, a connection in
//!   the listen backlog costs this process nothing, and past the backlog the kernel
//!   refuses connections by itself. Deferring reads alone would not bound anything: the
//!   loop would go on accepting. A handshake already under way (its ClientHello was
//!   answered) goes before the new ones: finishing it is cheap, and its client has
//!   already cost a signature.
//! - **What a flood costs the loop**: per ClientHello an accept, a couple of reads, a
//!   channel round trip and one write (microseconds, as plain TCP costs); the crypto
//!   costs at most `--tls-threads` cores, and those threads run at a lower priority
//!   (`HANDSHAKE_NICE`), so on a busy host the loops' ticks go first. A client that
//!   closes right after its ClientHello costs no crypto at all. Plain TCP servers have no
//!   pool and pay nothing.
//!
//! A handshake that never finishes is closed by the head timeout like a stalled request
//! (the shard's sweep), whether it waits for the client, a slot or the pool; a step that
//! comes back for a connection closed meanwhile is dropped, and its slot freed.
//!
//! The loop sees one type, [`Handshakes`], its shard's share: it offers a connection's
//! due step ([`Handshakes::offer`]), takes the steps back ([`Handshakes::next_finished`])
//! and starts the parked ones as slots free up ([`Handshakes::start_parked`]); [`Pool`]
//! starts the threads and hands out the shares. Both exist without the `tls` feature
//! too, as stand-ins (`handshakes/off.rs`): `Handshakes` then has no values, so the
//! loop's TLS paths compile to nothing and it needs no `cfg` of its own.

// The pool, or without TLS its stand-in: the one switch between the two builds.
#[cfg(feature = "tls")]
mod pool;
#[cfg(not(feature = "tls"))]
#[path = "handshakes/off.rs"]
mod pool;

pub(crate) use pool::{Handshakes, Pool};

/// What became of a connection's handshake step offered to its shard's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(feature = "tls"),
    allow(dead_code, reason = "without TLS no connection has a step to offer")
)]
pub(crate) enum Offer {
    /// The connection has no step due (not TLS, or nothing new for the handshake).
    Nothing,
    /// The step went to the pool: the connection is away until it is back.
    Sent,
    /// No free slot: the step waits in the shard's queue, and the shard accepts no new
    /// connection until none waits.
    Parked,
    /// The pool is gone (shutting down): close the connection.
    Refused,
}

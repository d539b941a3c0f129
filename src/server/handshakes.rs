//! TLS handshakes off the event loops: the handshake pool, and each shard's bounded share
//! of it.
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
//! - **At most [`STEPS_PER_THREAD`] × `--tls-threads` steps are in flight** (queued or
//!   running) per process, that bound split evenly over the shards (each gets at least
//!   one). A step that finds its shard's slots taken waits in the shard's queue
//!   ([`Handshakes::park`]); its connection keeps the one read rustls was given and
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
//!   ([`HANDSHAKE_NICE`]), so on a busy host the loops' ticks go first. A client that
//!   closes right after its ClientHello costs no crypto at all. Plain TCP servers have no
//!   pool and pay nothing.
//!
//! A handshake that never finishes is closed by the head timeout like a stalled request
//! (the shard's sweep), whether it waits for the client, a slot or the pool; a step that
//! comes back for a connection closed meanwhile is dropped, and its slot freed.

use std::collections::VecDeque;

use crossbeam_channel::Receiver;
use rustls::ServerConnection;

use crate::workers::{Completion, ConnKey, Job, JobSender, ReplyTo};

/// Steps in flight per handshake thread: enough that a thread always finds a step queued
/// while the loop is busy elsewhere (a fan-out to 1,000 TLS subscribers takes a few ms,
/// a step 0.2 ms with ECDSA: with 4, a reconnect storm of 1,000 TLS clients took 5 to
/// 9 s instead of 1 to 3, the thread idling between the loop's turns), few enough that
/// a flood waits in the kernel, not here (64 RSA steps are about 90 ms of work).
pub(crate) const STEPS_PER_THREAD: usize = 64;

/// The handshake threads' nice value: above the loops' 0, so that on a host with no idle
/// core the scheduler runs the loops (ticks, writes) before the signatures.
pub(crate) const HANDSHAKE_NICE: i32 = 10;

/// A step the pool ran: the connection's rustls state and what processing said.
#[derive(Debug)]
pub(crate) struct Stepped {
    pub(crate) conn: Box<ServerConnection>,
    pub(crate) result: Result<(), rustls::Error>,
}

/// The pool's work for one step: all of the handshake's crypto runs in here.
fn run_step(mut conn: Box<ServerConnection>) -> Stepped {
    let result = conn.process_new_packets().map(drop);
    Stepped { conn, result }
}

/// Lowers the calling thread's priority (Linux: the nice value is per thread). Best
/// effort: a host that refuses keeps the default.
pub(crate) fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take no pointers; this only changes this thread's
    // nice value.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, HANDSHAKE_NICE) != 0 {
            crate::debug!(
                "handshake thread priority unchanged",
                error = std::io::Error::last_os_error()
            );
        }
    }
}

/// One shard's share of the handshake pool.
pub(crate) struct Handshakes {
    shard: usize,
    jobs: JobSender<Stepped>,
    done: Receiver<Completion<Stepped>>,
    in_flight: usize,
    limit: usize,
    /// Connections whose step waits for a slot, in order: (slab key, serial).
    parked: VecDeque<(usize, u64)>,
}

impl Handshakes {
    pub(crate) fn new(
        shard: usize,
        jobs: JobSender<Stepped>,
        done: Receiver<Completion<Stepped>>,
        limit: usize,
    ) -> Handshakes {
        Handshakes { shard, jobs, done, in_flight: 0, limit: limit.max(1), parked: VecDeque::new() }
    }

    /// Whether a step may go now: a slot is free and nobody waits for it, or the step
    /// finishes a handshake (those go first).
    pub(crate) fn may_start(&self, under_way: bool) -> bool {
        self.in_flight < self.limit && (under_way || self.parked.is_empty())
    }

    /// Sends a step to the pool; `false` if the pool is gone (shutting down).
    pub(crate) fn start(&mut self, conn: ConnKey, serial: u64, tls: Box<ServerConnection>) -> bool {
        let reply = ReplyTo { shard: self.shard, conn, serial };
        // Never full: the queue holds every shard's slots (see `queue_capacity`).
        if self.jobs.try_send(Job::new(reply, move || run_step(tls))).is_err() {
            return false;
        }
        self.in_flight += 1;
        true
    }

    /// The step waits for a slot: behind the others, or before them if it finishes a
    /// handshake.
    pub(crate) fn park(&mut self, conn: ConnKey, serial: u64, under_way: bool) {
        if under_way {
            self.parked.push_front((conn.0, serial));
        } else {
            self.parked.push_back((conn.0, serial));
        }
    }

    /// A step the pool finished (its slot is free again).
    pub(crate) fn finished(&mut self) -> Option<Completion<Stepped>> {
        let done = self.done.try_recv().ok()?;
        self.in_flight -= 1;
        Some(done)
    }

    /// The first parked connection, if a slot is free for it. It may have closed
    /// meanwhile: the caller checks its serial.
    pub(crate) fn next_parked(&mut self) -> Option<(ConnKey, u64)> {
        if self.in_flight >= self.limit {
            return None;
        }
        self.parked.pop_front().map(|(key, serial)| (ConnKey(key), serial))
    }

    /// Whether any connection waits for a slot (the shard then accepts nothing).
    pub(crate) fn anyone_parked(&self) -> bool {
        !self.parked.is_empty()
    }
}

/// The per-shard slots for `threads` handshake threads over `shards` loops: the
/// process's bound, split evenly, at least one each.
pub(crate) fn slots_per_shard(threads: usize, shards: usize) -> usize {
    (STEPS_PER_THREAD * threads).div_ceil(shards.max(1)).max(1)
}

/// The pool's queue: room for every shard's slots, so a shard within its slots never
/// finds it full.
pub(crate) fn queue_capacity(threads: usize, shards: usize) -> usize {
    slots_per_shard(threads, shards) * shards.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_a_number_of_steps_per_thread_split_over_the_loops() {
        assert_eq!(slots_per_shard(1, 1), STEPS_PER_THREAD);
        assert_eq!(slots_per_shard(2, 1), 2 * STEPS_PER_THREAD);
        assert_eq!(slots_per_shard(1, 2), STEPS_PER_THREAD / 2);
        assert_eq!(slots_per_shard(1, 1000), 1, "every loop gets a slot");
        assert_eq!(queue_capacity(1, 1000), 1000);
        assert_eq!(queue_capacity(2, 3), 3 * (2 * STEPS_PER_THREAD).div_ceil(3));
    }

    #[test]
    fn parked_steps_wait_in_order_and_handshakes_under_way_go_first() {
        let (jobs, _queue) = crate::workers::job_queue(8);
        let (_done_tx, done) = crossbeam_channel::unbounded();
        let mut hs = Handshakes::new(0, jobs, done, 1);
        assert!(hs.may_start(false));
        hs.park(ConnKey(1), 10, false);
        hs.park(ConnKey(2), 20, false);
        assert!(!hs.may_start(false), "new handshakes queue behind the parked ones");
        assert!(hs.may_start(true), "one under way takes a free slot");
        hs.park(ConnKey(3), 30, true);
        assert!(hs.anyone_parked());
        assert_eq!(hs.next_parked(), Some((ConnKey(3), 30)));
        assert_eq!(hs.next_parked(), Some((ConnKey(1), 10)));
        assert_eq!(hs.next_parked(), Some((ConnKey(2), 20)));
        assert_eq!(hs.next_parked(), None);
        assert!(!hs.anyone_parked());
    }
}

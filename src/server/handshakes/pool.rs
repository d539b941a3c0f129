//! The handshake pool and one shard's share of it (the rules are in `handshakes.rs`).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use crossbeam_channel::{Receiver, unbounded};
use mio::Waker;
use rustls::ServerConnection;
use slab::Slab;

use super::Offer;
use crate::config::Config;
use crate::server::conn::Conn;
use crate::server::transport::Transport;
use crate::server::transport::tls_stream::HandshakeStep;
use crate::workers::{self, Completion, ConnKey, Job, JobSender, Mailbox, ReplyTo};

/// Steps in flight per handshake thread: enough that a thread always finds a step queued
/// while the loop is busy elsewhere (a fan-out to 1,000 TLS subscribers takes a few ms,
/// a step 0.2 ms with ECDSA: with 4, a reconnect storm of 1,000 TLS clients took 5 to
/// 9 s instead of 1 to 3, the thread idling between the loop's turns), few enough that
/// a flood waits in the kernel, not here (64 RSA steps are about 90 ms of work).
const STEPS_PER_THREAD: usize = 64;

/// The handshake threads' nice value: above the loops' 0, so that on a host with no idle
/// core the scheduler runs the loops (ticks, writes) before the signatures.
const HANDSHAKE_NICE: i32 = 10;

/// A step the pool ran: the connection's rustls state and what processing said.
#[derive(Debug)]
struct Stepped {
    conn: Box<ServerConnection>,
    result: Result<(), rustls::Error>,
}

/// The pool's work for one step: all of the handshake's crypto runs in here.
fn run_step(mut conn: Box<ServerConnection>) -> Stepped {
    let result = conn.process_new_packets().map(drop);
    Stepped { conn, result }
}

/// Lowers the calling thread's priority (Linux: the nice value is per thread). Best
/// effort: a host that refuses keeps the default.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take no pointers; this only changes this thread's
    // nice value.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, HANDSHAKE_NICE) != 0 {
            crate::debug!(
                "handshake thread priority unchanged",
                error = io::Error::last_os_error()
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
    parked: VecDeque<(ConnKey, u64)>,
}

impl Handshakes {
    fn new(
        shard: usize,
        jobs: JobSender<Stepped>,
        done: Receiver<Completion<Stepped>>,
        limit: usize,
    ) -> Handshakes {
        Handshakes { shard, jobs, done, in_flight: 0, limit: limit.max(1), parked: VecDeque::new() }
    }

    /// A connection's handshake step, if one is due (it fed handshake records): sent to
    /// the pool, or without a free slot parked in the queue. Does nothing for any other
    /// connection.
    pub(crate) fn offer(&mut self, key: ConnKey, serial: u64, socket: &mut Transport) -> Offer {
        let Transport::Tls(tls) = socket else { return Offer::Nothing };
        let HandshakeStep::Due { under_way } = tls.handshake_step() else { return Offer::Nothing };
        if !self.may_start(under_way) {
            tls.park();
            self.park(key, serial, under_way);
            return Offer::Parked;
        }
        if tls.take_step().is_some_and(|step| self.start(key, serial, step)) {
            Offer::Sent
        } else {
            Offer::Refused
        }
    }

    /// The next step back from the pool (its slot is free again), given back to its
    /// connection's stream: the connection's key, and `Err` if the step ended the
    /// handshake in error (its alert is sent: close the connection). A step whose
    /// connection closed meanwhile is dropped.
    pub(crate) fn next_finished(
        &mut self,
        conns: &mut Slab<Conn>,
    ) -> Option<(ConnKey, io::Result<()>)> {
        loop {
            let done = self.finished()?;
            let key = done.reply.conn;
            let Some(conn) = conns.get_mut(key.0) else { continue };
            // The slot may hold a newer connection than the one whose step this is.
            if conn.serial != done.reply.serial {
                continue;
            }
            let Transport::Tls(tls) = &mut conn.socket else { continue };
            return Some((key, tls.step_done(done.value.conn, done.value.result)));
        }
    }

    /// The free slots go to the parked steps, in order; a connection whose step the pool
    /// refused (it is gone) is listed in `dead`, to be closed.
    pub(crate) fn start_parked(&mut self, conns: &mut Slab<Conn>, dead: &mut Vec<ConnKey>) {
        while let Some((key, serial)) = self.next_parked() {
            let Some(conn) = conns.get_mut(key.0) else { continue };
            let Transport::Tls(tls) = &mut conn.socket else { continue };
            if conn.serial != serial || tls.handshake_step() != HandshakeStep::Parked {
                continue;
            }
            let started = tls.take_step().is_some_and(|step| self.start(key, serial, step));
            if !started {
                dead.push(key);
            }
        }
    }

    /// Whether a step may go now: a slot is free and nobody waits for it, or the step
    /// finishes a handshake (those go first).
    fn may_start(&self, under_way: bool) -> bool {
        self.in_flight < self.limit && (under_way || self.parked.is_empty())
    }

    /// Sends a step to the pool; `false` if the pool is gone (shutting down).
    fn start(&mut self, conn: ConnKey, serial: u64, tls: Box<ServerConnection>) -> bool {
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
    fn park(&mut self, conn: ConnKey, serial: u64, under_way: bool) {
        if under_way {
            self.parked.push_front((conn, serial));
        } else {
            self.parked.push_back((conn, serial));
        }
    }

    /// A step the pool finished (its slot is free again).
    fn finished(&mut self) -> Option<Completion<Stepped>> {
        let done = self.done.try_recv().ok()?;
        self.in_flight -= 1;
        Some(done)
    }

    /// The first parked connection, if a slot is free for it. It may have closed
    /// meanwhile: the caller checks its serial.
    fn next_parked(&mut self) -> Option<(ConnKey, u64)> {
        if self.in_flight >= self.limit {
            return None;
        }
        self.parked.pop_front()
    }

    /// Whether any connection waits for a slot (the shard then accepts nothing).
    pub(crate) fn anyone_parked(&self) -> bool {
        !self.parked.is_empty()
    }
}

/// The per-shard slots for `threads` handshake threads over `shards` loops: the
/// process's bound, split evenly, at least one each.
fn slots_per_shard(threads: usize, shards: usize) -> usize {
    (STEPS_PER_THREAD * threads).div_ceil(shards.max(1)).max(1)
}

/// The pool's queue: room for every shard's slots, so a shard within its slots never
/// finds it full.
fn queue_capacity(threads: usize, shards: usize) -> usize {
    slots_per_shard(threads, shards) * shards.max(1)
}

/// The handshake pool's start-up: one completion channel per shard, each woken through
/// its shard's waker; threads and shares only when the port speaks TLS.
pub(crate) struct Pool {
    threads: usize,
    shards: usize,
    on: bool,
    mailboxes: Vec<Mailbox<Stepped>>,
    receivers: Vec<Receiver<Completion<Stepped>>>,
}

impl Pool {
    /// On when the port speaks TLS, as start-up decides it: `--tls-cert` and
    /// `--tls-key` given (and loaded before the pool is made); then `--tls-threads`
    /// threads.
    pub(crate) fn new(config: &Config) -> Pool {
        Pool {
            threads: config.tls_threads,
            shards: config.io_threads,
            on: config.tls_cert.is_some() && config.tls_key.is_some(),
            mailboxes: Vec::new(),
            receivers: Vec::new(),
        }
    }

    pub(crate) fn add_shard(&mut self, waker: &Arc<Waker>) {
        if self.on {
            let (done_tx, done_rx) = unbounded();
            self.mailboxes.push(Mailbox { completions: done_tx, waker: waker.clone() });
            self.receivers.push(done_rx);
        }
    }

    /// Starts the threads (at a lower priority); returns each shard's share (none
    /// without TLS).
    pub(crate) fn start(self) -> io::Result<Vec<Option<Handshakes>>> {
        if !self.on {
            return Ok((0..self.shards).map(|_| None).collect());
        }
        let slots = slots_per_shard(self.threads, self.shards);
        let capacity = queue_capacity(self.threads, self.shards);
        let (jobs, queue) = workers::job_queue(capacity);
        let (threads, mailboxes) = (self.threads, self.mailboxes);
        workers::start_with("tls", threads, queue, mailboxes, lower_priority)?;
        let shares = self.receivers.into_iter().enumerate();
        Ok(shares.map(|(id, done)| Some(Handshakes::new(id, jobs.clone(), done, slots))).collect())
    }
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

    /// A TLS connection whose ClientHello was read has a step due: with a free slot it
    /// goes to the pool, without one it waits in the queue (and the shard then accepts
    /// nothing). A plain connection has nothing to offer.
    #[test]
    fn a_due_step_goes_to_the_pool_if_a_slot_is_free_and_waits_if_not() {
        use std::io::{Read, Write};
        use std::time::Duration;

        use crate::server::transport::tls_stream::tests::{accept, fixture};

        let (tls, client_config, listener) = fixture();
        let addr = listener.local_addr().unwrap();
        let (jobs, _queue) = crate::workers::job_queue(8);
        let (_done_tx, done) = crossbeam_channel::unbounded();
        let mut hs = Handshakes::new(0, jobs, done, 1);
        let (mut servers, mut clients, mut offers) = (Vec::new(), Vec::new(), Vec::new());
        for serial in 1..=2u64 {
            let config = client_config.clone();
            // A client that sends its ClientHello, then waits for the server to close.
            clients.push(std::thread::spawn(move || {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let mut conn = rustls::ClientConnection::new(config, name).unwrap();
                let mut tcp = std::net::TcpStream::connect(addr).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                while conn.wants_write() {
                    conn.write_tls(&mut tcp).unwrap();
                }
                tcp.flush().unwrap();
                let _ = tcp.read(&mut [0u8; 1]);
            }));
            let mut server = accept(&tls, &listener);
            let offer = loop {
                match server.read(&mut [0u8; 64]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        match hs.offer(ConnKey(serial as usize), serial, &mut server) {
                            Offer::Nothing => std::thread::sleep(Duration::from_millis(1)),
                            offer => break offer,
                        }
                    }
                    other => panic!("before the ClientHello's step: {other:?}"),
                }
            };
            offers.push(offer);
            servers.push(server);
        }
        assert_eq!(offers, [Offer::Sent, Offer::Parked]);
        assert!(hs.anyone_parked(), "the second step waits for the first one's slot");

        let peer = std::net::TcpStream::connect(addr).unwrap();
        let (tcp, _) = listener.accept().unwrap();
        let mut plain = Transport::Plain(mio::net::TcpStream::from_std(tcp));
        assert_eq!(hs.offer(ConnKey(3), 3, &mut plain), Offer::Nothing);

        drop((servers, plain, peer));
        for client in clients {
            client.join().unwrap();
        }
    }
}

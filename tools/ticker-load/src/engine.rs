//! One load-generating thread: a mio event loop over a slab of connections.
//!
//! The loop, each turn: open the connections whose ramp time has come, time out slow
//! handshakes, follow the run's phases (ramp → warmup → steady window → closing), send
//! the per-second sample, then poll and hand each event to its connection. Only this
//! file and [`crate::conn`] touch mio.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use slab::Slab;

use crate::conn::{self, Conn, End, State};
use crate::handshake;
use crate::meter::Meter;
use crate::sock;
use crate::stats::{Reason, Sample, ThreadResult};
use crate::system;

/// How long closing handshakes may take at the end of the run.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Connect and handshake timeouts are checked this often.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// The longest poll wait, so phase changes are seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// Connects started per loop turn at most, so a fast ramp does not starve reads.
const MAX_CONNECTS_PER_TURN: usize = 256;

/// What every thread needs to know about the run; the same for all threads.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) remote: SocketAddr,
    pub(crate) host_header: String,
    /// Request target, with the `x-auth-token` query when the token goes there.
    pub(crate) path: String,
    /// `Authorization` header value, if any.
    pub(crate) authorization: Option<String>,
    pub(crate) connections: usize,
    pub(crate) ramp_per_sec: f64,
    pub(crate) connect_timeout: Duration,
    pub(crate) threads: usize,
    pub(crate) bind: Vec<IpAddr>,
}

impl Plan {
    /// When connection `i` (global index) starts, counted from the run's start.
    fn start_offset(&self, i: usize) -> Duration {
        Duration::from_secs_f64(i as f64 / self.ramp_per_sec)
    }
}

/// State shared by the coordinator and the threads; everything is lock-free.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) t0: Instant,
    ramp_done: AtomicUsize,
    /// Steady window as µs offsets from `t0`; `u64::MAX` until the coordinator sets it.
    window_start: AtomicU64,
    window_end: AtomicU64,
    stop: AtomicBool,
    opened: AtomicU64,
}

impl Shared {
    pub(crate) fn new(t0: Instant) -> Shared {
        Shared {
            t0,
            ramp_done: AtomicUsize::new(0),
            window_start: AtomicU64::new(u64::MAX),
            window_end: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
            opened: AtomicU64::new(0),
        }
    }

    /// How many threads have every connection of theirs opened or failed.
    pub(crate) fn ramp_done(&self) -> usize {
        self.ramp_done.load(Ordering::Acquire)
    }

    pub(crate) fn set_window(&self, start: Instant, end: Instant) {
        let us = |t: Instant| t.saturating_duration_since(self.t0).as_micros() as u64;
        // End first, so a thread that sees the start also sees the end.
        self.window_end.store(us(end), Ordering::Release);
        self.window_start.store(us(start), Ordering::Release);
    }

    pub(crate) fn window(&self) -> Option<(Instant, Instant)> {
        let start = self.window_start.load(Ordering::Acquire);
        if start == u64::MAX {
            return None;
        }
        let end = self.window_end.load(Ordering::Acquire);
        Some((self.t0 + Duration::from_micros(start), self.t0 + Duration::from_micros(end)))
    }

    /// Connections opened so far, by all threads.
    pub(crate) fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Ends the run now (Ctrl-C, or nothing opened): threads close their connections.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// A per-thread random source for handshake keys and mask seeds. They need to be
/// unpredictable to intermediaries only, so xorshift seeded from the OS is enough.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = getrandom::u64()
            .unwrap_or_else(|_| conn::unix_micros() ^ u64::from(std::process::id()));
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next().to_ne_bytes());
        out[8..].copy_from_slice(&self.next().to_ne_bytes());
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Opening connections, then waiting for the coordinator's window.
    Ramp,
    Steady {
        cpu_at_start: Duration,
        since: Instant,
    },
    Closing {
        deadline: Instant,
    },
}

/// Runs thread `thread` of the plan until its connections are closed.
pub(crate) fn run(
    plan: &Plan,
    shared: &Shared,
    thread: usize,
    samples: &Sender<Sample>,
) -> io::Result<ThreadResult> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::with_capacity(plan.connections / plan.threads + 1);
    let mut buf = vec![0u8; conn::READ_BUF];
    let mut meter = Meter::default();
    let mut rng = Rng::new();
    let mut result = ThreadResult::default();

    let mut next_conn = thread; // global index of our next connection
    let mut in_flight = 0usize; // connecting or handshaking
    let mut open = 0u64;
    let mut ramp_reported = false;
    let mut phase = Phase::Ramp;
    let mut next_sweep = shared.t0 + SWEEP_EVERY;
    let mut next_second = 1u64;

    loop {
        let now = Instant::now();

        // Ramp: start every connection whose time has come.
        let mut started = 0;
        while next_conn < plan.connections
            && matches!(phase, Phase::Ramp)
            && shared.t0 + plan.start_offset(next_conn) <= now
            && started < MAX_CONNECTS_PER_TURN
        {
            let local = (!plan.bind.is_empty()).then(|| plan.bind[next_conn % plan.bind.len()]);
            meter.counters.attempted += 1;
            match start_conn(plan, local, &mut rng, now) {
                Ok(mut c) => {
                    let entry = conns.vacant_entry();
                    match c.register(poll.registry(), Token(entry.key())) {
                        Ok(()) => {
                            entry.insert(c);
                            in_flight += 1;
                        }
                        Err(e) => count_end(&mut meter, End::Failed(Reason::from_io(&e))),
                    }
                }
                Err(e) => count_end(&mut meter, End::Failed(Reason::from_io(&e))),
            }
            next_conn += plan.threads;
            started += 1;
        }

        // Connect + handshake timeouts.
        if now >= next_sweep {
            next_sweep = now + SWEEP_EVERY;
            let late: Vec<usize> = conns
                .iter()
                .filter(|(_, c)| {
                    matches!(c.state(), State::Connecting | State::Handshaking)
                        && now.duration_since(c.started()) >= plan.connect_timeout
                })
                .map(|(k, _)| k)
                .collect();
            for key in late {
                conns.remove(key);
                in_flight -= 1;
                count_end(&mut meter, End::Failed(Reason::Timeout));
            }
        }

        // Phases.
        if !ramp_reported && next_conn >= plan.connections && in_flight == 0 {
            ramp_reported = true;
            shared.ramp_done.fetch_add(1, Ordering::AcqRel);
        }
        let window = shared.window();
        let stop = shared.stopped();
        match phase {
            Phase::Ramp => {
                if let Some((start, end)) = window
                    && now >= start
                    && now < end
                    && !stop
                {
                    phase = Phase::Steady { cpu_at_start: system::thread_cpu(), since: now };
                    meter.steady = true;
                } else if stop || window.is_some_and(|(_, end)| now >= end) {
                    phase = begin_closing(
                        &mut conns,
                        &poll,
                        &mut meter,
                        &mut in_flight,
                        &mut open,
                        now,
                    );
                }
            }
            Phase::Steady { cpu_at_start, since } => {
                if stop || window.is_some_and(|(_, end)| now >= end) {
                    meter.steady = false;
                    result.steady_cpu = system::thread_cpu().saturating_sub(cpu_at_start);
                    result.steady_wall = now.duration_since(since);
                    phase = begin_closing(
                        &mut conns,
                        &poll,
                        &mut meter,
                        &mut in_flight,
                        &mut open,
                        now,
                    );
                }
            }
            Phase::Closing { deadline } => {
                if conns.is_empty() || now >= deadline {
                    break;
                }
            }
        }

        // One sample per second of the run for the live line and the report.
        if now >= shared.t0 + Duration::from_secs(next_second) {
            let _ = samples.send(meter.take_sample(next_second - 1, open));
            next_second = now.duration_since(shared.t0).as_secs() + 1;
        }

        // Wait for I/O, or for the next thing due.
        let mut due = now + MAX_WAIT;
        if next_conn < plan.connections && matches!(phase, Phase::Ramp) {
            due = due.min(shared.t0 + plan.start_offset(next_conn));
        }
        if in_flight > 0 {
            due = due.min(next_sweep);
        }
        if let Phase::Closing { deadline } = phase {
            due = due.min(deadline);
        }
        match poll.poll(&mut events, Some(due.saturating_duration_since(now))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }

        for event in events.iter() {
            let key = event.token().0;
            let peer_closed = event.is_read_closed() || event.is_error();
            let Some(c) = conns.get_mut(key) else {
                continue; // removed earlier in this batch
            };
            let was_in_flight = matches!(c.state(), State::Connecting | State::Handshaking);
            let outcome =
                c.on_ready(poll.registry(), event.token(), &mut buf, &mut meter, peer_closed);
            let is_open = c.state() == State::Open;
            if was_in_flight && is_open {
                in_flight -= 1;
                open += 1;
                shared.opened.fetch_add(1, Ordering::Relaxed);
            }
            if let Err(end) = outcome {
                // The state is the one the connection ended in.
                match conns.remove(key).state() {
                    State::Connecting | State::Handshaking => in_flight -= 1,
                    State::Open => open -= 1,
                    State::Closing => {}
                }
                count_end(&mut meter, end);
            }
        }
    }

    let _ = samples.send(meter.take_sample(next_second - 1, 0));
    result.counters = meter.counters;
    result.handshake = meter.handshake;
    result.steady_latency = meter.steady_latency;
    Ok(result)
}

fn start_conn(plan: &Plan, local: Option<IpAddr>, rng: &mut Rng, now: Instant) -> io::Result<Conn> {
    let stream = sock::connect(plan.remote, local)?;
    let request = |out: &mut Vec<u8>, key: &str| {
        handshake::write_request(
            out,
            &plan.host_header,
            &plan.path,
            plan.authorization.as_deref(),
            key,
        );
    };
    Ok(Conn::new(stream, now, request, rng.bytes16(), rng.next()))
}

/// Sends a close frame on every open connection and drops the ones still opening.
fn begin_closing(
    conns: &mut Slab<Conn>,
    poll: &Poll,
    meter: &mut Meter,
    in_flight: &mut usize,
    open: &mut u64,
    now: Instant,
) -> Phase {
    conns.retain(|key, c| match c.state() {
        State::Open => match c.close(poll.registry(), Token(key)) {
            Ok(()) => true,
            Err(end) => {
                count_end(meter, end);
                false
            }
        },
        State::Connecting | State::Handshaking => false,
        State::Closing => true,
    });
    *in_flight = 0;
    *open = 0;
    Phase::Closing { deadline: now + CLOSE_GRACE }
}

fn count_end(meter: &mut Meter, end: End) {
    let c = &mut meter.counters;
    match end {
        End::Failed(reason) => *c.failed.entry(reason).or_default() += 1,
        End::Dropped(reason) => *c.dropped.entry(reason).or_default() += 1,
        End::Closed => c.closed_clean += 1,
    }
}

//! One load-generating thread: a mio event loop over a pool of connections.
//!
//! The loop, each turn: open the connections whose ramp time has come, time out slow
//! handshakes, follow the run's phases (ramp → warmup → steady window → closing), churn
//! connections in the window (`--churn`), send the per-second sample, then poll and hand
//! each event to its connection. Only this file, [`pool`], [`crate::conn`] (with its
//! transport, plain or TLS) and [`crate::sock`] touch mio.
//!
//! The decisions are pure and live apart, each with its tests: [`ramp`] (which
//! connection is due when), [`phase`] (what the window and the stop flag mean now),
//! [`churn`] (when the next churn is due), [`timers`] (the sweep, the per-second clock,
//! the wake-up time). [`Engine`] holds the thread's state and carries those decisions out.

mod churn;
mod phase;
mod pool;
mod ramp;
mod rng;
mod shared;
mod timers;

use std::io;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll};

use crate::conn::{self, Conn, End, Origin, Transport, Upgrade, Wire};
use crate::endpoint::{Endpoint, round_robin};
use crate::handshake;
use crate::meter::Meter;
use crate::stats::{Reason, Sample, ThreadResult};
use crate::subscribe::{self, ConnSub, Subscription};
use crate::system;

use churn::ChurnClock;
use phase::{Phase, Step};
use pool::{Limits, Pool};
use ramp::Ramp;
use rng::Rng;
pub(crate) use shared::Shared;
use timers::{Every, Seconds};

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
    /// One per `--url`, never empty; connection `i` goes to `endpoints[i % n]`.
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) connections: usize,
    pub(crate) ramp_per_sec: f64,
    pub(crate) connect_timeout: Duration,
    pub(crate) threads: usize,
    pub(crate) bind: Vec<IpAddr>,
    /// `--churn`: connections closed and reopened per second in the steady window.
    pub(crate) churn_per_sec: Option<f64>,
    /// `--token-per-connection`: ramp connections get a fresh token first, as churn
    /// reconnects always do.
    pub(crate) token_per_connection: bool,
    /// `--subscribe` or `--subscribe-random`; connection `i` takes set `i % n`.
    pub(crate) subscription: Subscription,
    /// `--deflate` and `--delta`, the same for every connection.
    pub(crate) wire: Wire,
}

impl Plan {
    /// The server connection `i` (global index) goes to.
    fn endpoint(&self, i: usize) -> &Endpoint {
        // `run::run` builds the plan from `Args::targets`, which parsing keeps non-empty.
        round_robin(&self.endpoints, i).expect("a plan has at least one endpoint")
    }

    /// The source address of connection `i`, if `--bind` gave any.
    fn source(&self, i: usize) -> Option<IpAddr> {
        round_robin(&self.bind, i).copied()
    }

    /// Connection `i`'s subscription: its `--subscribe` set (`set` when it replaces a
    /// churned connection: the same set again, else set `i % n`), or its random pick.
    fn subscription(&self, i: usize, set: Option<u32>) -> ConnSub {
        match &self.subscription {
            Subscription::All => ConnSub::AtUpgrade(None),
            Subscription::Sets(sets) => {
                ConnSub::AtUpgrade(Some(set.unwrap_or((i % sets.len()) as u32)))
            }
            Subscription::Random { k, seed } => ConnSub::random(*k, subscribe::conn_seed(*seed, i)),
        }
    }

    /// `path` with the `?symbols=` of the set `sub` asks for at the upgrade, if any,
    /// and `delta=1` with `--delta`.
    fn request_path(&self, path: &str, sub: &ConnSub) -> String {
        let path = match (&self.subscription, sub.slot()) {
            (Subscription::Sets(sets), Some(set)) => match sets.get(set as usize) {
                Some(set) => subscribe::with_symbols(path, set),
                None => path.to_string(),
            },
            _ => path.to_string(),
        };
        if self.wire.delta { subscribe::with_param(&path, "delta=1") } else { path }
    }
}

/// Runs thread `thread` of the plan until its connections are closed.
pub(crate) fn run(
    plan: &Plan,
    shared: &Shared,
    thread: usize,
    samples: &Sender<Sample>,
) -> io::Result<ThreadResult> {
    let mut events = Events::with_capacity(1024);
    let mut engine = Engine::new(plan, shared, thread)?;
    loop {
        let now = Instant::now();
        engine.open_due(now);
        engine.time_out_handshakes(now);
        engine.report_ramp_done();
        if engine.follow_phase(now).is_break() {
            break;
        }
        engine.churn_due(now);
        engine.send_sample(samples, now);

        let wait = engine.wake_at(now).saturating_duration_since(now);
        match engine.poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            engine.dispatch(event);
        }
    }
    Ok(engine.finish(samples))
}

/// One thread's loop state.
struct Engine<'a> {
    plan: &'a Plan,
    shared: &'a Shared,
    thread: usize,
    poll: Poll,
    conns: Pool,
    /// The read buffer all connections share, one at a time.
    buf: Vec<u8>,
    meter: Meter,
    rng: Rng,
    /// Filled in as the run goes (the steady window's CPU and wall time) and at the end.
    result: ThreadResult,
    ramp: Ramp,
    phase: Phase,
    /// Set while the steady window is open, with `--churn`.
    churn: Option<ChurnClock>,
    /// Churn reconnects this thread started: numbers them for the round-robin.
    reconnects: usize,
    sweep: Every,
    seconds: Seconds,
}

impl<'a> Engine<'a> {
    fn new(plan: &'a Plan, shared: &'a Shared, thread: usize) -> io::Result<Engine<'a>> {
        Ok(Engine {
            plan,
            shared,
            thread,
            poll: Poll::new()?,
            conns: Pool::with_capacity(plan.connections / plan.threads + 1),
            buf: vec![0u8; conn::READ_BUF],
            meter: Meter::default(),
            rng: Rng::new(),
            result: ThreadResult::default(),
            ramp: Ramp::new(shared.t0, plan.ramp_per_sec, thread, plan.threads, plan.connections),
            phase: Phase::Ramp,
            churn: None,
            reconnects: 0,
            sweep: Every::new(shared.t0, SWEEP_EVERY),
            seconds: Seconds::new(shared.t0),
        })
    }

    /// Ramp: starts every connection whose time has come, a bounded number per turn.
    fn open_due(&mut self, now: Instant) {
        if self.phase != Phase::Ramp {
            return;
        }
        for _ in 0..MAX_CONNECTS_PER_TURN {
            let Some(i) = self.ramp.take_due(now) else { break };
            self.start(i, Origin::Ramp, None, now);
        }
    }

    /// Starts connection `i` (a global index: it picks the URL, the source address and
    /// the subscription, unless `set` is the `--subscribe` set it takes over).
    fn start(&mut self, i: usize, origin: Origin, set: Option<u32>, now: Instant) {
        self.meter.on_start(origin, now);
        let started = start_conn(self.plan, i, origin, set, &mut self.rng, now)
            .and_then(|c| self.conns.insert(self.poll.registry(), c));
        if let Err(e) = started {
            self.meter.on_end(origin, End::Failed(Reason::from_io(&e)));
        }
    }

    /// `--churn`, in the steady window: closes the next open connection and opens its
    /// replacement at once, for every churn that is due (a bounded number per turn).
    fn churn_due(&mut self, now: Instant) {
        for _ in 0..MAX_CONNECTS_PER_TURN {
            let Some(clock) = self.churn.as_mut() else { return };
            if !clock.take_due(now) {
                return;
            }
            if let Some(churned) = self.conns.churn_one(self.poll.registry(), &mut self.meter, now)
            {
                // Reconnects are numbered after the ramp's connections, threads interleaved
                // as in the ramp, so they too go round-robin over the URLs. A reconnect
                // re-applies the churned connection's --subscribe set.
                let i = self.plan.connections + self.reconnects * self.plan.threads + self.thread;
                self.reconnects += 1;
                self.start(i, Origin::Churn, churned.set, now);
            }
        }
    }

    /// Connect + handshake timeouts, checked every [`SWEEP_EVERY`].
    fn time_out_handshakes(&mut self, now: Instant) {
        if self.sweep.fire(now) {
            let limits = Limits { open: self.plan.connect_timeout, churn_close: CLOSE_GRACE };
            self.conns.drop_late(now, limits, &mut self.meter);
        }
    }

    /// Tells the coordinator, once, that every connection of this thread opened or failed.
    fn report_ramp_done(&mut self) {
        if self.ramp.take_done(self.conns.in_flight()) {
            self.shared.finish_ramp();
        }
    }

    /// Carries out the phase clock's decision; `Break` once closing is over.
    fn follow_phase(&mut self, now: Instant) -> ControlFlow<()> {
        let step = self.phase.step(
            now,
            self.shared.window(),
            self.shared.stopped(),
            self.conns.is_empty(),
        );
        match step {
            Step::Stay => {}
            Step::EnterSteady => {
                self.phase = Phase::Steady { cpu_at_start: system::thread_cpu(), since: now };
                self.meter.steady = true;
                let per_thread = |rate: f64| rate / self.plan.threads as f64;
                self.churn = self.plan.churn_per_sec.map(|r| ChurnClock::new(now, per_thread(r)));
            }
            Step::Close => {
                if let Phase::Steady { cpu_at_start, since } = self.phase {
                    self.meter.steady = false;
                    self.result.steady_cpu = system::thread_cpu().saturating_sub(cpu_at_start);
                    self.result.steady_wall = now.duration_since(since);
                }
                self.churn = None;
                self.conns.close_all(self.poll.registry(), &mut self.meter, now);
                self.phase = Phase::Closing { deadline: now + CLOSE_GRACE };
            }
            Step::Finish => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }

    /// One sample per second of the run, for the live line and the report.
    fn send_sample(&mut self, samples: &Sender<Sample>, now: Instant) {
        if let Some(second) = self.seconds.ended(now) {
            // The coordinator may have stopped listening; the sample is then not needed.
            let _ = samples.send(self.meter.take_sample(second, self.conns.open()));
        }
    }

    /// Wait for I/O, or for the next thing due: a ramp start, a churn, the sweep (only
    /// while something is opening or churn-closing), the closing deadline.
    fn wake_at(&self, now: Instant) -> Instant {
        let ramp = if self.phase == Phase::Ramp { self.ramp.next_at() } else { None };
        let churn = self.churn.as_ref().map(ChurnClock::next_at);
        let sweep = (self.conns.in_flight() > 0 || churn.is_some()).then(|| self.sweep.next());
        timers::earliest(now + MAX_WAIT, [ramp, churn, sweep, self.phase.deadline()])
    }

    fn dispatch(&mut self, event: &Event) {
        let opened =
            self.conns.dispatch(self.poll.registry(), event, &mut self.buf, &mut self.meter);
        if opened == Some(Origin::Ramp) {
            self.shared.count_opened();
        }
    }

    /// The last (partial) second's sample, and everything this thread measured.
    fn finish(mut self, samples: &Sender<Sample>) -> ThreadResult {
        let _ = samples.send(self.meter.take_sample(self.seconds.current(), 0));
        self.result.counters = self.meter.counters;
        self.result.hists = self.meter.hists;
        self.result.first_connect = self.meter.first_connect;
        self.result.last_open = self.meter.last_open;
        self.result
    }
}

/// Starts connection `i`'s TCP connect (with its TLS session for a TLS endpoint), with
/// its upgrade request queued (carrying its `--subscribe` set); or, for a churn reconnect
/// with an API key (or any connection with `--token-per-connection`), its token request,
/// the upgrade to follow. Its handshake time counts from here.
fn start_conn(
    plan: &Plan,
    i: usize,
    origin: Origin,
    set: Option<u32>,
    rng: &mut Rng,
    now: Instant,
) -> io::Result<Conn> {
    let endpoint = plan.endpoint(i);
    let source = plan.source(i);
    let sub = plan.subscription(i, set);
    let transport = Transport::connect(endpoint.remote, source, endpoint.tls.as_ref())?;
    let fresh_token = origin == Origin::Churn || plan.token_per_connection;
    if let (true, Some(reauth)) = (fresh_token, &endpoint.reauth) {
        let to = Upgrade {
            remote: endpoint.remote,
            source,
            tls: endpoint.tls.clone(),
            host_header: endpoint.host_header.clone(),
            // The token is added after the symbols, as on the ramp's connections.
            ws_path: plan.request_path(&reauth.ws_path, &sub),
            token_in_query: reauth.token_in_query,
        };
        let (host, key) = (&endpoint.host_header, &reauth.api_key);
        let (random, mask) = (rng.bytes16(), rng.next());
        return Ok(Conn::token_first(transport, origin, now, host, key, to, random, mask)
            .subscribing(sub)
            .asking(plan.wire));
    }
    let path = plan.request_path(&endpoint.path, &sub);
    let request = |out: &mut Vec<u8>, key: &str| {
        handshake::write_request(
            out,
            &endpoint.host_header,
            &path,
            endpoint.authorization.as_deref(),
            key,
            plan.wire.deflate,
        );
    };
    let conn = Conn::new(transport, now, origin, request, rng.bytes16(), rng.next());
    Ok(conn.subscribing(sub).asking(plan.wire))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(port: u16) -> Endpoint {
        Endpoint {
            remote: ([127, 0, 0, 1], port).into(),
            tls: None,
            host_header: format!("127.0.0.1:{port}"),
            path: "/ws".into(),
            authorization: None,
            reauth: None,
        }
    }

    #[test]
    fn connections_go_round_robin_over_endpoints_and_source_addresses() {
        let plan = Plan {
            endpoints: vec![endpoint(1), endpoint(2)],
            connections: 4,
            ramp_per_sec: 1.0,
            connect_timeout: Duration::from_secs(1),
            threads: 1,
            bind: vec![[127, 0, 0, 2].into(), [127, 0, 0, 3].into(), [127, 0, 0, 4].into()],
            churn_per_sec: None,
            token_per_connection: false,
            subscription: Subscription::All,
            wire: Wire::default(),
        };
        let ports: Vec<u16> = (0..4).map(|i| plan.endpoint(i).remote.port()).collect();
        assert_eq!(ports, [1, 2, 1, 2]);
        assert_eq!(plan.source(3), Some([127, 0, 0, 2].into()));
        assert_eq!(Plan { bind: Vec::new(), ..plan }.source(3), None);
    }

    fn plan_with(subscription: Subscription) -> Plan {
        Plan {
            endpoints: vec![endpoint(1)],
            connections: 4,
            ramp_per_sec: 1.0,
            connect_timeout: Duration::from_secs(1),
            threads: 1,
            bind: Vec::new(),
            churn_per_sec: None,
            token_per_connection: false,
            subscription,
            wire: Wire::default(),
        }
    }

    #[test]
    fn connection_i_takes_subscribe_set_i_mod_n_in_its_upgrade_request() {
        let set = |s| subscribe::SymbolSet::parse(s).unwrap();
        let plan = plan_with(Subscription::Sets(vec![set("A,B"), set("C"), set("D")]));
        let sets: Vec<Option<u32>> = (0..7).map(|i| plan.subscription(i, None).slot()).collect();
        assert_eq!(sets, [Some(0), Some(1), Some(2), Some(0), Some(1), Some(2), Some(0)]);
        assert_eq!(plan.subscription(9, Some(2)).slot(), Some(2), "a reconnect keeps its set");
        let paths: Vec<String> = (0..3)
            .map(|i| plan.request_path("/ws?x-auth-token=t", &plan.subscription(i, None)))
            .collect();
        assert_eq!(
            paths,
            [
                "/ws?x-auth-token=t&symbols=A,B",
                "/ws?x-auth-token=t&symbols=C",
                "/ws?x-auth-token=t&symbols=D"
            ]
        );

        let all = plan_with(Subscription::All);
        assert_eq!(all.subscription(3, None), ConnSub::AtUpgrade(None));
        assert_eq!(all.request_path("/ws", &all.subscription(3, None)), "/ws");
        let random = plan_with(Subscription::Random { k: 2, seed: 9 });
        let sub = random.subscription(3, None);
        assert_eq!(sub, ConnSub::random(2, subscribe::conn_seed(9, 3)));
        assert_eq!(random.request_path("/ws", &sub), "/ws", "a random pick is sent later");
    }

    #[test]
    fn delta_goes_in_the_query_after_everything_else() {
        let set = |s| subscribe::SymbolSet::parse(s).unwrap();
        let delta = Wire { deflate: false, delta: true };
        let plan = Plan { wire: delta, ..plan_with(Subscription::Sets(vec![set("A,B")])) };
        let sub = plan.subscription(0, None);
        assert_eq!(
            plan.request_path("/ws?x-auth-token=t", &sub),
            "/ws?x-auth-token=t&symbols=A,B&delta=1"
        );
        let all = Plan { wire: delta, ..plan_with(Subscription::All) };
        assert_eq!(
            all.request_path("/ws/ticker", &all.subscription(0, None)),
            "/ws/ticker?delta=1"
        );
    }
}

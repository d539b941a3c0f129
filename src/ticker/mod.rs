//! The ticker thread: advances the prices on absolute deadlines and builds each tick's
//! WebSocket frame exactly once; every subscriber is then sent the same bytes.
//!
//! Rules:
//! - Deadlines are `start + n * interval` ([`schedule::TickSchedule`], shared with the
//!   cluster leader), so the rate never drifts. A tick that ends a whole interval or more
//!   past its successor's deadline counts the deadlines it missed in
//!   `ticker_tick_overruns_total` and goes on from the newest one past (seq stays
//!   contiguous: seq counts ticks sent).
//! - The frame (header + JSON) lives in one `Arc<[u8]>`; publishing clones the `Arc`
//!   once per event loop, never per subscriber.
//! - Nobody listening, nothing built: while no WebSocket session is open the thread
//!   sleeps on a [`Doorbell`] that the first new session rings (the seed skips the
//!   broadcast when nobody is subscribed). `seq` counts ticks sent, so it stays
//!   contiguous across the pause; prices resume from where they stopped.
//! - A supervisor restarts the thread if it panics, with backoff; the prices and `seq`
//!   live outside the thread and survive the restart, and the event loops keep their
//!   subscribers (they never notice beyond a pause).

pub mod changes;
pub mod encoded;
pub mod frames;
pub mod prices;
pub mod schedule;
pub mod variants;

pub use frames::Tick;
use variants::{TickBuilder, Wanted};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::metrics::Metrics;
use crate::source::PriceSource;
use crate::symbols::sets::{ActiveCache, SetRegistry};
use schedule::{Next, TickSchedule};

/// Where ticks go: one channel and one waker per event loop.
pub struct Subscriber {
    pub ticks: Sender<Tick>,
    /// The loop's end of the same queue: when the queue is full the ticker takes the
    /// oldest tick out, so a loop that fell behind finds the newest one.
    pub oldest: Receiver<Tick>,
    pub waker: Arc<mio::Waker>,
}

/// Wakes a ticker that sleeps while nobody listens. Ringing is a lock and a notify, done
/// once per new session, never per tick.
#[derive(Debug, Default)]
pub struct Doorbell {
    rung: Mutex<bool>,
    bell: Condvar,
}

impl Doorbell {
    pub fn ring(&self) {
        *self.rung.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.bell.notify_all();
    }

    /// Waits until rung (a ring since the last wait counts) or `timeout`.
    fn wait(&self, timeout: Duration) {
        let rung = self.rung.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut rung, _) = self
            .bell
            .wait_timeout_while(rung, timeout, |rung| !*rung)
            .unwrap_or_else(PoisonError::into_inner);
        *rung = false;
    }
}

/// How long an idle ticker sleeps between looks at the session count (a ring wakes it
/// at once; this only bounds a missed one).
const IDLE_NAP: Duration = Duration::from_secs(5);

/// State that outlives a panicking ticker thread.
struct TickerState {
    source: PriceSource,
    seq: u64,
    /// Whether seq 0 (the start prices) has gone out; every later tick steps first.
    started: bool,
}

/// Handle to the supervised ticker; dropping it does not stop it, [`Ticker::stop`] does.
pub struct Ticker {
    stop: Arc<AtomicBool>,
    bell: Arc<Doorbell>,
    supervisor: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts the supervisor, which starts the ticker thread. The first tick (seq 0, the
    /// start prices) is published at once, so the first subscriber never waits; then
    /// the thread ticks while `metrics.ws_sessions_open` > 0 and otherwise sleeps until
    /// `bell` rings.
    pub fn start(
        source: PriceSource,
        interval: Duration,
        subscribers: Vec<Subscriber>,
        metrics: Arc<Metrics>,
        bell: Arc<Doorbell>,
        sets: Arc<SetRegistry>,
    ) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(TickerState { source, seq: 0, started: false }));
        let ctx = Arc::new(Context {
            interval,
            subscribers,
            metrics,
            stop: stop.clone(),
            bell: bell.clone(),
            sets,
        });
        let supervisor = thread::Builder::new()
            .name("ticker-supervisor".into())
            .spawn(move || supervise(state, ctx))?;
        Ok(Ticker { stop, bell, supervisor: Some(supervisor) })
    }

    /// Stops the ticker and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.bell.ring();
        if let Some(h) = self.supervisor.take() {
            let _ = h.join();
        }
    }
}

/// What the ticker thread works with, shared with its supervisor.
struct Context {
    interval: Duration,
    subscribers: Vec<Subscriber>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    bell: Arc<Doorbell>,
    /// The symbol sets this node's sessions chose: one frame each per tick.
    sets: Arc<SetRegistry>,
}

fn supervise(state: Arc<Mutex<TickerState>>, ctx: Arc<Context>) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let spawned = {
            let (state, ctx) = (state.clone(), ctx.clone());
            thread::Builder::new().name("ticker".into()).spawn(move || run(&state, &ctx))
        };
        let outcome = match spawned {
            Ok(handle) => handle.join(),
            Err(e) => {
                crate::error!("cannot start ticker thread", error = e);
                Err(Box::new(()) as Box<dyn std::any::Any + Send>)
            }
        };
        if outcome.is_ok() || ctx.stop.load(Ordering::Relaxed) {
            return;
        }
        ctx.metrics.ticker_restarts.fetch_add(1, Ordering::Relaxed);
        crate::error!("ticker thread panicked; restarting", backoff_ms = backoff.as_millis());
        thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// The ticker thread's body: one tick per deadline while someone listens, until `stop`.
fn run(state: &Mutex<TickerState>, ctx: &Context) {
    let (interval, metrics) = (ctx.interval, &ctx.metrics);
    let mut active = ActiveCache::default();
    let mut builder = TickBuilder::new(interval);
    let mut schedule = TickSchedule::new(interval, Instant::now());
    crate::info!("ticker started", interval_ms = interval.as_secs_f64() * 1000.0);
    while !ctx.stop.load(Ordering::Relaxed) {
        let started = state.lock().unwrap_or_else(PoisonError::into_inner).started;
        if started && metrics.ws_sessions_open.load(Ordering::Relaxed) <= 0 {
            // Nobody listens: build nothing, wake for the next session (or to stop).
            ctx.bell.wait(IDLE_NAP);
            schedule.restart(Instant::now());
            continue;
        }
        if let Next::Wait(wait) = schedule.next(Instant::now()) {
            thread::sleep(wait);
            continue;
        }
        let tick = {
            // A panic while holding the lock poisons it; the state is still the last
            // complete tick's (step() only writes whole prices), so it is safe to go on.
            let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
            let first = !st.started;
            if st.started {
                st.seq += 1;
            }
            st.started = true;
            fault_hook(st.seq);
            let ts_us = unix_micros(SystemTime::now());
            let seq = st.seq;
            let quotes = st.source.next_quotes(first);
            let wanted = Wanted::from_sessions(metrics);
            let built = builder.build(seq, ts_us, quotes, ctx.sets.active(&mut active), wanted);
            metrics.deflate_skipped.fetch_add(built.deflate_skipped, Ordering::Relaxed);
            built.tick
        };
        metrics.ticks.fetch_add(1, Ordering::Relaxed);
        let pushed_out = publish(&tick, &ctx.subscribers);
        metrics.superseded_ticks.fetch_add(pushed_out, Ordering::Relaxed);

        // Skip the deadlines already past, counting each one.
        let missed = schedule.ticked(Instant::now());
        if missed > 0 {
            metrics.tick_overruns.fetch_add(u64::from(missed), Ordering::Relaxed);
        }
    }
}

/// Hands a tick to every event loop and wakes it; never blocks. Returns how many queued
/// ticks it pushed out of full queues (superseded: see below).
pub(crate) fn publish(tick: &Tick, subscribers: &[Subscriber]) -> u64 {
    let mut pushed_out = 0;
    'loops: for s in subscribers {
        // A full queue means that loop is more than a queue of ticks behind. It keeps
        // only the newest tick anyway, so the oldest queued one makes room for this one
        // (and counts as superseded); dropping this one instead would leave the loop
        // serving an old tick and its subscribers a gap nothing counted. Only this
        // thread sends, so one tick taken out always makes room: two tries at most.
        let mut offer = tick.clone();
        for _ in 0..2 {
            match s.ticks.try_send(offer) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    if s.oldest.try_recv().is_ok() {
                        pushed_out += 1;
                    }
                    offer = back;
                }
                Err(TrySendError::Disconnected(_)) => continue 'loops,
            }
        }
        if let Err(e) = s.waker.wake() {
            crate::warn!("cannot wake event loop", error = e);
        }
    }
    pushed_out
}

/// Microseconds since the Unix epoch (0 for a clock before it).
pub fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

/// Debug builds only: `TICKER_DEBUG_PANIC_AT_SEQ=N` panics the ticker once at tick N, so
/// tests can prove the supervisor restarts it. Compiled out of release builds.
#[cfg(debug_assertions)]
fn fault_hook(seq: u64) {
    static FIRED: AtomicBool = AtomicBool::new(false);
    let at = std::env::var("TICKER_DEBUG_PANIC_AT_SEQ").ok().and_then(|v| v.parse::<u64>().ok());
    if at == Some(seq) && !FIRED.swap(true, Ordering::Relaxed) {
        panic!("injected ticker fault at seq {seq}");
    }
}

#[cfg(not(debug_assertions))]
fn fault_hook(_seq: u64) {}

#[cfg(test)]
mod tests {
    use crossbeam_channel::bounded;

    use super::*;
    use crate::symbols::sets::ActiveSets;

    #[test]
    fn a_loop_behind_by_a_full_queue_finds_the_newest_tick_and_the_rest_counted() {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (ticks, queue) = bounded(2);
        let loops = [Subscriber { ticks, oldest: queue.clone(), waker }];
        let tick = |seq| Tick::build(seq, 0, &[], &ActiveSets::default());
        assert_eq!(publish(&tick(1), &loops), 0);
        assert_eq!(publish(&tick(2), &loops), 0);
        // The loop has not run: the oldest queued tick makes room for each new one.
        assert_eq!(publish(&tick(3), &loops), 1);
        assert_eq!(publish(&tick(4), &loops), 1);
        let queued: Vec<u64> = queue.try_iter().map(|t| t.seq).collect();
        assert_eq!(queued, [3, 4], "the newest ticks, in order; 1 and 2 counted as superseded");
    }
}

//! The ticker thread: advances the prices on absolute deadlines and builds each tick's
//! WebSocket frame exactly once; every subscriber is then sent the same bytes.
//!
//! Rules:
//! - Deadlines are `start + n * interval`, so the rate never drifts. A tick that starts
//!   after its successor's deadline counts the deadlines it missed in
//!   `ticker_tick_overruns_total` and goes on from the next deadline ahead (seq stays
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

pub mod prices;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Sender, TrySendError};

use crate::metrics::Metrics;
use crate::source::PriceSource;
use crate::ws::frame::{self, OpCode};
use prices::Quote;

/// One tick, ready to write: the whole WebSocket text frame.
#[derive(Debug, Clone)]
pub struct Tick {
    pub seq: u64,
    /// When the tick was made (Unix microseconds, the frame's `ts_us`): the event loops
    /// measure from it how late their fan-out starts.
    pub ts_us: u64,
    pub frame: Arc<[u8]>,
}

/// Where ticks go: one channel and one waker per event loop.
pub struct Subscriber {
    pub ticks: Sender<Tick>,
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
    ) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(TickerState { source, seq: 0, started: false }));
        let ctx = Arc::new(Context {
            interval,
            subscribers,
            metrics,
            stop: stop.clone(),
            bell: bell.clone(),
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
    let mut payload = Vec::with_capacity(512);
    let mut next_deadline = Instant::now();
    crate::info!("ticker started", interval_ms = interval.as_secs_f64() * 1000.0);
    while !ctx.stop.load(Ordering::Relaxed) {
        let started = state.lock().unwrap_or_else(PoisonError::into_inner).started;
        if started && metrics.ws_sessions_open.load(Ordering::Relaxed) <= 0 {
            // Nobody listens: build nothing, wake for the next session (or to stop).
            ctx.bell.wait(IDLE_NAP);
            next_deadline = Instant::now();
            continue;
        }
        let now = Instant::now();
        if now < next_deadline {
            thread::sleep(next_deadline - now);
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
            let seq = st.seq;
            build_tick(seq, st.source.next_quotes(first), SystemTime::now(), &mut payload)
        };
        metrics.ticks.fetch_add(1, Ordering::Relaxed);
        publish(&tick, &ctx.subscribers);

        next_deadline += interval;
        let late = Instant::now().saturating_duration_since(next_deadline);
        if late >= interval {
            // Skip the deadlines already past, counting each one.
            let missed = (late.as_nanos() / interval.as_nanos()) as u32;
            metrics.tick_overruns.fetch_add(u64::from(missed), Ordering::Relaxed);
            next_deadline += interval * missed;
        }
    }
}

/// Hands a tick to every event loop and wakes it; never blocks (a full queue means
/// that loop is behind and conflates anyway).
pub(crate) fn publish(tick: &Tick, subscribers: &[Subscriber]) {
    for s in subscribers {
        match s.ticks.try_send(tick.clone()) {
            // A full queue means that loop is behind; it keeps only the newest tick
            // anyway, so this one is conflated there.
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => continue,
        }
        if let Err(e) = s.waker.wake() {
            crate::warn!("cannot wake event loop", error = e);
        }
    }
}

/// Builds the frame of one tick made `now`. `payload` is a reused scratch buffer; the
/// only allocation is the returned frame, shared by every subscriber.
pub fn build_tick(seq: u64, quotes: &[Quote], now: SystemTime, payload: &mut Vec<u8>) -> Tick {
    let ts_us = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64;
    build_tick_at(seq, ts_us, quotes, payload)
}

/// Builds the frame of one tick from its data alone. Every node of a cluster calls this
/// with the leader's `(seq, ts_us, prices)`, so the frames for one `seq` are
/// byte-identical everywhere (the `timestamp` seconds come from `ts_us` too).
pub fn build_tick_at(seq: u64, ts_us: u64, quotes: &[Quote], payload: &mut Vec<u8>) -> Tick {
    payload.clear();
    write_payload(payload, seq, ts_us, ts_us / 1_000_000, quotes);
    let (header, header_len) = frame::server_header(OpCode::Text, payload.len());
    let mut bytes = Vec::with_capacity(header_len + payload.len());
    bytes.extend_from_slice(&header[..header_len]);
    bytes.extend_from_slice(payload);
    Tick { seq, ts_us, frame: Arc::from(bytes) }
}

/// `{"type":"ticker","seq":..,"ts_us":..,"data":[entry,..]}`
fn write_payload(out: &mut Vec<u8>, seq: u64, ts_us: u64, secs: u64, quotes: &[Quote]) {
    use std::io::Write;
    // Writes into a Vec cannot fail.
    let _ = write!(out, r#"{{"type":"ticker","seq":{seq},"ts_us":{ts_us},"data":["#);
    for (i, q) in quotes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_entry(out, q, secs);
    }
    out.extend_from_slice(b"]}");
}

/// One entry of `data`: `{"symbol":..,"price":..,"timestamp":..}`, and for a real
/// source `"source_ts":..` (the exchange's ms, once it priced the symbol) and `"stale":..`.
/// Simulated quotes carry neither, so their frames are the same bytes as before sources.
pub fn write_entry(out: &mut Vec<u8>, q: &Quote, secs: u64) {
    use std::io::Write;
    // Symbol names are validated as [A-Za-z0-9._-] in config, so no escaping is needed.
    let _ =
        write!(out, r#"{{"symbol":"{}","price":{},"timestamp":{secs}"#, q.symbol, Price(q.price));
    if let Some(stamp) = q.source {
        if let Some(ts) = stamp.ts_ms {
            let _ = write!(out, r#","source_ts":{ts}"#);
        }
        let _ = write!(out, r#","stale":{}"#, stamp.stale);
    }
    out.push(b'}');
}

/// Formats a price as JSON with at most 2 decimals (shortest form: `95`, `95.5`, `95.05`).
struct Price(f64);

impl std::fmt::Display for Price {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = format!("{:.2}", self.0);
        f.write_str(s.trim_end_matches('0').trim_end_matches('.'))
    }
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
    use super::*;

    #[test]
    fn a_tick_frame_is_one_text_frame_of_the_spec_json() {
        let quotes = vec![
            Quote { symbol: "BTC-USD".into(), price: 42001.17, source: None },
            Quote { symbol: "SOL-USD".into(), price: 95.0, source: None },
        ];
        let now = UNIX_EPOCH + Duration::from_micros(1_732_400_000_123_456);
        let tick = build_tick(1234, &quotes, now, &mut Vec::new());
        let frame = &tick.frame;
        assert_eq!(frame[0], 0x81, "FIN + text");
        let (len, start) = match frame[1] {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            n => (n as usize, 2),
        };
        assert_eq!(frame.len(), start + len);
        let v: serde_json::Value = serde_json::from_slice(&frame[start..]).unwrap();
        assert_eq!(v["type"], "ticker");
        assert_eq!(v["seq"], 1234);
        assert_eq!(v["ts_us"], 1_732_400_000_123_456u64);
        assert_eq!(v["data"][0]["symbol"], "BTC-USD");
        assert_eq!(v["data"][0]["price"], 42001.17);
        assert_eq!(v["data"][0]["timestamp"], 1_732_400_000);
        assert_eq!(v["data"][1]["price"], 95.0);
    }

    #[test]
    fn simulated_entries_are_unchanged_and_real_ones_carry_source_ts_and_stale() {
        let entry = |source| {
            let mut out = Vec::new();
            write_entry(&mut out, &Quote { symbol: "BTC-USD".into(), price: 42001.17, source }, 7);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(entry(None), r#"{"symbol":"BTC-USD","price":42001.17,"timestamp":7}"#);
        assert_eq!(
            entry(Some(prices::SourceStamp { ts_ms: Some(1_700_000_000_123), stale: false })),
            r#"{"symbol":"BTC-USD","price":42001.17,"timestamp":7,"source_ts":1700000000123,"stale":false}"#
        );
        assert_eq!(
            entry(Some(prices::SourceStamp { ts_ms: None, stale: true })),
            r#"{"symbol":"BTC-USD","price":42001.17,"timestamp":7,"stale":true}"#
        );
    }

    #[test]
    fn prices_print_with_at_most_two_decimals() {
        assert_eq!(Price(95.0).to_string(), "95");
        assert_eq!(Price(95.5).to_string(), "95.5");
        assert_eq!(Price(42001.17).to_string(), "42001.17");
        assert_eq!(Price(0.05).to_string(), "0.05");
    }
}

//! What the coordinator and the engine threads share: the run's start, the steady
//! window, the stop flag and two counters. Everything is an atomic, so no thread ever
//! waits on another.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

    /// A thread says its ramp is over; once per thread.
    pub(super) fn finish_ramp(&self) {
        self.ramp_done.fetch_add(1, Ordering::AcqRel);
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

    pub(super) fn count_opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends the run now (Ctrl-C, or nothing opened): threads close their connections.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

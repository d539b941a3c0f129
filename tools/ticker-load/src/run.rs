//! The coordinator: prepares the run (file limit, endpoints), starts the engine
//! threads, opens the steady window once every connection has opened or failed,
//! samples the server's /proc around it, prints the live line, and merges the results.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::endpoint::{self, EndpointError};
use crate::engine::{self, Plan, Shared};
use crate::stats::{Latency, Sample, ThreadResult, fmt_us};
use crate::subscribe::Subscription;
use crate::system::{self, ProcSample};

/// A thread above this share of one core in the steady window is called saturated.
pub(crate) const SATURATED: f64 = 0.85;

#[derive(Debug)]
pub(crate) enum RunError {
    Endpoint(EndpointError),
    ServerPid(u32, io::Error),
    Thread(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Endpoint(e) => e.fmt(f),
            RunError::ServerPid(pid, e) => {
                write!(f, "--server-pid {pid}: cannot read /proc/{pid}: {e}")
            }
            RunError::Thread(e) => write!(f, "engine thread failed: {e}"),
        }
    }
}

/// One second of the run, all threads together; an entry of the `--json` file's
/// `timeline`, as it is.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Second {
    /// Seconds since the start of the run.
    pub(crate) t: u64,
    pub(crate) open: u64,
    pub(crate) messages: u64,
    pub(crate) p50_us: Option<u64>,
    pub(crate) p99_us: Option<u64>,
    /// The second's tick-latency histogram, kept encoded as in the JSON file
    /// ([`Latency::encode`]): a long run has thousands of seconds, and a histogram in
    /// memory is 188 KiB.
    pub(crate) latency: Option<String>,
}

impl Second {
    /// Sets the percentiles and the encoded form from the second's histogram.
    pub(crate) fn set_latency(&mut self, latency: &Latency) {
        self.p50_us = latency.percentile(50.0);
        self.p99_us = latency.percentile(99.0);
        self.latency = latency.encode();
    }

    /// The second's histogram, empty if it has none.
    pub(crate) fn decoded_latency(&self) -> Result<Latency, String> {
        self.latency.as_deref().map_or_else(|| Ok(Latency::default()), Latency::decode)
    }
}

/// The server's /proc readings: before the ramp, at the start and end of the window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerUsage {
    pub(crate) pid: u32,
    pub(crate) baseline: ProcSample,
    pub(crate) start: ProcSample,
    pub(crate) end: ProcSample,
}

/// Everything a run produced, before formatting.
#[derive(Debug)]
pub(crate) struct RunOutput {
    pub(crate) result: ThreadResult,
    pub(crate) per_thread_core: Vec<f64>,
    pub(crate) timeline: Vec<Second>,
    /// Steady window as seconds from the start of the run; `None` if it never opened.
    pub(crate) window: Option<(f64, f64)>,
    pub(crate) ramp_seconds: f64,
    /// The first ramp connect and the last ramp open, in seconds from the start.
    pub(crate) first_connect: Option<f64>,
    pub(crate) last_open: Option<f64>,
    pub(crate) server: Option<ServerUsage>,
    /// The tool's process CPU time in the steady window.
    pub(crate) tool_cpu: Duration,
    pub(crate) interrupted: bool,
    pub(crate) warnings: Vec<String>,
}

/// Runs the load described by `args`, printing the live line to stderr unless quiet.
pub(crate) fn run(args: &Args) -> Result<RunOutput, RunError> {
    let mut warnings = setup_warnings(args);
    let endpoints =
        endpoint::prepare(&args.targets, &args.auth, args.token_in_query, args.ca.as_deref())
            .map_err(RunError::Endpoint)?;
    let plan = Plan {
        endpoints,
        connections: args.connections,
        ramp_per_sec: args.ramp_per_sec,
        connect_timeout: args.connect_timeout,
        threads: args.threads,
        bind: args.bind.clone(),
        churn_per_sec: args.churn_per_sec,
        token_per_connection: args.token_per_connection,
        subscription: args.subscription.clone(),
        wire: crate::conn::Wire { deflate: args.deflate, delta: args.delta },
    };

    let server_baseline = match args.server_pid {
        Some(pid) => Some((pid, system::read_proc(pid).map_err(|e| RunError::ServerPid(pid, e))?)),
        None => None,
    };
    system::catch_ctrl_c();

    let shared = Shared::new(Instant::now());
    let (tx, rx) = mpsc::channel::<Sample>();
    let outcome = std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(plan.threads);
        for thread in 0..plan.threads {
            let (plan, shared, tx) = (&plan, &shared, tx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("load-{thread}"))
                .spawn_scoped(scope, move || engine::run(plan, shared, thread, &tx))
                .map_err(RunError::Thread)?;
            handles.push(handle);
        }
        drop(tx);
        let watched = watch(args, &plan, &shared, &rx, server_baseline);
        let (result, per_thread_core) = join_engines(handles)?;
        Ok::<_, RunError>((watched, result, per_thread_core))
    });
    let (mut watched, result, per_thread_core) = outcome?;
    // Samples sent after the coordinator stopped listening (each thread's last one).
    watched.timeline.add_late(rx.try_iter());

    warnings.extend(result_warnings(args, &result, &per_thread_core));
    let since_t0 = |t: Instant| t.saturating_duration_since(shared.t0).as_secs_f64();
    Ok(RunOutput {
        first_connect: result.first_connect.map(since_t0),
        last_open: result.last_open.map(since_t0),
        result,
        per_thread_core,
        timeline: watched.timeline.finish(),
        window: watched.window,
        ramp_seconds: watched.ramp_seconds,
        server: watched.server,
        tool_cpu: watched.tool_cpu,
        interrupted: watched.interrupted,
        warnings,
    })
}

/// Raises the open-files limit, and warns of what will leave connections, URLs or
/// `--subscribe` sets short before the run starts.
fn setup_warnings(args: &Args) -> Vec<String> {
    let mut warnings = Vec::new();
    match system::raise_nofile_limit() {
        Ok(limit) if (args.connections as u64) + 64 > limit => warnings.push(format!(
            "open-files limit is {limit}, below {} connections: raise `ulimit -n`",
            args.connections
        )),
        Ok(_) => {}
        Err(e) => warnings.push(format!("cannot read the open-files limit: {e}")),
    }

    if args.targets.len() > args.connections {
        warnings.push(format!(
            "{} URLs but {} connections: the last {} URLs get none",
            args.targets.len(),
            args.connections,
            args.targets.len() - args.connections
        ));
    }

    if let Subscription::Sets(sets) = &args.subscription
        && sets.len() > args.connections
    {
        warnings.push(format!(
            "{} --subscribe sets but {} connections: the last {} sets get none",
            sets.len(),
            args.connections,
            sets.len() - args.connections
        ));
    }
    warnings
}

/// Waits for every engine thread: their results added up, and each one's share of a
/// core in the steady window.
fn join_engines(
    handles: Vec<std::thread::ScopedJoinHandle<'_, io::Result<ThreadResult>>>,
) -> Result<(ThreadResult, Vec<f64>), RunError> {
    let mut result = ThreadResult::default();
    let mut per_thread_core = Vec::new();
    for handle in handles {
        // An engine thread only panics on a bug; report it rather than hide it.
        let r = handle
            .join()
            .map_err(|_| RunError::Thread(io::Error::other("engine thread panicked")))?;
        let r = r.map_err(RunError::Thread)?;
        let wall = r.steady_wall.as_secs_f64();
        per_thread_core.push(if wall > 0.0 { r.steady_cpu.as_secs_f64() / wall } else { 0.0 });
        result.add(&r);
    }
    Ok((result, per_thread_core))
}

/// What the results say about the measurement itself: a saturated load thread, clocks
/// that disagree, a `--subscribe-random` K above the symbols there are.
fn result_warnings(args: &Args, result: &ThreadResult, per_thread_core: &[f64]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, share) in per_thread_core.iter().enumerate() {
        if *share >= SATURATED {
            warnings.push(format!(
                "load thread {i} used {:.0}% of a core in the steady window: the generator is near \
                 saturation and its latency figures overstate the server's; add --threads (below \
                 the number of cores) or another machine",
                share * 100.0
            ));
        }
    }
    if result.counters.steady_future_ts > 0 {
        warnings.push(format!(
            "{} messages carried a ts_us later than their receive time: the clocks of the two hosts disagree",
            result.counters.steady_future_ts
        ));
    }
    if let Subscription::Random { k, .. } = args.subscription {
        let seen = result.counters.subscribe.symbols_seen;
        if seen > 0 && k as u64 > seen {
            warnings.push(format!(
                "--subscribe-random {k} but the ticker messages list {seen} symbols: every \
                 connection subscribed to all {seen}"
            ));
        }
    }
    warnings
}

/// Per-second samples gathered from the threads.
#[derive(Debug, Default)]
struct Timeline {
    /// Per second: threads that reported it, the second, and its histogram while it is
    /// incomplete (a complete second keeps only the encoded form).
    seconds: BTreeMap<u64, (usize, Second, Option<Latency>)>,
}

impl Timeline {
    /// Adds one thread's sample; returns the second and its histogram if every thread
    /// has now reported it.
    fn add(&mut self, s: Sample, threads: usize) -> Option<(Second, Latency)> {
        let (reported, second, latency) = self.seconds.entry(s.second).or_default();
        *reported += 1;
        second.t = s.second;
        second.open += s.open;
        second.messages += s.messages;
        // A sample for a second already complete (not expected) reopens its histogram.
        let h = latency.get_or_insert_with(|| second.decoded_latency().unwrap_or_default());
        h.add(&s.latency);
        if *reported != threads {
            return None;
        }
        let h = latency.take()?;
        second.set_latency(&h);
        Some((second.clone(), h))
    }

    /// Samples that arrive after the live line stopped: they only complete the counts.
    fn add_late(&mut self, samples: impl Iterator<Item = Sample>) {
        for s in samples {
            let _ = self.add(s, usize::MAX);
        }
    }

    fn finish(self) -> Vec<Second> {
        self.seconds
            .into_values()
            .map(|(_, mut second, latency)| {
                if let Some(h) = latency {
                    second.set_latency(&h);
                }
                second
            })
            .collect()
    }
}

struct Watched {
    timeline: Timeline,
    window: Option<(f64, f64)>,
    ramp_seconds: f64,
    server: Option<ServerUsage>,
    tool_cpu: Duration,
    interrupted: bool,
}

/// The coordinator loop: runs until every engine thread has dropped its sender.
fn watch(
    args: &Args,
    plan: &Plan,
    shared: &Shared,
    rx: &mpsc::Receiver<Sample>,
    server_baseline: Option<(u32, ProcSample)>,
) -> Watched {
    let t0 = shared.t0;
    let secs = |t: Instant| t.saturating_duration_since(t0).as_secs_f64();
    let mut timeline = Timeline::default();
    let mut steady_latency = Latency::default();
    let mut window: Option<(Instant, Instant)> = None;
    let mut ramp_end = None;
    let mut start_marks: Option<(Option<ProcSample>, Duration)> = None;
    let mut end_marks: Option<(Option<ProcSample>, Duration, Instant)> = None;
    let mut interrupted = false;
    let read_server = || server_baseline.and_then(|(pid, _)| system::read_proc(pid).ok());

    loop {
        let now = Instant::now();
        // Open the window once every thread has finished its ramp.
        if window.is_none() && shared.ramp_done() == plan.threads {
            ramp_end = Some(now);
            if shared.opened() == 0 {
                shared.stop();
            } else {
                let start = now + args.warmup;
                let end = start + args.duration;
                shared.set_window(start, end);
                window = Some((start, end));
            }
        }
        if let Some((start, end)) = window {
            if start_marks.is_none() && now >= start {
                start_marks = Some((read_server(), system::process_cpu()));
            }
            if end_marks.is_none() && now >= end && start_marks.is_some() {
                end_marks = Some((read_server(), system::process_cpu(), now));
            }
        }
        if !interrupted && system::interrupted() {
            interrupted = true;
            eprintln!("interrupted: closing connections (Ctrl-C again to quit at once)");
            if start_marks.is_some() && end_marks.is_none() {
                end_marks = Some((read_server(), system::process_cpu(), now));
            }
            shared.stop();
        }

        let wait = match window {
            Some((start, _)) if start_marks.is_none() => start.saturating_duration_since(now),
            Some((_, end)) if end_marks.is_none() => end.saturating_duration_since(now),
            _ => Duration::from_millis(100),
        }
        .clamp(Duration::from_millis(1), Duration::from_millis(100));
        match rx.recv_timeout(wait) {
            Ok(sample) => {
                if let Some((second, latency)) = timeline.add(sample, plan.threads) {
                    // A second belongs to the phase its middle falls in.
                    let middle = t0 + Duration::from_millis(second.t * 1000 + 500);
                    let phase = phase_label(window, ramp_end, middle);
                    if phase == "steady" {
                        steady_latency.add(&latency);
                    }
                    if !args.quiet {
                        eprintln!(
                            "{}",
                            progress_line(&second, args.connections, phase, &steady_latency)
                        );
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }

    let server = match (server_baseline, start_marks, end_marks) {
        (Some((pid, baseline)), Some((Some(start), _)), Some((Some(end), _, _))) => {
            Some(ServerUsage { pid, baseline, start, end })
        }
        _ => None,
    };
    let tool_cpu = match (start_marks, end_marks) {
        (Some((_, a)), Some((_, b, _))) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    let window_secs = match (window, end_marks) {
        (Some((start, _)), Some((_, _, end))) => Some((secs(start), secs(end))),
        _ => None,
    };
    Watched {
        timeline,
        window: window_secs,
        ramp_seconds: ramp_end.map_or(0.0, secs),
        server,
        tool_cpu,
        interrupted,
    }
}

fn phase_label(
    window: Option<(Instant, Instant)>,
    ramp_end: Option<Instant>,
    at: Instant,
) -> &'static str {
    match (ramp_end, window) {
        (None, _) => "ramp",
        (Some(ramp_end), _) if at < ramp_end => "ramp",
        (Some(_), Some((start, _))) if at < start => "warmup",
        (Some(_), Some((_, end))) if at < end => "steady",
        _ => "closing",
    }
}

fn progress_line(s: &Second, connections: usize, phase: &str, steady: &Latency) -> String {
    let p99 = s.p99_us.map_or_else(|| "-".to_string(), fmt_us);
    let steady_p99 = steady.percentile(99.0).map_or_else(|| "-".to_string(), fmt_us);
    format!(
        "{:>4}s {:<7} open {:>6}/{connections}  msgs/s {:>9}  p99 {:>9} (this s)  {:>9} (steady)",
        s.t + 1,
        phase,
        s.open,
        s.messages,
        p99,
        steady_p99
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_the_live_line_never_completed_are_finished_with_their_histogram() {
        let mut t = Timeline::default();
        let mut latency = Latency::default();
        latency.record(500);
        t.add_late([Sample { second: 9, open: 1, messages: 1, latency }].into_iter());
        let done = t.finish();
        assert_eq!((done[0].t, done[0].p50_us), (9, Some(500)));
        assert_eq!(done[0].decoded_latency().unwrap().count(), 1);
    }

    #[test]
    fn a_second_is_complete_when_every_thread_reported_it() {
        let mut t = Timeline::default();
        let sample = |n| {
            let mut latency = Latency::default();
            latency.record(n * 100);
            Sample { second: 3, open: n, messages: n, latency }
        };
        assert!(t.add(sample(1), 2).is_none());
        let (second, latency) = t.add(sample(2), 2).unwrap();
        assert_eq!((second.t, second.open, second.messages, latency.count()), (3, 3, 3, 2));
        assert_eq!(second.p99_us, Some(200));
        assert_eq!(second.decoded_latency().unwrap().count(), 2, "kept encoded");
        assert!(t.seconds[&3].2.is_none(), "the histogram itself is not kept");
        let done = t.finish();
        assert_eq!(done, [second]);
    }
}

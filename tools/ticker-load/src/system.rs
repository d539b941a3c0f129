//! What the tool asks the operating system: CPU time (its own, per thread, and the
//! server's through /proc/PID), resident memory, the file-descriptor limit, and Ctrl-C.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// CPU time and memory of a process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcSample {
    /// User + system CPU time.
    pub(crate) cpu: Duration,
    pub(crate) rss_bytes: u64,
}

/// Reads `/proc/PID/stat` and `/proc/PID/status`.
pub(crate) fn read_proc(pid: u32) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let bad =
        || io::Error::new(io::ErrorKind::InvalidData, format!("unexpected /proc/{pid} format"));
    let ticks = parse_stat_cpu_ticks(&stat).ok_or_else(bad)?;
    let rss_kib = parse_status_rss_kib(&status).ok_or_else(bad)?;
    Ok(ProcSample { cpu: ticks_to_duration(ticks), rss_bytes: rss_kib * 1024 })
}

/// utime + stime (fields 14 and 15, in clock ticks) from a `/proc/PID/stat` line.
/// The command name (field 2) may hold spaces and parentheses, so fields are counted
/// from the last `)`.
pub(crate) fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace().skip(11); // field 3 is index 0
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in KiB from `/proc/PID/status`.
pub(crate) fn parse_status_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..].split_ascii_whitespace().next()?.parse().ok()
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf has no preconditions; it only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Duration::from_micros(ticks * 1_000_000 / hz)
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the call to fill.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv =
        |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32).saturating_mul(1000));
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time of the whole process.
pub(crate) fn process_cpu() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

/// CPU time of the calling thread.
pub(crate) fn thread_cpu() -> Duration {
    rusage(libc::RUSAGE_THREAD)
}

/// Raises the soft open-files limit to the hard limit; returns the new soft limit.
pub(crate) fn raise_nofile_limit() -> io::Result<u64> {
    // SAFETY: an all-zero rlimit is a valid value of this plain C struct.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: `raised` is a valid rlimit that only reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(raised.rlim_cur);
        }
    }
    Ok(lim.rlim_cur)
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
    // A second Ctrl-C kills the process as usual.
    // SAFETY: signal() is async-signal-safe; restoring the default disposition.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
}

/// Makes the first Ctrl-C set a flag (the run then ends early and still reports).
pub(crate) fn catch_ctrl_c() {
    // SAFETY: the handler only stores to an atomic and calls signal(), both
    // async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
}

pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_is_read_after_a_command_name_with_spaces_and_parens() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 200";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn rss_is_read_from_status() {
        let status = "Name:\tx\nVmPeak:\t  9999 kB\nVmRSS:\t    4321 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss_kib(status), Some(4321));
        assert_eq!(parse_status_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn our_own_proc_entry_reads() {
        let me = read_proc(std::process::id()).unwrap();
        assert!(me.rss_bytes > 0);
        assert!(process_cpu() >= thread_cpu());
    }
}

//! What libtfo did in this process, counted with relaxed atomics (no lock,
//! safe in signal handlers) and written to `TFO_STATS` when the process
//! exits normally and before it execs. `tfo stats` sums the files.

use crate::config;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy)]
#[repr(usize)]
pub enum Counter {
    SocketsSeen,
    ConnectionsDeferred,
    SynDataSent,
    SynDataAcked,
    FallbackPolicy,
    FallbackDisabled,
    FallbackFailureMemory,
    FallbackError,
    KicksRead,
    KicksWait,
    KicksShutdown,
    KicksExec,
    SynDataDropped,
    SynDataReset,
    ResetRetries,
    FallbackNoCookie,
}

/// The file's keys, in `Counter` order.
const KEYS: [&str; 16] = [
    "sockets_seen",
    "connections_deferred",
    "syn_data_sent",
    "syn_data_acked",
    "fallback_policy",
    "fallback_disabled",
    "fallback_failure_memory",
    "fallback_error",
    "kicks_read",
    "kicks_wait",
    "kicks_shutdown",
    "kicks_exec",
    "syn_data_dropped",
    "syn_data_reset",
    "reset_retries",
    "fallback_no_cookie",
];

static COUNTS: [AtomicU64; KEYS.len()] = [const { AtomicU64::new(0) }; KEYS.len()];

#[inline]
pub fn count(counter: Counter) {
    COUNTS[counter as usize].fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
pub fn get(counter: Counter) -> u64 {
    COUNTS[counter as usize].load(Ordering::Relaxed)
}

/// The statistics as the file holds them.
pub fn render(pid: i32, program: &str) -> String {
    let mut text = format!("pid {pid}\nprogram {program}\n");
    for (key, value) in KEYS.iter().zip(&COUNTS) {
        text += &format!("{key} {}\n", value.load(Ordering::Relaxed));
    }
    text
}

/// Writes the file, if TFO_STATS asks for one and anything was counted.
/// Called at exit and before exec (then the counts start again from zero, in
/// case exec fails and the process goes on).
pub fn write_file() {
    let Some(pattern) = config::get().stats.as_deref() else { return };
    if COUNTS.iter().all(|c| c.load(Ordering::Relaxed) == 0) {
        return; // nothing happened: no file (shells, tools that never connect)
    }
    let saved = crate::errno::get();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let program = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    let program = program.trim();
    let path = path(pattern, pid, program);
    if let Err(e) = std::fs::write(&path, render(pid, program)) {
        crate::log::warning!("cannot write statistics to {path}: {e}");
    }
    for c in &COUNTS {
        c.store(0, Ordering::Relaxed);
    }
    crate::errno::set(saved);
}

/// A directory gets `libtfo.PID.PROGRAM.stats` (exec keeps the pid, so the
/// program name keeps the images of one process apart); a pattern has its
/// `%p` replaced by the pid.
fn path(pattern: &str, pid: i32, program: &str) -> String {
    if std::path::Path::new(pattern).is_dir() {
        format!("{}/libtfo.{pid}.{program}.stats", pattern.trim_end_matches('/'))
    } else {
        pattern.replace("%p", &pid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_lists_every_key_in_order() {
        count(Counter::KicksRead);
        let text = render(42, "curl");
        let keys: Vec<_> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(keys[..2], ["pid", "program"]);
        assert_eq!(keys[2..], KEYS);
        assert!(text.contains("\nkicks_read 1\n") || get(Counter::KicksRead) > 1);
    }

    #[test]
    fn paths() {
        assert_eq!(path("/nonexistent/s.%p", 7, "x"), "/nonexistent/s.7");
        assert_eq!(path("/tmp/", 7, "nc"), "/tmp/libtfo.7.nc.stats");
    }
}

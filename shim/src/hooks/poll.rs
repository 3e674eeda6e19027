//! poll / ppoll (spec §9). Before its SYN leaves, a deferred socket reports
//! POLLOUT|POLLWRNORM and nothing else (tcp_poll's DEFER_CONNECT case), but
//! the unconnected kernel socket under it would add POLLHUP, which makes
//! level-triggered loops drop it. Such sockets are hidden from the real poll
//! (a negative fd is ignored by the kernel) and answered here; the real poll
//! only waits when none of them is ready. A pending error adds POLLERR.

use super::{attention, still_unsent, unsent};
use crate::deferred::Socket;
use crate::real;
use libc::{c_int, nfds_t, pollfd, sigset_t, timespec};

/// What tcp_poll() reports for a deferred socket.
pub const DEFERRED_MASK: i16 = libc::POLLOUT | libc::POLLWRNORM;

/// Entries beyond this many are tracked on the heap (rare: huge poll sets
/// that also hold a deferred socket).
const STACK_ENTRIES: usize = 1024;

/// The first socket in `fds` libtfo must answer for, if any.
#[inline(always)]
unsafe fn any_attention(fds: *mut pollfd, n: nfds_t) -> Option<&'static Socket> {
    if fds.is_null() {
        return None;
    }
    // SAFETY: poll's contract: `fds` points to `n` entries.
    std::slice::from_raw_parts(fds, n as usize).iter().find_map(|p| attention(p.fd))
}

export_fd! {
    fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int,
    if let Some(_socket) = any_attention(fds, n) => {
        hide_deferred(fds, n, |ready| real::poll(fds, n, if ready { 0 } else { timeout }))
    }

    fn ppoll(fds: *mut pollfd, n: nfds_t, timeout: *const timespec, mask: *const sigset_t) -> c_int,
    if let Some(_socket) = any_attention(fds, n) => {
        const NOW: timespec = timespec { tv_sec: 0, tv_nsec: 0 };
        hide_deferred(fds, n, |ready| real::ppoll(fds, n, if ready { &NOW } else { timeout }, mask))
    }
}

/// Runs `real_poll` with deferred sockets hidden and adds their readiness.
/// `real_poll(true)` must not wait, because a hidden socket is ready.
unsafe fn hide_deferred(fds: *mut pollfd, n: nfds_t, real_poll: impl FnOnce(bool) -> c_int) -> c_int {
    // SAFETY: poll's contract: `fds` points to `n` entries.
    let entries = std::slice::from_raw_parts_mut(fds, n as usize);
    let mut stack = [0u64; STACK_ENTRIES / 64];
    let mut heap = Vec::new();
    let hidden: &mut [u64] = if entries.len() <= STACK_ENTRIES {
        &mut stack
    } else {
        heap.resize(entries.len().div_ceil(64), 0);
        &mut heap
    };
    let saved = crate::errno::Saved::take();
    let mut ready = 0;
    for (i, p) in entries.iter_mut().enumerate() {
        if let Some(socket) = unsent(p.fd).filter(|socket| still_unsent(p.fd, socket)) {
            hidden[i / 64] |= 1 << (i % 64);
            ready += (p.events & DEFERRED_MASK != 0 || socket.pending_error() != 0) as c_int;
            p.fd = !p.fd; // negative: ignored by the kernel, restored below
        }
    }
    saved.restore(());
    let result = real_poll(ready > 0);
    if result < 0 && ready > 0 {
        // Only the hidden sockets are known ready; the call still succeeds.
        saved.restore(());
    }
    for (i, p) in entries.iter_mut().enumerate() {
        if hidden[i / 64] & (1 << (i % 64)) != 0 {
            p.fd = !p.fd;
            p.revents = p.events & DEFERRED_MASK;
            if attention(p.fd).is_some_and(|s| s.pending_error() != 0) {
                p.revents |= libc::POLLERR;
            }
        } else if result >= 0 && p.fd >= 0 && attention(p.fd).is_some_and(|s| s.pending_error() != 0) {
            // The real socket already says POLLOUT|POLLHUP, so it is counted.
            p.revents |= libc::POLLERR;
        }
    }
    if result < 0 && ready == 0 {
        result
    } else {
        result.max(0) + ready
    }
}

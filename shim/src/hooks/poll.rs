//! poll / ppoll and their fortified variants (spec §9).
//!
//! * An emulated socket whose SYN has not left reports POLLOUT|POLLWRNORM
//!   and nothing else (tcp_poll's DEFER_CONNECT case), but the unconnected
//!   kernel socket under it would add POLLHUP, which makes level-triggered
//!   loops drop it. Such sockets are hidden from the real poll (a negative
//!   fd is ignored by the kernel) and answered here; the real poll only
//!   waits when none of them is ready. A pending error adds POLLERR.
//! * Auto mode: a poll that would wait, and waits for input on a deferred
//!   socket, starts its connection first ([`syn::kick`]): the program is
//!   waiting for the server to speak, or was told "writable" and has
//!   nothing to write. A poll that finds something ready kicks nothing.
//! * Auto mode: a poll that would wait on other files only, by the thread
//!   that deferred a socket, starts that socket (`syn::before_blocking`).
//! * Auto mode: a socket whose SYN carried data has its outcome looked at
//!   before and after the wait; a reset retried meanwhile makes the poll
//!   start over, so the program never sees the reset.

use super::syn::{self, Outcome};
use super::{attention, still_unsent};
use crate::fdtable::Entry;
use crate::state::Engine;
use crate::stats::Counter;
use libc::{c_int, nfds_t, pollfd, sigset_t, size_t, timespec};

/// What tcp_poll() reports for a deferred socket.
pub const DEFERRED_MASK: i16 = libc::POLLOUT | libc::POLLWRNORM;

/// What tcp_poll() reports for this deferred socket: also "readable, peer
/// gone" when its reading side was shut before it connected, and "hung up"
/// when both sides were.
pub fn deferred_mask(entry: &Entry) -> i16 {
    use crate::state::{FLAG_READ_SHUT, FLAG_WRITE_SHUT};
    let mut mask = DEFERRED_MASK;
    if entry.conn.has_flag(FLAG_READ_SHUT) {
        mask |= libc::POLLIN | libc::POLLRDNORM | libc::POLLRDHUP;
        if entry.conn.has_flag(FLAG_WRITE_SHUT) {
            mask |= libc::POLLHUP;
        }
    }
    mask
}

/// What poll reports of a deferred socket asked for `events` (POLLHUP
/// always, as poll adds it unasked).
fn reported(events: i16, entry: &Entry) -> i16 {
    deferred_mask(entry) & (events | libc::POLLHUP)
}

/// Interest in input, for the kick rule.
pub const INPUT_MASK: i16 = libc::POLLIN | libc::POLLRDNORM | libc::POLLPRI | libc::POLLRDHUP;

/// Entries beyond this many are tracked on the heap (rare: huge poll sets
/// that also hold a deferred socket).
const STACK_ENTRIES: usize = 1024;

/// The first socket in `fds` libtfo must answer for, if any.
///
/// # Safety
/// poll's contract: `fds` points to `n` entries (or is null).
#[inline(always)]
unsafe fn any_attention(fds: *mut pollfd, n: nfds_t, waits: impl FnOnce() -> bool) -> Option<&'static Entry> {
    // Nothing tracked, or an array the kernel refuses (too long: EINVAL;
    // unreadable: EFAULT): the real call answers, the array untouched.
    if !crate::fdtable::any_tracked() || n as usize > crate::fdtable::MAX_FDS {
        return None;
    }
    if !crate::kernel::readable(fds.cast(), n as usize * std::mem::size_of::<pollfd>()) {
        return None;
    }
    // SAFETY: readable for `n` entries (checked above).
    let found = unsafe { std::slice::from_raw_parts(fds, n as usize) }.iter().find_map(|p| attention(p.fd));
    if found.is_none() && syn::any_deferred() && waits() {
        // SAFETY: poll's contract; a probe that does not wait.
        syn::before_blocking(|| unsafe { crate::real::poll(fds, n, 0) } == 0);
    }
    found
}

const NOW: timespec = timespec { tv_sec: 0, tv_nsec: 0 };

export_fd! {
    fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int,
    // SAFETY: poll's contract for `fds`.
    if let Some(_entry) = unsafe { any_attention(fds, n, || timeout != 0) } => {
        // SAFETY: as above; the real poll gets the same array.
        unsafe { poll_tracked(fds, n, timeout != 0, |now| crate::real::poll(fds, n, if now { 0 } else { timeout })) }
    }

    fn ppoll(fds: *mut pollfd, n: nfds_t, timeout: *const timespec, mask: *const sigset_t) -> c_int,
    // SAFETY: as for poll.
    if let Some(_entry) = unsafe { any_attention(fds, n, || super::waits_checked(timeout)) } => {
        // SAFETY: as for poll.
        unsafe { poll_tracked(fds, n, super::waits(timeout), |now| crate::real::ppoll(fds, n, if now { &NOW } else { timeout }, mask)) }
    }

    /// The entry point of programs built with _FORTIFY_SOURCE: it checks the
    /// array's size, then polls.
    fn __poll_chk(fds: *mut pollfd, n: nfds_t, timeout: c_int, fdslen: size_t) -> c_int,
    // SAFETY: as for poll, once the size is known to cover `n` entries.
    if let Some(_entry) = fortified_ok(n, fdslen).then(|| unsafe { any_attention(fds, n, || timeout != 0) }).flatten() => {
        // SAFETY: as for poll.
        unsafe { poll_tracked(fds, n, timeout != 0, |now| crate::real::poll(fds, n, if now { 0 } else { timeout })) }
    }

    fn __ppoll_chk(fds: *mut pollfd, n: nfds_t, timeout: *const timespec, mask: *const sigset_t, fdslen: size_t) -> c_int,
    // SAFETY: as above.
    if let Some(_entry) = fortified_ok(n, fdslen).then(|| unsafe { any_attention(fds, n, || super::waits_checked(timeout)) }).flatten() => {
        // SAFETY: as for poll.
        unsafe { poll_tracked(fds, n, super::waits(timeout), |now| crate::real::ppoll(fds, n, if now { &NOW } else { timeout }, mask)) }
    }
}


/// The fortified check: otherwise the real __poll_chk aborts the program.
fn fortified_ok(n: nfds_t, fdslen: size_t) -> bool {
    fdslen / std::mem::size_of::<pollfd>() >= n as usize
}

/// A bit per entry, on the stack for the usual sizes.
struct Bits {
    stack: [u64; STACK_ENTRIES / 64],
    heap: Vec<u64>,
}

impl Bits {
    fn new(len: usize) -> Self {
        let mut bits = Bits { stack: [0; STACK_ENTRIES / 64], heap: Vec::new() };
        if len > STACK_ENTRIES {
            bits.heap.resize(len.div_ceil(64), 0);
        }
        bits
    }

    fn words(&mut self) -> &mut [u64] {
        if self.heap.is_empty() {
            &mut self.stack
        } else {
            &mut self.heap
        }
    }

    fn set(&mut self, i: usize) {
        self.words()[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.words()[i / 64] &= !(1 << (i % 64));
    }

    fn get(&mut self, i: usize) -> bool {
        self.words()[i / 64] & (1 << (i % 64)) != 0
    }
}

/// Runs `real_poll` with libtfo's sockets taken care of (see the module
/// comment). `real_poll(true)` must not wait.
///
/// # Safety
/// poll's contract: `fds` points to `n` entries.
unsafe fn poll_tracked(fds: *mut pollfd, n: nfds_t, caller_waits: bool, real_poll: impl Fn(bool) -> c_int) -> crate::export::Answer<c_int> {
    // SAFETY: poll's contract.
    let entries = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
    loop {
        let (result, retried) = poll_once(entries, caller_waits, &real_poll);
        if !retried || result.is_err() {
            return crate::export::Done(result);
        }
    }
}

fn poll_once(entries: &mut [pollfd], caller_waits: bool, real_poll: &impl Fn(bool) -> c_int) -> (crate::errno::SysResult<c_int>, bool) {
    let mut hidden = Bits::new(entries.len());
    let mut kicks = Bits::new(entries.len());
    let (mut ready, mut any_kick) = (0, false);
    for (i, p) in entries.iter_mut().enumerate() {
        let Some(entry) = attention(p.fd) else { continue };
        let conn = &entry.conn;
        if conn.is_confirming() {
            syn::resolve(p.fd, entry, true);
        }
        if !conn.is_unsent() {
            continue;
        }
        if p.events & INPUT_MASK != 0 && syn::wait_kicks(entry, caller_waits) {
            kicks.set(i);
            any_kick = true;
        }
        if conn.engine() == Engine::Emulated && still_unsent(p.fd, entry) {
            hidden.set(i);
            ready += (reported(p.events, entry) != 0 || conn.pending_error() != 0) as c_int;
            p.fd = !p.fd; // negative: ignored by the kernel, restored below
        }
    }
    let result = if ready > 0 {
        crate::errno::check(real_poll(true))
    } else if any_kick {
        // Nothing libtfo answers is ready: does anything else have news?
        match crate::errno::check(real_poll(true)) {
            Ok(0) => {
                for (i, p) in entries.iter_mut().enumerate() {
                    if !kicks.get(i) {
                        continue;
                    }
                    if hidden.get(i) {
                        p.fd = !p.fd;
                        hidden.clear(i);
                    }
                    if let Some(entry) = attention(p.fd) {
                        syn::kick(p.fd, entry, Counter::KicksWait);
                    }
                }
                crate::errno::check(real_poll(false))
            }
            other => other,
        }
    } else {
        crate::errno::check(real_poll(false))
    };
    let mut retried = false;
    for (i, p) in entries.iter_mut().enumerate() {
        if hidden.get(i) {
            p.fd = !p.fd;
            p.revents = 0;
            if let Some(entry) = attention(p.fd) {
                p.revents = reported(p.events, entry);
                if entry.conn.pending_error() != 0 {
                    p.revents |= libc::POLLERR;
                }
            }
            continue;
        }
        let Some(entry) = attention(p.fd).filter(|_| result.is_ok()) else { continue };
        if entry.conn.is_confirming() && syn::resolve(p.fd, entry, true) == Outcome::Retried {
            retried = true;
        } else if entry.conn.pending_error() != 0 && !entry.conn.has_flag(crate::state::FLAG_LISTENING) {
            // The real socket already says POLLOUT|POLLHUP, so it is counted.
            p.revents |= libc::POLLERR;
        }
    }
    let result = match result {
        // Only the hidden sockets are known ready; the call still succeeds.
        Err(_) if ready > 0 => Ok(ready),
        Err(e) => Err(e),
        Ok(n) => Ok(n + ready),
    };
    (result, retried)
}

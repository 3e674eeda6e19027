//! poll / ppoll and their fortified variants (spec §9): the array is read
//! here; what the wait reports is readiness.rs's, the same for every wait.

use super::attention;
use super::readiness;
use crate::fdtable::Entry;
use libc::{c_int, nfds_t, pollfd, sigset_t, size_t, timespec};

/// The first socket in `fds` libtfo must answer for, if any.
///
/// # Safety
/// poll's contract: `fds` points to `n` entries (or is null).
#[inline(always)]
unsafe fn any_attention(fds: *mut pollfd, n: nfds_t) -> Option<&'static Entry> {
    // Nothing tracked, or an array the kernel refuses (too long: EINVAL;
    // unreadable: EFAULT): the real call answers, the array untouched.
    if !crate::fdtable::any_tracked() || n as usize > crate::fdtable::MAX_FDS {
        return None;
    }
    if !crate::kernel::readable(fds.cast(), n as usize * std::mem::size_of::<pollfd>()) {
        return None;
    }
    // SAFETY: readable for `n` entries (checked above).
    unsafe { std::slice::from_raw_parts(fds, n as usize) }.iter().find_map(|p| attention(p.fd))
}

const NOW: timespec = timespec { tv_sec: 0, tv_nsec: 0 };

export_tracked! {
    fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int,
    // SAFETY: poll's contract for `fds`.
    if let Some(_entry) = unsafe { any_attention(fds, n) } => {
        // SAFETY: as above; the real poll gets the same array.
        unsafe { poll_tracked(fds, n, timeout != 0, |now| crate::real::poll(fds, n, if now { 0 } else { timeout })) }
    }

    fn ppoll(fds: *mut pollfd, n: nfds_t, timeout: *const timespec, mask: *const sigset_t) -> c_int,
    // SAFETY: as for poll.
    if let Some(_entry) = unsafe { any_attention(fds, n) } => {
        // SAFETY: as for poll.
        unsafe { poll_tracked(fds, n, super::waits(timeout), |now| crate::real::ppoll(fds, n, if now { &NOW } else { timeout }, mask)) }
    }

    /// The entry point of programs built with _FORTIFY_SOURCE: it checks the
    /// array's size, then polls.
    fn __poll_chk(fds: *mut pollfd, n: nfds_t, timeout: c_int, fdslen: size_t) -> c_int,
    // SAFETY: as for poll, once the size is known to cover `n` entries.
    if let Some(_entry) = fortified_ok(n, fdslen).then(|| unsafe { any_attention(fds, n) }).flatten() => {
        // SAFETY: as for poll.
        unsafe { poll_tracked(fds, n, timeout != 0, |now| crate::real::poll(fds, n, if now { 0 } else { timeout })) }
    }

    fn __ppoll_chk(fds: *mut pollfd, n: nfds_t, timeout: *const timespec, mask: *const sigset_t, fdslen: size_t) -> c_int,
    // SAFETY: as above.
    if let Some(_entry) = fortified_ok(n, fdslen).then(|| unsafe { any_attention(fds, n) }).flatten() => {
        // SAFETY: as for poll.
        unsafe { poll_tracked(fds, n, super::waits(timeout), |now| crate::real::ppoll(fds, n, if now { &NOW } else { timeout }, mask)) }
    }
}


/// The fortified check: otherwise the real __poll_chk aborts the program.
fn fortified_ok(n: nfds_t, fdslen: size_t) -> bool {
    fdslen / std::mem::size_of::<pollfd>() >= n as usize
}

/// Runs `real_poll` with libtfo's sockets answered (readiness.rs).
/// `real_poll(true)` must not wait.
///
/// # Safety
/// poll's contract: `fds` points to `n` entries.
unsafe fn poll_tracked(fds: *mut pollfd, n: nfds_t, caller_waits: bool, real_poll: impl Fn(bool) -> c_int) -> crate::export::Answer<c_int> {
    // SAFETY: poll's contract.
    let entries = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
    crate::export::Done(readiness::wait(&mut PollSlots { entries, real_poll }, caller_waits))
}

/// poll's array as readiness slots: a hidden entry gets a negative fd
/// (ignored by the kernel), restored after the wait.
struct PollSlots<'a, F> {
    entries: &'a mut [pollfd],
    real_poll: F,
}

impl<F: Fn(bool) -> c_int> PollSlots<'_, F> {
    /// What poll reports of `mask` for entry `i`: what it asked, and
    /// POLLHUP and POLLERR unasked.
    fn shown(&self, i: usize, mask: i16) -> i16 {
        mask & (self.entries[i].events | libc::POLLHUP | libc::POLLERR)
    }
}

impl<F: Fn(bool) -> c_int> readiness::Slots for PollSlots<'_, F> {
    fn count(&self) -> usize {
        self.entries.len()
    }

    fn asked(&self, i: usize) -> Option<(c_int, i16)> {
        Some((self.entries[i].fd, self.entries[i].events))
    }

    fn hide(&mut self, i: usize) {
        self.entries[i].fd = !self.entries[i].fd;
    }

    fn give_back(&mut self, i: usize) {
        self.hide(i);
    }

    fn unhide_after(&mut self, i: usize) {
        self.hide(i);
    }

    fn real(&mut self, now: bool) -> c_int {
        (self.real_poll)(now)
    }

    fn shows(&self, i: usize, mask: i16) -> bool {
        self.shown(i, mask) != 0
    }

    fn report(&mut self, i: usize, mask: i16) -> c_int {
        let before = self.entries[i].revents;
        self.entries[i].revents |= self.shown(i, mask);
        (before == 0 && self.entries[i].revents != 0) as c_int
    }

    fn clear_real(&mut self) {
        self.entries.iter_mut().for_each(|p| p.revents = 0);
    }

    /// The kernel writes every revents back, even when it fails.
    fn restore(&mut self) {}
}

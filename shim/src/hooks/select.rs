//! select / pselect (spec §9): the sets are read here; what the wait
//! reports is readiness.rs's, the same for every wait. Select counts a
//! descriptor once per set it is reported in, reads POLLIN, POLLHUP and
//! POLLERR as readable, POLLOUT and POLLERR as writable and POLLPRI as an
//! exception, and on any error leaves the sets as they were given.

use super::attention;
use super::readiness::{self, Bits};
use crate::export::Done;
use crate::fdtable::Entry;
use libc::{c_int, fd_set, sigset_t, timespec, timeval};

/// The descriptors of the sets libtfo looks at: those below `n` that may
/// be tracked, and at least FD_SETSIZE (the sets' own size) when `n` says
/// so. The kernel reads `n` bits, or fewer: no more than its fd table
/// holds, which holds every tracked descriptor.
fn span(n: c_int) -> usize {
    (n.max(0) as usize).min((libc::FD_SETSIZE).max((crate::fdtable::highest() + 1) as usize))
}

/// The first socket among the sets' descriptors libtfo must answer for.
///
/// # Safety
/// select's contract: each set is null or valid for `n` bits.
#[inline(always)]
unsafe fn any_attention(n: c_int, sets: [*mut fd_set; 3]) -> Option<&'static Entry> {
    if n <= 0 || sets.iter().all(|s| s.is_null()) || !crate::fdtable::any_tracked() {
        return None;
    }
    let span = span(n);
    // A set the kernel cannot read gets its EFAULT from the real call.
    let bytes = span.div_ceil(64) * 8;
    if sets.iter().any(|&s| !s.is_null() && !crate::kernel::readable(s.cast(), bytes)) {
        return None;
    }
    (0..span).find_map(|fd| {
        // SAFETY: readable for `span` bits (checked above).
        let asked = sets.iter().any(|&s| unsafe { bit(s, fd) });
        asked.then(|| attention(fd as c_int)).flatten()
    })
}

/// Bit `fd` of a set (false for a NULL set).
///
/// # Safety
/// `set` is null or valid past bit `fd`.
unsafe fn bit(set: *const fd_set, fd: usize) -> bool {
    // SAFETY: the caller's contract; a set is an array of longs.
    !set.is_null() && unsafe { *set.cast::<u64>().add(fd / 64) } & (1 << (fd % 64)) != 0
}

/// Sets bit `fd` of a non-null set to `on`.
///
/// # Safety
/// As for `bit`.
unsafe fn put(set: *mut fd_set, fd: usize, on: bool) {
    // SAFETY: the caller's contract.
    let word = unsafe { &mut *set.cast::<u64>().add(fd / 64) };
    if on {
        *word |= 1 << (fd % 64);
    } else {
        *word &= !(1 << (fd % 64));
    }
}

export_tracked! {
    fn select(n: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, timeout: *mut timeval) -> c_int,
    // SAFETY: select's contract for the sets.
    if let Some(_entry) = unsafe { any_attention(n, [r, w, e]) } => {
        // SAFETY: as above.
        let caller_waits = timeout.is_null() || unsafe { (*timeout).tv_sec != 0 || (*timeout).tv_usec != 0 };
        // SAFETY: as above; the real select gets the same sets (and a zero
        // timeout of its own when it must not wait).
        Done(unsafe {
            select_tracked(n, [r, w, e], caller_waits, |now| {
                let mut zero = timeval { tv_sec: 0, tv_usec: 0 };
                crate::real::select(n, r, w, e, if now { &mut zero } else { timeout })
            })
        })
    }

    fn pselect(n: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, timeout: *const timespec, mask: *const sigset_t) -> c_int,
    // SAFETY: as for select.
    if let Some(_entry) = unsafe { any_attention(n, [r, w, e]) } => {
        const NOW: timespec = timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: as for select.
        Done(unsafe { select_tracked(n, [r, w, e], super::waits(timeout), |now| crate::real::pselect(n, r, w, e, if now { &NOW } else { timeout }, mask)) })
    }
}

/// # Safety
/// select's contract for the sets (checked readable by `any_attention`).
unsafe fn select_tracked(n: c_int, sets: [*mut fd_set; 3], caller_waits: bool, real_select: impl Fn(bool) -> c_int) -> crate::errno::SysResult<c_int> {
    let span = span(n);
    // The sets as the caller gave them: put back on an error, or when a
    // retried reset starts the wait over.
    let original = sets.map(|s| {
        let mut copy = Bits::new(span);
        if !s.is_null() {
            let words = span.div_ceil(64);
            // SAFETY: the set holds `span` bits.
            copy.words()[..words].copy_from_slice(unsafe { std::slice::from_raw_parts(s.cast::<u64>(), words) });
        }
        copy
    });
    readiness::wait(&mut SelectSets { span, sets, original, real_select }, caller_waits)
}

/// poll's events that make a descriptor ready in each set.
const IN_SET: i16 = libc::POLLIN | libc::POLLRDNORM | libc::POLLRDBAND | libc::POLLHUP | libc::POLLERR;
const OUT_SET: i16 = libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND | libc::POLLERR;
const EX_SET: i16 = libc::POLLPRI;

/// select's sets as readiness slots: slot `fd` is descriptor `fd`; a hidden
/// one has its bits cleared.
struct SelectSets<F> {
    span: usize,
    /// Read, write, except; each may be NULL.
    sets: [*mut fd_set; 3],
    original: [Bits; 3],
    real_select: F,
}

impl<F> SelectSets<F> {
    /// The sets given, with what each reports.
    fn given(&self) -> impl Iterator<Item = (usize, *mut fd_set, i16)> + '_ {
        self.sets.iter().zip([IN_SET, OUT_SET, EX_SET]).enumerate().filter(|(_, (s, _))| !s.is_null()).map(|(k, (&s, m))| (k, s, m))
    }
}

impl<F: Fn(bool) -> c_int> readiness::Slots for SelectSets<F> {
    fn count(&self) -> usize {
        self.span
    }

    fn asked(&self, fd: usize) -> Option<(c_int, i16)> {
        let events = self.given().filter(|&(k, _, _)| self.original[k].get(fd)).fold(0, |events, (k, _, _)| events | [libc::POLLIN, libc::POLLOUT, libc::POLLPRI][k]);
        (events != 0).then_some((fd as c_int, events))
    }

    fn hide(&mut self, fd: usize) {
        for (_, s, _) in self.given() {
            // SAFETY: a given set holds `span` bits.
            unsafe { put(s, fd, false) };
        }
    }

    /// Cleared by the hiding, its bits are set by the reports.
    fn unhide_after(&mut self, _fd: usize) {}

    fn give_back(&mut self, fd: usize) {
        for (k, s, _) in self.given() {
            // SAFETY: as above.
            unsafe { put(s, fd, self.original[k].get(fd)) };
        }
    }

    fn real(&mut self, now: bool) -> c_int {
        (self.real_select)(now)
    }

    fn shows(&self, fd: usize, mask: i16) -> bool {
        self.given().any(|(k, _, m)| self.original[k].get(fd) && mask & m != 0)
    }

    fn report(&mut self, fd: usize, mask: i16) -> c_int {
        let mut added = 0;
        for (k, s, m) in self.given() {
            // SAFETY: as above.
            if self.original[k].get(fd) && mask & m != 0 && !unsafe { bit(s, fd) } {
                // SAFETY: as above.
                unsafe { put(s, fd, true) };
                added += 1;
            }
        }
        added
    }

    fn clear_real(&mut self) {
        let words = self.span.div_ceil(64);
        for (_, s, _) in self.given() {
            // SAFETY: a given set holds `span` bits.
            unsafe { std::slice::from_raw_parts_mut(s.cast::<u64>(), words) }.fill(0);
        }
    }

    fn restore(&mut self) {
        let words = self.span.div_ceil(64);
        for k in 0..3 {
            if !self.sets[k].is_null() {
                // SAFETY: as above.
                unsafe { std::slice::from_raw_parts_mut(self.sets[k].cast::<u64>(), words) }.copy_from_slice(&self.original[k].words()[..words]);
            }
        }
    }
}

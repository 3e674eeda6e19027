//! select / pselect (spec §9): the sets are read here; what the wait
//! reports is readiness.rs's, the same for every wait. Select counts a
//! descriptor once per set it is reported in, reads POLLIN, POLLHUP and
//! POLLERR as readable, POLLOUT and POLLERR as writable and POLLPRI as an
//! exception, and on any error leaves the sets as they were given.
//! A select that would wait on other files only, by the thread that
//! deferred a socket, starts that socket (`syn::before_blocking`).

use super::attention;
use super::syn;
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
unsafe fn any_attention(n: c_int, sets: [*mut fd_set; 3], waits: impl FnOnce() -> bool) -> Option<&'static Entry> {
    if !crate::fdtable::any_tracked() {
        return None;
    }
    // SAFETY: the caller's contract.
    let found = unsafe { attention_in(n, sets) };
    if found.is_none() && syn::any_deferred() && waits() {
        // SAFETY: as above.
        syn::before_blocking(|| unsafe { nothing_ready(n, sets) });
    }
    found
}

/// # Safety
/// As for `any_attention`.
#[inline(always)]
unsafe fn attention_in(n: c_int, sets: [*mut fd_set; 3]) -> Option<&'static Entry> {
    if n <= 0 || sets.iter().all(|s| s.is_null()) {
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
        let asked = sets.iter().any(|&s| unsafe { raw_bit(s, fd) });
        asked.then(|| attention(fd as c_int)).flatten()
    })
}

/// A select of these sets would find nothing ready now (asked on copies,
/// the program's sets untouched).
///
/// # Safety
/// As for `any_attention`.
unsafe fn nothing_ready(n: c_int, sets: [*mut fd_set; 3]) -> bool {
    if n > libc::FD_SETSIZE as c_int {
        return false;
    }
    let bytes = n.max(0) as usize / 8 + 1;
    // SAFETY: an all-zero fd_set is valid.
    let mut copies: [fd_set; 3] = unsafe { std::mem::zeroed() };
    let mut given = [std::ptr::null_mut::<fd_set>(); 3];
    for (i, &s) in sets.iter().enumerate() {
        if s.is_null() {
            continue;
        }
        if !crate::kernel::readable(s.cast(), bytes.min(std::mem::size_of::<fd_set>())) {
            return false;
        }
        // SAFETY: readable for `bytes` (checked), within both sets.
        unsafe { std::ptr::copy_nonoverlapping(s.cast::<u8>(), (&raw mut copies[i]).cast::<u8>(), bytes.min(std::mem::size_of::<fd_set>())) };
        given[i] = &raw mut copies[i];
    }
    let mut now = timeval { tv_sec: 0, tv_usec: 0 };
    // SAFETY: local sets and timeout.
    unsafe { crate::real::select(n, given[0], given[1], given[2], &mut now) == 0 }
}

/// A select timeout that lets the call wait (none, or not zero).
fn select_waits(timeout: *const timeval) -> bool {
    // SAFETY: null, or readable (checked).
    timeout.is_null() || (crate::kernel::readable(timeout.cast(), std::mem::size_of::<timeval>()) && unsafe { (*timeout).tv_sec != 0 || (*timeout).tv_usec != 0 })
}

/// Bit `fd` of a set the caller gave (false for a NULL set).
///
/// # Safety
/// `set` is null or valid past bit `fd`.
unsafe fn raw_bit(set: *const fd_set, fd: usize) -> bool {
    // SAFETY: the caller's contract; a set is an array of longs.
    !set.is_null() && bit(unsafe { std::slice::from_raw_parts(set.cast::<u64>(), fd / 64 + 1) }, fd)
}

fn bit(set: &[u64], fd: usize) -> bool {
    set[fd / 64] & (1 << (fd % 64)) != 0
}

fn put(set: &mut [u64], fd: usize, on: bool) {
    if on {
        set[fd / 64] |= 1 << (fd % 64);
    } else {
        set[fd / 64] &= !(1 << (fd % 64));
    }
}

export_tracked! {
    fn select(n: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, timeout: *mut timeval) -> c_int,
    // SAFETY: select's contract for the sets.
    if let Some(_entry) = unsafe { any_attention(n, [r, w, e], || select_waits(timeout)) } => {
        // SAFETY: as above.
        let caller_waits = timeout.is_null() || unsafe { (*timeout).tv_sec != 0 || (*timeout).tv_usec != 0 };
        // SAFETY: as above; the real select gets the same sets (and a zero
        // timeout of its own when it must not wait).
        Done(unsafe {
            select_tracked(n, [r, w, e], caller_waits, |[r, w, e], now| {
                let mut zero = timeval { tv_sec: 0, tv_usec: 0 };
                crate::real::select(n, r, w, e, if now { &mut zero } else { timeout })
            })
        })
    }

    fn pselect(n: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, timeout: *const timespec, mask: *const sigset_t) -> c_int,
    // SAFETY: as for select.
    if let Some(_entry) = unsafe { any_attention(n, [r, w, e], || super::waits_checked(timeout)) } => {
        const NOW: timespec = timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: as for select.
        Done(unsafe { select_tracked(n, [r, w, e], super::waits(timeout), |[r, w, e], now| crate::real::pselect(n, r, w, e, if now { &NOW } else { timeout }, mask)) })
    }
}

/// The sets become slices here, the real select getting pointers made
/// from them again: no raw pointer goes further.
///
/// # Safety
/// select's contract for the sets (checked readable by `any_attention`).
unsafe fn select_tracked(
    n: c_int,
    sets: [*mut fd_set; 3],
    caller_waits: bool,
    real_select: impl Fn([*mut fd_set; 3], bool) -> c_int,
) -> crate::errno::SysResult<c_int> {
    let span = span(n);
    let words = span.div_ceil(64);
    // SAFETY: a set given holds `n` bits (select's contract), `span` <= n.
    let sets = sets.map(|s| (!s.is_null()).then(|| unsafe { std::slice::from_raw_parts_mut(s.cast::<u64>(), words) }));
    // The sets as the caller gave them: put back on an error, or when a
    // retried reset starts the wait over.
    let original = [0, 1, 2].map(|k| {
        let mut copy = Bits::new(span);
        if let Some(set) = &sets[k] {
            copy.words()[..words].copy_from_slice(set);
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
struct SelectSets<'a, F> {
    span: usize,
    /// Read, write, except, as far as libtfo looks; each may be NULL.
    sets: [Option<&'a mut [u64]>; 3],
    original: [Bits; 3],
    real_select: F,
}

/// What a descriptor ready in each set reports, as poll's events.
const REPORTS: [i16; 3] = [IN_SET, OUT_SET, EX_SET];
/// What asking for a descriptor in each set asks, as poll's events.
const ASKS: [i16; 3] = [libc::POLLIN, libc::POLLOUT, libc::POLLPRI];

impl<F: Fn([*mut fd_set; 3], bool) -> c_int> readiness::Slots for SelectSets<'_, F> {
    fn count(&self) -> usize {
        self.span
    }

    fn asked(&self, fd: usize) -> Option<(c_int, i16)> {
        let events = (0..3).filter(|&k| self.sets[k].is_some() && self.original[k].get(fd)).fold(0, |events, k| events | ASKS[k]);
        (events != 0).then_some((fd as c_int, events))
    }

    fn hide(&mut self, fd: usize) {
        for set in self.sets.iter_mut().flatten() {
            put(set, fd, false);
        }
    }

    /// Cleared by the hiding, its bits are set by the reports.
    fn unhide_after(&mut self, _fd: usize) {}

    fn give_back(&mut self, fd: usize) {
        for (set, original) in self.sets.iter_mut().zip(&self.original) {
            if let Some(set) = set {
                put(set, fd, original.get(fd));
            }
        }
    }

    fn real(&mut self, now: bool) -> c_int {
        let pointers = self.sets.each_mut().map(|s| s.as_deref_mut().map_or(std::ptr::null_mut(), |s| s.as_mut_ptr().cast::<fd_set>()));
        (self.real_select)(pointers, now)
    }

    /// The probe cleared every bit it found not ready: the wait that
    /// follows must ask for this descriptor again.
    fn ask_again(&mut self, fd: usize) {
        self.give_back(fd);
    }

    fn shows(&self, fd: usize, mask: i16) -> bool {
        (0..3).any(|k| self.sets[k].is_some() && self.original[k].get(fd) && mask & REPORTS[k] != 0)
    }

    fn report(&mut self, fd: usize, mask: i16) -> c_int {
        let mut added = 0;
        for ((set, original), reports) in self.sets.iter_mut().zip(&self.original).zip(REPORTS) {
            if let Some(set) = set.as_deref_mut().filter(|set| original.get(fd) && mask & reports != 0 && !bit(set, fd)) {
                put(set, fd, true);
                added += 1;
            }
        }
        added
    }

    fn clear_real(&mut self) {
        for set in self.sets.iter_mut().flatten() {
            set.fill(0);
        }
    }

    fn restore(&mut self) {
        for (set, original) in self.sets.iter_mut().zip(self.original.iter_mut()) {
            if let Some(set) = set {
                let words = set.len();
                set.copy_from_slice(&original.words()[..words]);
            }
        }
    }
}

//! select / pselect, by poll's rules (poll.rs): before its SYN leaves, an
//! emulated deferred socket is writable and nothing else, while the
//! unconnected socket under it would also be readable (POLLHUP counts as
//! readable), so such sockets are taken out of the sets given to the real
//! call and answered here; in auto mode a select that would wait for input
//! on a deferred socket starts its connection first, as does one that would
//! wait on other files only, by the thread that deferred a socket; an
//! outcome to see is looked at around the wait.

use super::syn::{self, Outcome};
use super::{attention, still_unsent};
use crate::errno::{check, SysResult};
use crate::export::Done;
use crate::fdtable::Entry;
use crate::state::Engine;
use crate::stats::Counter;
use libc::{c_int, fd_set, sigset_t, timespec, timeval};

/// The first socket among the `n` fds of the sets libtfo must answer for.
///
/// # Safety
/// select's contract: each set is null or valid.
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
    // A set the kernel cannot read gets its EFAULT from the real call.
    let bytes = (n.min(libc::FD_SETSIZE as c_int) as usize).div_ceil(8);
    if sets.iter().any(|&s| !s.is_null() && !crate::kernel::readable(s.cast(), bytes)) {
        return None;
    }
    (0..n.min(libc::FD_SETSIZE as c_int)).find_map(|fd| {
        // SAFETY: select's contract for the sets.
        let asked = sets.iter().any(|&s| !s.is_null() && unsafe { libc::FD_ISSET(fd, s) });
        asked.then(|| attention(fd)).flatten()
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

export_fd! {
    fn select(n: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, timeout: *mut timeval) -> c_int,
    // SAFETY: select's contract for the sets.
    if let Some(_entry) = unsafe { any_attention(n, [r, w, e], || select_waits(timeout)) } => {
        // SAFETY: as above; the real select gets the same sets (and a zero
        // timeout of its own when it must not wait).
        Done(unsafe {
            let caller_waits = timeout.is_null() || (*timeout).tv_sec != 0 || (*timeout).tv_usec != 0;
            select_tracked(n, [r, w, e], caller_waits, |wait| {
                let mut now = timeval { tv_sec: 0, tv_usec: 0 };
                crate::real::select(n, r, w, e, if wait { timeout } else { &mut now })
            })
        })
    }

    fn pselect(n: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, timeout: *const timespec, mask: *const sigset_t) -> c_int,
    // SAFETY: as for select.
    if let Some(_entry) = unsafe { any_attention(n, [r, w, e], || super::waits_checked(timeout)) } => {
        const NOW: timespec = timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: as for select.
        Done(unsafe { select_tracked(n, [r, w, e], super::waits(timeout), |wait| crate::real::pselect(n, r, w, e, if wait { timeout } else { &NOW }, mask)) })
    }
}

/// # Safety
/// select's contract for the sets.
unsafe fn select_tracked(n: c_int, sets: [*mut fd_set; 3], caller_waits: bool, real_select: impl Fn(bool) -> c_int) -> SysResult<c_int> {
    // The sets as the caller gave them: a retried reset starts over.
    // SAFETY: each set is null or valid.
    let original: [Option<fd_set>; 3] = sets.map(|s| (!s.is_null()).then(|| unsafe { *s }));
    loop {
        // SAFETY: as above.
        let (result, retried) = unsafe { select_once(n, sets, &original, caller_waits, &real_select) };
        if !retried || result.is_err() {
            return result;
        }
        for (s, o) in sets.iter().zip(&original) {
            if let Some(o) = o {
                // SAFETY: as above.
                unsafe { **s = *o };
            }
        }
    }
}

/// # Safety
/// As for `select_tracked`.
unsafe fn select_once(n: c_int, [r, w, e]: [*mut fd_set; 3], original: &[Option<fd_set>; 3], caller_waits: bool, real_select: &impl Fn(bool) -> c_int) -> (SysResult<c_int>, bool) {
    let n = n.min(libc::FD_SETSIZE as c_int);
    // SAFETY: every FD_* below works on a set that is non-null (checked) and
    // valid (select's contract), or on a local set.
    unsafe {
        let isset = |s: *mut fd_set, fd| !s.is_null() && libc::FD_ISSET(fd, s);
        // Emulated deferred sockets the caller asked about for writing: all
        // ready; for reading: only with a disconnect's error pending
        // (POLLERR) or the reading side shut (POLLIN).
        let mut writable: fd_set = std::mem::zeroed();
        let mut readable: fd_set = std::mem::zeroed();
        let mut kicks: fd_set = std::mem::zeroed();
        let mut hidden: fd_set = std::mem::zeroed();
        let (mut ready, mut any_kick) = (0, false);
        for fd in 0..n {
            let wanted = [r, w, e].iter().any(|&s| isset(s, fd));
            let Some(entry) = attention(fd).filter(|_| wanted) else { continue };
            if entry.conn.is_confirming() {
                syn::resolve(fd, entry, true);
            }
            if !entry.conn.is_unsent() {
                continue;
            }
            if isset(r, fd) && syn::wait_kicks(entry, caller_waits) {
                libc::FD_SET(fd, &mut kicks);
                any_kick = true;
            }
            if entry.conn.engine() != Engine::Emulated || !still_unsent(fd, entry) {
                continue;
            }
            if isset(w, fd) {
                libc::FD_SET(fd, &mut writable);
                ready += 1;
            }
            let input = super::poll::deferred_mask(entry) & libc::POLLIN != 0;
            if isset(r, fd) && (entry.conn.pending_error() != 0 || input) {
                libc::FD_SET(fd, &mut readable);
                ready += 1;
            }
            libc::FD_SET(fd, &mut hidden);
            for s in [r, w, e] {
                if !s.is_null() {
                    libc::FD_CLR(fd, s);
                }
            }
        }
        let result = if ready > 0 {
            check(real_select(false))
        } else if any_kick {
            // The sets are changed by a select: probe on copies.
            let copies: [Option<fd_set>; 3] = [r, w, e].map(|s| (!s.is_null()).then(|| *s));
            match check(real_select(false)) {
                Ok(0) => {
                    for (s, copy) in [r, w, e].iter().zip(&copies) {
                        if let Some(copy) = copy {
                            **s = *copy;
                        }
                    }
                    for fd in 0..n {
                        if !libc::FD_ISSET(fd, &kicks) {
                            continue;
                        }
                        if let Some(entry) = attention(fd) {
                            syn::kick(fd, entry, Counter::KicksWait);
                        }
                        // Kicked: an ordinary connecting socket, given back
                        // to the real select as the caller asked for it.
                        for (s, o) in [r, w, e].iter().zip(original) {
                            if o.as_ref().is_some_and(|o| libc::FD_ISSET(fd, o)) {
                                libc::FD_SET(fd, *s);
                            }
                        }
                    }
                    check(real_select(true))
                }
                other => other,
            }
        } else {
            check(real_select(true))
        };
        let mut retried = false;
        if result.is_ok() {
            for fd in 0..n {
                if let Some(entry) = attention(fd).filter(|e| e.conn.is_confirming()) {
                    retried |= syn::resolve(fd, entry, true) == Outcome::Retried;
                }
            }
        }
        if result.is_err() && ready == 0 {
            return (result, retried);
        }
        if result.is_err() {
            // Only the deferred sockets are known ready; report just them.
            for s in [r, e] {
                if !s.is_null() {
                    libc::FD_ZERO(s);
                }
            }
            libc::FD_ZERO(w);
        }
        for fd in 0..n {
            if libc::FD_ISSET(fd, &writable) {
                libc::FD_SET(fd, w);
            }
            if libc::FD_ISSET(fd, &readable) {
                libc::FD_SET(fd, r);
            }
        }
        // A disconnected socket's error, held by libtfo rather than the
        // socket, is POLLERR: readable and writable to select, even where
        // the socket itself is not writable (TCP_NOTSENT_LOWAT).
        if result.is_ok() {
            for fd in (0..n).filter(|&fd| !libc::FD_ISSET(fd, &hidden)) {
                let Some(entry) = attention(fd) else { continue };
                if entry.conn.pending_error() == 0 || entry.conn.has_flag(crate::state::FLAG_LISTENING) {
                    continue;
                }
                for (s, o) in [r, w].into_iter().zip(original) {
                    if o.as_ref().is_some_and(|o| libc::FD_ISSET(fd, o)) && !libc::FD_ISSET(fd, s) {
                        libc::FD_SET(fd, s);
                        ready += 1;
                    }
                }
            }
        }
        (Ok(result.unwrap_or(0).max(0) + ready), retried)
    }
}

//! select / pselect. As for poll: before its SYN leaves, a deferred socket
//! is writable and nothing else, while the unconnected socket under it would
//! also be readable (POLLHUP counts as readable). Deferred sockets are taken
//! out of the sets given to the real call and answered here.

use super::{attention, still_unsent, unsent};
use crate::deferred::Socket;
use crate::real;
use libc::{c_int, fd_set, sigset_t, timespec, timeval};

/// The first socket among the `n` fds of the sets libtfo must answer for.
#[inline(always)]
unsafe fn any_attention(n: c_int, sets: [*mut fd_set; 3]) -> Option<&'static Socket> {
    if n <= 0 || sets.iter().all(|s| s.is_null()) {
        return None;
    }
    (0..n.min(libc::FD_SETSIZE as c_int)).find_map(|fd| {
        sets.iter().any(|&s| !s.is_null() && libc::FD_ISSET(fd, s)).then(|| attention(fd)).flatten()
    })
}

export_fd! {
    fn select(n: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, timeout: *mut timeval) -> c_int,
    if let Some(_socket) = any_attention(n, [r, w, e]) => {
        let mut now = timeval { tv_sec: 0, tv_usec: 0 };
        hide_deferred(n, [r, w, e], |ready| real::select(n, r, w, e, if ready { &mut now } else { timeout }))
    }

    fn pselect(n: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, timeout: *const timespec, mask: *const sigset_t) -> c_int,
    if let Some(_socket) = any_attention(n, [r, w, e]) => {
        const NOW: timespec = timespec { tv_sec: 0, tv_nsec: 0 };
        hide_deferred(n, [r, w, e], |ready| real::pselect(n, r, w, e, if ready { &NOW } else { timeout }, mask))
    }
}

unsafe fn hide_deferred(n: c_int, [r, w, e]: [*mut fd_set; 3], real_select: impl FnOnce(bool) -> c_int) -> c_int {
    let saved = crate::errno::Saved::take();
    let n = n.min(libc::FD_SETSIZE as c_int);
    // Deferred sockets the caller asked about for writing: all ready; for
    // reading: only with a disconnect's error pending (POLLERR).
    let mut writable: fd_set = std::mem::zeroed();
    let mut readable: fd_set = std::mem::zeroed();
    let mut ready = 0;
    for fd in 0..n {
        let wanted = [r, w, e].iter().any(|&s| !s.is_null() && libc::FD_ISSET(fd, s));
        let Some(socket) = unsent(fd).filter(|socket| wanted && still_unsent(fd, socket)) else { continue };
        if !w.is_null() && libc::FD_ISSET(fd, w) {
            libc::FD_SET(fd, &mut writable);
            ready += 1;
        }
        if !r.is_null() && libc::FD_ISSET(fd, r) && socket.pending_error() != 0 {
            libc::FD_SET(fd, &mut readable);
            ready += 1;
        }
        for s in [r, w, e] {
            if !s.is_null() {
                libc::FD_CLR(fd, s);
            }
        }
    }
    saved.restore(());
    let result = real_select(ready > 0);
    if result < 0 && ready == 0 {
        return result;
    }
    if result < 0 {
        saved.restore(());
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
    result.max(0) + ready
}

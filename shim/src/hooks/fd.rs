//! fd lifetime: close forgets the fd, dup copies share the socket's (or
//! the epoll instance's) state, and calls that hand out a new fd give its
//! number a new generation and drop whatever a stale number carried (it may
//! have been closed behind libtfo's back: close_range, raw syscalls).
//! `socket()` also marks new TCP sockets as auto-mode candidates, so
//! `connect()` knows them without a system call, and `epoll_create` marks
//! epoll instances, so their dups are followed.

use super::syn;
use crate::config::{self, Mode};
use crate::export::Real;
use crate::{fdtable, fetch, kernel};
use libc::{c_int, sockaddr, socklen_t};

/// Whatever `fd` pointed to is gone: the kernel just handed it out anew.
#[inline(always)]
fn fresh(fd: c_int, tcp_candidate: bool) -> c_int {
    if fd >= 0 {
        fdtable::forget(fd);
        fdtable::renumber(fd, tcp_candidate);
    }
    fd
}

/// `copy` is a duplicate of `fd` (when the call succeeded). A TCP socket
/// that may defer later gets its entry now, so that both numbers share
/// whatever happens to the socket through either.
#[inline(always)]
fn duplicated(fd: c_int, copy: c_int) -> c_int {
    if copy >= 0 && copy != fd {
        let candidate = fdtable::is_candidate(fd);
        if fdtable::lookup(fd).is_none() && fdtable::may_defer(fd) {
            // Through hooks::mark: a fork must be seen from now on. The
            // epoll registrations made through `fd` so far become the
            // entry's, whichever number defers the socket later.
            if let Some(entry) = super::mark(fd) {
                super::registrations::adopt(fd, entry);
            }
        } else if fdtable::lookup(fd).is_none() && fdtable::is_epoll(fd) {
            // An epoll instance: registrations made through one number and
            // waits through the other (mio's Registry::try_clone) must find
            // the same recorded registrations, so both share one entry.
            super::mark(fd);
        }
        // Whatever `copy` was before, the kernel closed it (a held epoll
        // registration moves to a dup left open, as at close()).
        if let Some(closed) = fdtable::lookup(copy) {
            super::registrations::before_close(copy, closed);
        }
        fdtable::renumber(copy, candidate);
        fdtable::share(fd, copy);
    }
    copy
}

/// A new epoll instance: its dups are followed (see `duplicated`).
fn epoll_instance(fd: c_int) {
    if fd >= 0 && config::get().mode != Mode::Off {
        fdtable::note_epoll(fd);
    }
}

fn is_dup(cmd: c_int) -> bool {
    cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC
}

/// A TCP socket in the making: it may defer later (auto mode, or the
/// option), so its dups and epoll registrations are followed.
fn is_tcp(domain: c_int, ty: c_int, protocol: c_int) -> bool {
    matches!(domain, libc::AF_INET | libc::AF_INET6)
        && ty & 0xf == libc::SOCK_STREAM
        && matches!(protocol, 0 | libc::IPPROTO_TCP)
        && config::get().mode != Mode::Off
}

/// What close() finds on the fd.
pub enum CloseTarget {
    Tracked(&'static fdtable::Entry),
    /// The program's socket beside a cookie fetch of libtfo's (fetch.rs).
    Companion,
}

#[inline(always)]
fn close_target(fd: c_int) -> Option<CloseTarget> {
    match fdtable::lookup(fd) {
        Some(entry) => Some(CloseTarget::Tracked(entry)),
        None => fetch::is_companion(fd).then_some(CloseTarget::Companion),
    }
}

export_fd! {
    fn close(fd: c_int) -> c_int,
    if let Some(target: CloseTarget) = close_target(fd) => {
        // Before it goes: its handshake's answer is what a cookie fetch
        // beside it is judged against.
        fetch::reap(fetch::Moment::Closing(fd));
        let CloseTarget::Tracked(entry) = target else { return Real };
        super::follow(fd, entry);
        if entry.conn.is_confirming() {
            // A dropped SYN is still worth remembering; no retry on the way out.
            syn::resolve(fd, entry, false);
        }
        super::syn::settle_before_close(entry);
        super::registrations::before_close(fd, entry);
        // Forget first: once the number is free, a new socket may get it.
        fdtable::forget(fd);
        Real
    }
}

/// close_range(2)'s flag that only marks the fds close-on-exec.
const CLOSE_RANGE_CLOEXEC: c_int = 4;

/// Forgets the tracked fds in `first..=last` (they are being closed).
fn forget_range(first: u32, last: u32) {
    let highest = fdtable::highest();
    if highest < 0 {
        return;
    }
    for fd in first..=last.min(highest as u32) {
        let fd = fd as c_int;
        // As close() does: a held epoll registration moves to a dup left
        // open (one in the range is forgotten in its turn).
        if let Some(entry) = fdtable::lookup(fd) {
            super::syn::settle_before_close(entry);
            super::registrations::before_close(fd, entry);
        }
        fdtable::forget(fd);
    }
}

export! {
    /// Closes every fd in a range, tracked ones included, without close().
    fn close_range(first: libc::c_uint, last: libc::c_uint, flags: c_int) -> c_int {
        if flags & CLOSE_RANGE_CLOEXEC == 0 {
            forget_range(first, last);
        }
        Real
    }

    /// void in C: the value returned here is never read.
    fn closefrom(lowfd: c_int) -> c_int {
        forget_range(lowfd.max(0) as u32, u32::MAX);
        Real
    }

    fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
        // SAFETY: the caller's arguments.
        let fd = unsafe { crate::real::socket(domain, ty, protocol) };
        fresh(fd, is_tcp(domain, ty, protocol));
        crate::export::Done(crate::errno::check(fd))
    }

    fn epoll_create(size: c_int) -> c_int {
        // SAFETY: the caller's arguments.
        let fd = unsafe { crate::real::epoll_create(size) };
        epoll_instance(fresh(fd, false));
        crate::export::Done(crate::errno::check(fd))
    }

    fn epoll_create1(flags: c_int) -> c_int {
        // SAFETY: the caller's arguments.
        let fd = unsafe { crate::real::epoll_create1(flags) };
        epoll_instance(fresh(fd, false));
        crate::export::Done(crate::errno::check(fd))
    }

    fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
        // SAFETY: the caller's arguments.
        let new = unsafe { crate::real::accept(fd, addr, len) };
        crate::export::Done(crate::errno::check(fresh(new, false)))
    }

    fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int {
        // SAFETY: the caller's arguments.
        let new = unsafe { crate::real::accept4(fd, addr, len, flags) };
        crate::export::Done(crate::errno::check(fresh(new, false)))
    }

    fn dup(fd: c_int) -> c_int {
        // SAFETY: the caller's arguments.
        let copy = unsafe { crate::real::dup(fd) };
        crate::export::Done(crate::errno::check(duplicated(fd, copy)))
    }

    fn dup2(fd: c_int, to: c_int) -> c_int {
        // SAFETY: the caller's arguments.
        let copy = unsafe { crate::real::dup2(fd, to) };
        crate::export::Done(crate::errno::check(duplicated(fd, copy)))
    }

    fn dup3(fd: c_int, to: c_int, flags: c_int) -> c_int {
        // SAFETY: the caller's arguments.
        let copy = unsafe { crate::real::dup3(fd, to, flags) };
        crate::export::Done(crate::errno::check(duplicated(fd, copy)))
    }
}

export_fd! {
    /// fcntl is variadic in C; its third argument is at most pointer-sized
    /// and passed in the same register either way on Linux x86_64/aarch64.
    fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int,
    if let Some(_dup: ()) = (is_dup(cmd) && (fdtable::lookup(fd).is_some() || fdtable::followed_by_dups(fd))).then_some(()) => {
        // SAFETY: the caller's arguments.
        let copy = unsafe { crate::real::fcntl(fd, cmd, arg) };
        crate::export::Done(crate::errno::check(duplicated(fd, copy)))
    }

    fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int,
    if let Some(_dup: ()) = (is_dup(cmd) && (fdtable::lookup(fd).is_some() || fdtable::followed_by_dups(fd))).then_some(()) => {
        // SAFETY: the caller's arguments.
        let copy = unsafe { crate::real::fcntl64(fd, cmd, arg) };
        crate::export::Done(crate::errno::check(duplicated(fd, copy)))
    }
}

/// Keeps libtfo's state consistent across fork(). Installed before the
/// first fd is tracked (see `hooks::track`), not at load: until then there
/// is nothing to keep, and a process that never tracks one (most under
/// /etc/ld.so.preload) does not pay for the registration.
pub fn install_fork_handlers() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    // SAFETY: the handlers are plain extern "C" functions that live as long
    // as the library.
    INSTALLED.call_once(|| unsafe {
        libc::pthread_atfork(Some(prepare_fork), Some(parent_after_fork), Some(child_after_fork));
    });
}

extern "C" fn prepare_fork() {
    let saved = crate::errno::get();
    super::epoll::before_fork();
    for fd in 0..=fdtable::highest() {
        if let Some(entry) = fdtable::lookup(fd) {
            entry.conn.mark_before_fork(fd);
            entry.conn.share_for_fork();
        }
    }
    crate::errno::set(saved);
}

extern "C" fn parent_after_fork() {
    let saved = crate::errno::get();
    crate::state::note_fork();
    super::epoll::after_fork_in_parent();
    crate::errno::set(saved);
}

/// In the child only the forking thread exists: a transition another thread
/// owned would never finish. Settle each from the kernel socket's state.
extern "C" fn child_after_fork() {
    let saved = crate::errno::get();
    crate::state::note_fork();
    crate::timer::after_fork_in_child();
    super::epoll::after_fork_in_child();
    for fd in 0..=fdtable::highest() {
        // A shared state's transition is the parent thread's to finish.
        let Some(entry) = fdtable::lookup(fd).filter(|e| !e.conn.is_shared() && e.conn.is_mid_transition()) else { continue };
        entry.conn.settle_after_fork(kernel::tcp_state(fd) != Some(kernel::TCP_CLOSE));
    }
    crate::errno::set(saved);
}

//! The intercepted calls, one module per family. Each export is a few lines:
//! untracked fds go straight to libc; tracked ones go to the logic here.
//! [`syn`] holds what several families share: sending the deferred SYN (the
//! first write, or a kick without data) and acting on its outcome.

/// `export_fd!` whose guard yields a tracked socket's entry:
/// `fn name(fd, args) -> ret, if let Some(entry) = guard => { body }`. The
/// body first follows what another process did to the socket ([`follow`]).
macro_rules! export_tracked {
    ($( $(#[$meta:meta])* fn $name:ident($fd:ident : $fd_ty:ty $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty,
        if let Some($found:ident) = $guard:expr => $body:block )*) => {
        export_fd! {$(
            $(#[$meta])* fn $name($fd: $fd_ty $(, $arg: $ty)*) -> $ret,
            if let Some($found: &'static $crate::fdtable::Entry) = $guard => {
                // In the cold body, not the guard: the fast path stays
                // frameless (a call in the guard costs every call its frame).
                $crate::hooks::follow($fd, $found);
                $body
            }
        )*}
    };
}

mod connect;
mod epoll;
mod exec;
mod fd;
mod listen;
mod poll;
mod read;
mod readiness;
mod registrations;
mod select;
mod sockopt;
mod syn;
mod write;

use fd::install_fork_handlers;


use crate::fdtable::{self, Entry};
use crate::kernel::{self, TCP_CLOSE};
use crate::state::Engine;
use libc::c_int;

/// Starts tracking `fd` (fdtable::track), the fork handlers installed first.
pub fn track(fd: c_int) -> Option<&'static Entry> {
    install_fork_handlers();
    fdtable::track(fd)
}

/// The entry of `fd`, tracked first if need be (fdtable::mark), the fork
/// handlers installed first.
pub fn mark(fd: c_int) -> Option<&'static Entry> {
    install_fork_handlers();
    fdtable::mark(fd)
}

/// The tracked entry behind `fd` if libtfo has something to do on it: its
/// SYN has not left, its outcome is unknown, or an error is pending.
#[inline(always)]
pub fn attention(fd: c_int) -> Option<&'static Entry> {
    fdtable::lookup(fd).filter(|e| e.conn.needs_attention())
}

/// The entry behind `fd` if its SYN has not left.
#[inline(always)]
pub fn unsent(fd: c_int) -> Option<&'static Entry> {
    fdtable::lookup(fd).filter(|e| e.conn.is_unsent())
}

/// A deferred socket shared with another process since a fork catches up
/// with what that process did to it (`Connection::catch_up`). Called first
/// by every tracked hook body (export_fd!) and by `still_unsent`.
/// `first` is the export's first argument: a no-op unless it is an fd (a
/// type test the compiler settles).
#[inline]
pub fn follow<T: Copy + 'static>(first: T, entry: &Entry) {
    if let Some(&fd) = (&first as &dyn std::any::Any).downcast_ref::<c_int>() {
        if entry.conn.may_be_disconnected_elsewhere() {
            entry.conn.catch_up(fd);
        }
        // An error a disconnect left is gone once a new SYN has left
        // (tcp_connect_init clears sk_err): the program's own MSG_FASTOPEN,
        // in another thread or a process sharing the socket, still blocked.
        // (A listener keeps it: listen() does not clear sk_err.)
        let conn = &entry.conn;
        if conn.phase() == crate::state::Phase::Armed
            && conn.pending_error() != 0
            && !conn.has_flag(crate::state::FLAG_LISTENING)
            && kernel::tcp_state(fd).is_some_and(|s| s != TCP_CLOSE) {
            conn.drop_held_error();
        }
    }
}

/// The bytes an iovec array describes: 0 when there are none, `usize::MAX`
/// when the kernel will refuse the array (it answers then).
pub fn vector_len(iov: *const libc::iovec, count: c_int) -> usize {
    match count {
        0 => 0,
        c if !(0..=libc::UIO_MAXIOV).contains(&c) => usize::MAX,
        c if !kernel::readable(iov.cast(), c as usize * std::mem::size_of::<libc::iovec>()) => usize::MAX,
        // SAFETY: readable for `count` iovecs (checked above).
        c => unsafe { std::slice::from_raw_parts(iov, c as usize) }.iter().fold(0usize, |a, v| a.saturating_add(v.iov_len)),
    }
}

/// preadv2/pwritev2's RWF_NOWAIT acts as MSG_DONTWAIT on a socket.
pub fn rwf_flags(flags: c_int) -> c_int {
    if flags & libc::RWF_NOWAIT != 0 {
        libc::MSG_DONTWAIT
    } else {
        0
    }
}

/// A timeout that lets the call wait (none, or not zero).
///
/// # Safety
/// `timeout` is null or points to a timespec.
pub unsafe fn waits(timeout: *const libc::timespec) -> bool {
    // SAFETY: the caller's contract.
    timeout.is_null() || unsafe { (*timeout).tv_sec != 0 || (*timeout).tv_nsec != 0 }
}

/// True while the socket under a deferred entry really has sent no SYN.
/// After fork() another process may have sent the SYN of a shared socket;
/// then this process catches up (Deferred → Kernel) and says false. A
/// number closed behind libtfo's back and reused is forgotten.
pub fn still_unsent(fd: c_int, entry: &Entry) -> bool {
    // Again, though export_fd! followed already: poll, select and epoll
    // come here without it, and wait loops ask after every wake-up.
    follow(fd, entry);
    entry.conn.adopt_orphan(fd);
    if !entry.conn.is_unsent() {
        return false;
    }
    match kernel::tcp_state(fd) {
        // Not a TCP socket any more: the number was closed behind our back
        // (close_range, a raw syscall) and reused. Forget it.
        None => {
            fdtable::forget(fd);
            false
        }
        // The kernel's own deferred socket is in SYN_SENT either way; its
        // phase here is the truth (another process's write is harmless:
        // the kick or write that follows goes to the kernel).
        Some(_) if entry.conn.engine() == Engine::Kernel => true,
        Some(TCP_CLOSE) => true,
        Some(_) => {
            // Connecting cannot be seen here (the kernel socket would be
            // CLOSE), and Sending means this process's own SYN is on its way.
            entry.conn.sent_elsewhere();
            false
        }
    }
}

//! The intercepted calls, one module per family. Each export is a few lines:
//! untracked fds go straight to libc; tracked ones go to the logic here.
//! [`syn`] holds what several families share: sending the deferred SYN (the
//! first write, or a kick without data) and acting on its outcome.

mod connect;
mod epoll;
mod exec;
mod fd;
mod listen;
mod poll;
mod read;
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

/// True while the socket under a deferred entry really has sent no SYN.
/// After fork() another process may have sent the SYN of a shared socket;
/// then this process catches up (Deferred → Kernel) and says false. A
/// number closed behind libtfo's back and reused is forgotten.
pub fn still_unsent(fd: c_int, entry: &Entry) -> bool {
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

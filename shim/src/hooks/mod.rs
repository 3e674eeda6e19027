//! The intercepted calls, one module per family. Each export is a few lines:
//! untracked fds go straight to libc; tracked ones go to the logic here.

mod connect;
mod epoll;
mod exec;
mod fd;
mod poll;
mod read;
mod select;
mod sockopt;
mod write;

pub use fd::install_fork_handlers;

use crate::deferred::{Phase, Socket};
use crate::fdtable;
use crate::kernel::{self, TCP_CLOSE};
use libc::c_int;

/// The tracked socket behind `fd` if libtfo has something to do on it: its
/// SYN has not left, or an error is pending.
#[inline(always)]
pub fn attention(fd: c_int) -> Option<&'static Socket> {
    fdtable::lookup(fd).filter(|socket| socket.needs_attention())
}

/// The socket behind `fd` if its SYN has not left.
#[inline(always)]
pub fn unsent(fd: c_int) -> Option<&'static Socket> {
    fdtable::lookup(fd).filter(|socket| socket.phase().before_syn())
}

/// True while the kernel socket under a deferred one is still unconnected.
/// After fork() another process may have sent the SYN of a shared socket;
/// then this process catches up (Deferred → Kernel) and says false.
pub fn still_unsent(fd: c_int, socket: &Socket) -> bool {
    if !socket.phase().before_syn() {
        return false;
    }
    match kernel::tcp_state(fd) {
        Some(TCP_CLOSE) => return true,
        // Not a TCP socket any more: the number was closed behind our back
        // (close_range, a raw syscall) and reused. Forget it.
        None => {
            fdtable::forget(fd);
            return false;
        }
        Some(_) => {}
    }
    // Connecting cannot be seen here (the kernel socket would be CLOSE), and
    // Sending means this process's own SYN is on its way.
    let _ = socket.begin(Phase::Deferred, Phase::Kernel);
    false
}

//! fd lifetime: close forgets the fd, dup copies share the socket's state,
//! and calls that hand out a new fd drop whatever a stale number carried
//! (it may have been closed behind our back: close_range, raw syscalls).

use crate::deferred::Phase;
use crate::{fdtable, kernel, real};
use libc::{c_int, sockaddr, socklen_t};

/// Whatever `fd` pointed to is gone: the kernel just handed it out anew.
#[inline(always)]
fn fresh(fd: c_int) -> c_int {
    if fd >= 0 {
        fdtable::forget(fd);
        super::epoll::forget(fd);
    }
    fd
}

/// `copy` is a duplicate of `fd` (when the call succeeded).
#[inline(always)]
fn duplicated(fd: c_int, copy: c_int) -> c_int {
    if copy >= 0 && copy != fd {
        // Whatever `copy` was before, the kernel closed it.
        super::epoll::forget(copy);
        fdtable::share(fd, copy);
    }
    copy
}

fn is_dup(cmd: c_int) -> bool {
    cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC
}

export_fd! {
    fn close(fd: c_int) -> c_int,
    if let Some(_socket) = fdtable::lookup(fd) => {
        // Forget first: once the number is free, a new socket may get it.
        fdtable::forget(fd);
        super::epoll::forget(fd);
        real::close(fd)
    }
}

export! {
    fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
        fresh(real::socket(domain, ty, protocol))
    }

    fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
        fresh(real::accept(fd, addr, len))
    }

    fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int {
        fresh(real::accept4(fd, addr, len, flags))
    }

    fn dup(fd: c_int) -> c_int {
        duplicated(fd, real::dup(fd))
    }

    fn dup2(fd: c_int, to: c_int) -> c_int {
        duplicated(fd, real::dup2(fd, to))
    }

    fn dup3(fd: c_int, to: c_int, flags: c_int) -> c_int {
        duplicated(fd, real::dup3(fd, to, flags))
    }

}

export_fd! {
    /// fcntl is variadic in C; its third argument is at most pointer-sized
    /// and passed in the same register either way on Linux x86_64/aarch64.
    fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int,
    if let Some(_socket) = fdtable::lookup(fd).filter(|_| is_dup(cmd)) => {
        duplicated(fd, real::fcntl(fd, cmd, arg))
    }

    fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int,
    if let Some(_socket) = fdtable::lookup(fd).filter(|_| is_dup(cmd)) => {
        duplicated(fd, real::fcntl64(fd, cmd, arg))
    }
}

/// Installed once at load: keep libtfo's state consistent across fork().
pub fn install_fork_handlers() {
    // SAFETY: the handlers are plain extern "C" functions that live as long
    // as the library.
    unsafe { libc::pthread_atfork(Some(prepare_fork), Some(parent_after_fork), Some(child_after_fork)) };
}

extern "C" fn prepare_fork() {
    let saved = crate::errno::Saved::take();
    super::epoll::before_fork();
    saved.restore(())
}

extern "C" fn parent_after_fork() {
    super::epoll::after_fork_in_parent();
}

/// In the child only the forking thread exists: a transition another thread
/// owned would never finish. Settle each from the kernel socket's state.
extern "C" fn child_after_fork() {
    let saved = crate::errno::Saved::take();
    super::epoll::after_fork_in_child();
    for fd in 0..=fdtable::highest() {
        let Some(socket) = fdtable::lookup(fd) else { continue };
        match socket.phase() {
            Phase::Connecting => socket.enter(Phase::Armed),
            Phase::Sending if kernel::tcp_state(fd) == Some(kernel::TCP_CLOSE) => socket.enter(Phase::Deferred),
            Phase::Sending => socket.enter(Phase::Kernel),
            _ => {}
        }
    }
    saved.restore(())
}

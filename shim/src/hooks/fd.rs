//! fd lifetime: close forgets the fd, dup copies share the socket's state,
//! and calls that hand out a new fd drop whatever a stale number carried
//! (it may have been closed behind our back: close_range, raw syscalls).

use crate::{fdtable, real};
use libc::{c_int, sockaddr, socklen_t};

/// Whatever `fd` pointed to is gone: the kernel just handed it out anew.
#[inline(always)]
fn fresh(fd: c_int) -> c_int {
    if fd >= 0 {
        fdtable::forget(fd);
    }
    fd
}

/// `copy` is a duplicate of `fd` (when the call succeeded).
#[inline(always)]
fn duplicated(fd: c_int, copy: c_int) -> c_int {
    if copy >= 0 && copy != fd {
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

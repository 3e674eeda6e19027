//! The real libc functions behind every hook, resolved with
//! `dlsym(RTLD_NEXT)` on first use.
//!
//! Lazy resolution (not a constructor) because another library's constructor
//! may call `connect` or `write` before ours runs. Each pointer is one
//! relaxed atomic load after the first call. A symbol libc lacks makes the
//! call fail with ENOSYS instead of crashing the host; it is reported once.

use libc::{c_char, c_int, c_uint, c_void, iovec, msghdr, nfds_t, off_t, pollfd, size_t, sigset_t};
use libc::{epoll_event, fd_set, loff_t, mmsghdr, pid_t, sockaddr, socklen_t, ssize_t, timespec, timeval};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// Looks `name` (NUL-terminated) up in the objects loaded after libtfo and
/// keeps it in `slot`. A missing symbol is reported the first time only
/// (`warned`) and left unresolved (the next call asks again).
#[cold]
fn resolve(name: &'static str, slot: &AtomicPtr<c_void>, warned: &AtomicBool) -> *mut c_void {
    // SAFETY: `name` is a NUL-terminated literal; dlsym has no other precondition.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr() as *const c_char) };
    if p.is_null() {
        if !warned.swap(true, Ordering::Relaxed) {
            crate::log::warn_missing_symbol(name);
        }
    } else {
        slot.store(p, Ordering::Relaxed);
    }
    p
}

macro_rules! real_functions {
    ($( fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty; )*) => {$(
        #[inline(always)]
        #[allow(clippy::missing_safety_doc)]
        pub unsafe fn $name($($arg: $ty),*) -> $ret {
            type Real = unsafe extern "C" fn($($ty),*) -> $ret;

            /// The slot's first value: resolves the real function, then
            /// calls it. A C function, so it cannot unwind and a call to
            /// it is a plain tail call.
            #[cold]
            #[inline(never)]
            unsafe extern "C" fn first_call($($arg: $ty),*) -> $ret {
                let p = resolve(concat!(stringify!($name), "\0"), &SLOT, &WARNED);
                if p.is_null() {
                    crate::errno::set(libc::ENOSYS);
                    return <$ret as crate::errno::CResult>::FAILED;
                }
                // SAFETY: the symbol of this name in libc has exactly this C
                // signature, and the caller upholds its contract.
                unsafe { std::mem::transmute::<*mut c_void, Real>(p)($($arg),*) }
            }

            // Never null: a hook that passes a call through is a load and
            // a jump, with no test and no stack frame.
            static SLOT: AtomicPtr<c_void> = AtomicPtr::new(first_call as Real as *mut c_void);
            static WARNED: AtomicBool = AtomicBool::new(false);

            // SAFETY: SLOT holds `first_call` or the libc function of this
            // name, both of this C signature; the caller upholds its contract.
            unsafe { std::mem::transmute::<*mut c_void, Real>(SLOT.load(Ordering::Relaxed))($($arg),*) }
        }
    )*};
}

real_functions! {
    fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int;
    fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int;
    fn setsockopt(fd: c_int, level: c_int, name: c_int, val: *const c_void, len: socklen_t) -> c_int;
    fn getsockopt(fd: c_int, level: c_int, name: c_int, val: *mut c_void, len: *mut socklen_t) -> c_int;
    fn ioctl(fd: c_int, request: libc::c_ulong, arg: *mut c_void) -> c_int;
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fn listen(fd: c_int, backlog: c_int) -> c_int;
    fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t;
    fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t;
    fn sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, alen: socklen_t) -> ssize_t;
    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t;
    fn sendmmsg(fd: c_int, msgs: *mut mmsghdr, n: c_uint, flags: c_int) -> c_int;
    fn writev(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t;
    fn read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t;
    fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t;
    fn recvfrom(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) -> ssize_t;
    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t;
    fn recvmmsg(fd: c_int, msgs: *mut mmsghdr, n: c_uint, flags: c_int, timeout: *mut timespec) -> c_int;
    fn readv(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t;
    fn preadv2(fd: c_int, iov: *const iovec, n: c_int, offset: off_t, flags: c_int) -> ssize_t;
    fn preadv64v2(fd: c_int, iov: *const iovec, n: c_int, offset: off_t, flags: c_int) -> ssize_t;
    fn pwritev2(fd: c_int, iov: *const iovec, n: c_int, offset: off_t, flags: c_int) -> ssize_t;
    fn pwritev64v2(fd: c_int, iov: *const iovec, n: c_int, offset: off_t, flags: c_int) -> ssize_t;
    fn __read_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t) -> ssize_t;
    fn __recv_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int) -> ssize_t;
    fn __recvfrom_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) -> ssize_t;
    fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int;
    fn ppoll(fds: *mut pollfd, n: nfds_t, timeout: *const timespec, mask: *const sigset_t) -> c_int;
    fn __poll_chk(fds: *mut pollfd, n: nfds_t, timeout: c_int, fdslen: size_t) -> c_int;
    fn __ppoll_chk(fds: *mut pollfd, n: nfds_t, timeout: *const timespec, mask: *const sigset_t, fdslen: size_t) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int;
    fn closefrom(lowfd: c_int) -> c_int;
    fn epoll_create(size: c_int) -> c_int;
    fn epoll_create1(flags: c_int) -> c_int;
    fn dup(fd: c_int) -> c_int;
    fn dup2(fd: c_int, to: c_int) -> c_int;
    fn dup3(fd: c_int, to: c_int, flags: c_int) -> c_int;
    fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int;
    fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int;
    fn sendfile(out: c_int, inp: c_int, off: *mut off_t, count: size_t) -> ssize_t;
    fn sendfile64(out: c_int, inp: c_int, off: *mut off_t, count: size_t) -> ssize_t;
    fn shutdown(fd: c_int, how: c_int) -> c_int;
    fn splice(input: c_int, in_offset: *mut loff_t, out: c_int, out_offset: *mut loff_t, len: size_t, flags: c_uint) -> ssize_t;
    fn select(n: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, timeout: *mut timeval) -> c_int;
    fn pselect(n: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, timeout: *const timespec, mask: *const sigset_t) -> c_int;
    fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut epoll_event) -> c_int;
    fn epoll_wait(epfd: c_int, events: *mut epoll_event, max: c_int, timeout: c_int) -> c_int;
    fn epoll_pwait(epfd: c_int, events: *mut epoll_event, max: c_int, timeout: c_int, mask: *const sigset_t) -> c_int;
    fn epoll_pwait2(epfd: c_int, events: *mut epoll_event, max: c_int, timeout: *const timespec, mask: *const sigset_t) -> c_int;
    fn execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int;
    fn execv(path: *const c_char, argv: *const *const c_char) -> c_int;
    fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int;
    fn execvpe(file: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int;
    fn fexecve(fd: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int;
    fn execveat(dirfd: c_int, path: *const c_char, argv: *const *const c_char, envp: *const *const c_char, flags: c_int) -> c_int;
    fn popen(command: *const c_char, mode: *const c_char) -> *mut c_void;
    fn posix_spawn(pid: *mut pid_t, path: *const c_char, actions: *const c_void, attr: *const c_void, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    fn posix_spawnp(pid: *mut pid_t, file: *const c_char, actions: *const c_void, attr: *const c_void, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    fn system(command: *const c_char) -> c_int;
}

#[cfg(test)]
mod tests {
    use super::*;

    real_functions! {
        fn tfo_no_such_symbol_in_libc(fd: c_int) -> c_int;
    }

    #[test]
    fn a_missing_symbol_fails_with_enosys_and_is_reported_once() {
        let before = crate::log::MISSING_SYMBOL_WARNINGS.load(Ordering::Relaxed);
        for _ in 0..3 {
            crate::errno::set(0);
            // SAFETY: the stand-in fails without touching memory.
            assert_eq!(unsafe { tfo_no_such_symbol_in_libc(3) }, -1);
            assert_eq!(crate::errno::get(), libc::ENOSYS);
        }
        assert_eq!(crate::log::MISSING_SYMBOL_WARNINGS.load(Ordering::Relaxed), before + 1);
    }
}

//! The read family on a socket whose SYN has not left (spec §8): EAGAIN when
//! non-blocking; a blocking read sleeps until a write sends the SYN (then
//! reads for real) or SO_RCVTIMEO expires (EAGAIN). The kernel's unconnected
//! socket underneath would say ENOTCONN instead. A pending error (after a
//! disconnect) is reported once, as sock_error() does.

use super::{attention, still_unsent};
use crate::deferred::{Phase, Socket, Wait};
use crate::errno::{self, Saved};
use crate::{kernel, real};
use libc::{c_int, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

/// `Some(result)` when the call is answered here, `None` for the real call.
unsafe fn before_syn(fd: c_int, socket: &Socket, flags: c_int) -> Option<ssize_t> {
    if let Some(err) = socket.take_pending_error() {
        return Some(errno::fail(err));
    }
    let saved = Saved::take();
    if !still_unsent(fd, socket) {
        return saved.restore(None);
    }
    if flags & libc::MSG_DONTWAIT != 0 || kernel::is_nonblocking(fd) {
        return Some(errno::fail(libc::EAGAIN));
    }
    match socket.wait_while(Phase::before_syn, kernel::deadline(fd, libc::SO_RCVTIMEO), || still_unsent(fd, socket)) {
        Wait::Changed => saved.restore(None),
        Wait::TimedOut => Some(errno::fail(libc::EAGAIN)),
        Wait::Interrupted => Some(errno::fail(libc::EINTR)),
    }
}

macro_rules! read_hooks {
    ($( fn $name:ident($fd:ident $(, $arg:ident : $ty:ty)*) flags = $flags:expr; )*) => {
        export_fd! {$(
            fn $name($fd: c_int $(, $arg: $ty)*) -> ssize_t,
            if let Some(socket) = attention($fd) => {
                before_syn($fd, socket, $flags).unwrap_or_else(|| real::$name($fd $(, $arg)*))
            }
        )*}
    };
}

read_hooks! {
    fn read(fd, buf: *mut c_void, len: size_t) flags = 0;
    fn recv(fd, buf: *mut c_void, len: size_t, flags: c_int) flags = flags;
    fn recvfrom(fd, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) flags = flags;
    fn recvmsg(fd, msg: *mut msghdr, flags: c_int) flags = flags;
    fn readv(fd, iov: *const iovec, count: c_int) flags = 0;
    fn __read_chk(fd, buf: *mut c_void, len: size_t, buflen: size_t) flags = 0;
    fn __recv_chk(fd, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int) flags = flags;
    fn __recvfrom_chk(fd, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) flags = flags;
}

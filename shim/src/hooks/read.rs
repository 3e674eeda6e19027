//! The read family on a socket libtfo tracks.
//!
//! Explicit sockets before their SYN left (spec §8): EAGAIN when
//! non-blocking; a blocking read sleeps until a write sends the SYN (then
//! reads for real) or SO_RCVTIMEO expires (EAGAIN). The kernel's unconnected
//! socket underneath would say ENOTCONN instead. A pending error (after a
//! disconnect) is reported once, as sock_error() does.
//!
//! Auto mode: a program that reads before it writes (a server speaks
//! first: SSH, SMTP, FTP banners) must not wait on a connection that was
//! never started, so the read starts it: the SYN leaves without data, and
//! the read is the real one.

use super::syn::{self, auto_unsent, Outcome};
use super::{attention, rwf_flags, still_unsent, vector_len};
use crate::errno::Errno;
use crate::export::{Answer, Done, Real};
use crate::fdtable::Entry;
use crate::state::{Phase, Wait};
use crate::stats::Counter;
use crate::kernel;
use libc::{c_int, c_void, iovec, mmsghdr, msghdr, size_t, sockaddr, socklen_t, ssize_t, timespec};

/// Reads the kernel answers the same on a deferred socket and on the
/// unconnected one under an emulated socket: MSG_ERRQUEUE (never waits),
/// MSG_OOB (EINVAL: no urgent data) and zero-length reads (0 at once).
fn answered_by_the_kernel(flags: c_int, len: usize) -> bool {
    flags & (libc::MSG_ERRQUEUE | libc::MSG_OOB) != 0 || len == 0
}

fn before_read(fd: c_int, entry: &Entry, flags: c_int, len: usize) -> Answer<ssize_t> {
    let conn = &entry.conn;
    if !conn.is_auto() && answered_by_the_kernel(flags, len) {
        return Real;
    }
    if conn.is_auto() {
        if auto_unsent(entry) {
            syn::kick(fd, entry, Counter::KicksRead);
        } else if conn.is_confirming() && syn::resolve(fd, entry, true) == Outcome::Pending {
            return Real;
        }
        return match conn.take_pending_error() {
            Some(e) => Done(Err(e)),
            None => Real,
        };
    }
    if let Some(e) = conn.take_pending_error() {
        return Done(Err(e));
    }
    if !still_unsent(fd, entry) {
        return Real;
    }
    if flags & libc::MSG_DONTWAIT != 0 || kernel::is_nonblocking(fd) {
        return Done(Err(Errno(libc::EAGAIN)));
    }
    let unsent = |p: Phase| p.unsent();
    match conn.wait_while(unsent, kernel::deadline(fd, libc::SO_RCVTIMEO), || still_unsent(fd, entry)) {
        Wait::Changed => Real,
        Wait::TimedOut => Done(Err(Errno(libc::EAGAIN))),
        Wait::Interrupted => Done(Err(Errno(libc::EINTR))),
    }
}

fn msg_len(msg: *const msghdr) -> usize {
    if !kernel::readable(msg.cast(), std::mem::size_of::<msghdr>()) {
        return usize::MAX;
    }
    // SAFETY: readable (checked above).
    let msg = unsafe { &*msg };
    vector_len(msg.msg_iov, msg.msg_iovlen as c_int)
}

macro_rules! read_hooks {
    ($( fn $name:ident($fd:ident $(, $arg:ident : $ty:ty)*) flags = $flags:expr, len = $len:expr; )*) => {
        export_fd! {$(
            fn $name($fd: c_int $(, $arg: $ty)*) -> ssize_t,
            if let Some(entry) = attention($fd) => {
                before_read($fd, entry, $flags, $len)
            }
        )*}
    };
}

read_hooks! {
    fn read(fd, buf: *mut c_void, len: size_t) flags = 0, len = len;
    fn recv(fd, buf: *mut c_void, len: size_t, flags: c_int) flags = flags, len = len;
    fn recvfrom(fd, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) flags = flags, len = len;
    fn recvmsg(fd, msg: *mut msghdr, flags: c_int) flags = flags, len = msg_len(msg);
    fn readv(fd, iov: *const iovec, count: c_int) flags = 0, len = vector_len(iov, count);
    fn __read_chk(fd, buf: *mut c_void, len: size_t, buflen: size_t) flags = 0, len = len;
    fn __recv_chk(fd, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int) flags = flags, len = len;
    fn __recvfrom_chk(fd, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) flags = flags, len = len;
}

export_fd! {
    /// preadv2 with offset -1 is readv on a socket (another offset: ESPIPE).
    fn preadv2(fd: c_int, iov: *const iovec, count: c_int, offset: libc::off_t, flags: c_int) -> ssize_t,
    if let Some(entry) = attention(fd).filter(|_| offset == -1) => {
        before_read(fd, entry, rwf_flags(flags), vector_len(iov, count))
    }

    fn preadv64v2(fd: c_int, iov: *const iovec, count: c_int, offset: libc::off_t, flags: c_int) -> ssize_t,
    if let Some(entry) = attention(fd).filter(|_| offset == -1) => {
        before_read(fd, entry, rwf_flags(flags), vector_len(iov, count))
    }
}

export_fd! {
    fn recvmmsg(fd: c_int, msgs: *mut mmsghdr, count: libc::c_uint, flags: c_int, timeout: *mut timespec) -> c_int,
    if let Some(entry) = attention(fd) => {
        let len = if msgs.is_null() || count == 0 { usize::MAX } else { msg_len(msgs.cast_const().cast()) };
        match before_read(fd, entry, flags, len) {
            Real => Real,
            Done(r) => Done(r.map(|n| n as c_int)),
        }
    }
}

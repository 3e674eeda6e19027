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
use super::{attention, still_unsent};
use crate::errno::Errno;
use crate::export::{Answer, Done, Real};
use crate::fdtable::Entry;
use crate::state::{Phase, Wait};
use crate::stats::Counter;
use crate::kernel;
use libc::{c_int, c_void, iovec, mmsghdr, msghdr, size_t, sockaddr, socklen_t, ssize_t, timespec};

fn before_read(fd: c_int, entry: &Entry, flags: c_int) -> Answer<ssize_t> {
    let conn = &entry.conn;
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

/// What the kernel checks before a vectored read waits: the msghdr and its
/// iovecs are readable, with at most UIO_MAXIOV of them (EFAULT, EMSGSIZE,
/// EINVAL otherwise, from the real call).
fn message_ok(msg: *const msghdr) -> bool {
    if !kernel::readable(msg.cast(), std::mem::size_of::<msghdr>()) {
        return false;
    }
    // SAFETY: readable (checked above).
    let msg = unsafe { std::ptr::read_unaligned(msg) };
    vector_ok(msg.msg_iov, msg.msg_iovlen as i64)
}

fn vector_ok(iov: *const iovec, count: i64) -> bool {
    (0..=1024).contains(&count) && kernel::readable(iov.cast(), count as usize * std::mem::size_of::<iovec>())
}

macro_rules! read_hooks {
    ($( fn $name:ident($fd:ident $(, $arg:ident : $ty:ty)*) flags = $flags:expr, ok = $ok:expr; )*) => {
        export_fd! {$(
            fn $name($fd: c_int $(, $arg: $ty)*) -> ssize_t,
            if let Some(entry) = attention($fd).filter(|_| $ok) => {
                before_read($fd, entry, $flags)
            }
        )*}
    };
}

read_hooks! {
    fn read(fd, buf: *mut c_void, len: size_t) flags = 0, ok = true;
    fn recv(fd, buf: *mut c_void, len: size_t, flags: c_int) flags = flags, ok = true;
    fn recvfrom(fd, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) flags = flags, ok = true;
    fn recvmsg(fd, msg: *mut msghdr, flags: c_int) flags = flags, ok = message_ok(msg);
    fn readv(fd, iov: *const iovec, count: c_int) flags = 0, ok = vector_ok(iov, i64::from(count));
    fn __read_chk(fd, buf: *mut c_void, len: size_t, buflen: size_t) flags = 0, ok = true;
    fn __recv_chk(fd, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int) flags = flags, ok = true;
    fn __recvfrom_chk(fd, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) flags = flags, ok = true;
}

export_fd! {
    fn recvmmsg(fd: c_int, msgs: *mut mmsghdr, count: libc::c_uint, flags: c_int, timeout: *mut timespec) -> c_int,
    if let Some(entry) = attention(fd).filter(|_| count == 0 || message_ok(msgs.cast())) => {
        match before_read(fd, entry, flags) {
            Real => Real,
            Done(r) => Done(r.map(|n| n as c_int)),
        }
    }
}

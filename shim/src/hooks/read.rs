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
/// MSG_OOB (EINVAL: no urgent data), and a read(2)/readv(2) of no bytes,
/// which the VFS answers (0) before the socket sees it. (A recv of no
/// bytes does reach TCP, which waits for one byte.)
fn answered_by_the_kernel(read: Read) -> bool {
    read.flags & (libc::MSG_ERRQUEUE | libc::MSG_OOB) != 0 || (read.len == 0 && read.vfs)
}

/// What a read call asks for.
#[derive(Clone, Copy)]
struct Read {
    flags: c_int,
    /// Bytes wanted (`usize::MAX`: unknown, the kernel will refuse).
    len: usize,
    /// read(2), readv(2), preadv2(2): through the VFS, not recv.
    vfs: bool,
    /// Where the call returns more than a length (recvfrom, recvmsg).
    reply: Reply,
}

/// The out-parameters a successful read fills besides its result.
#[derive(Clone, Copy)]
enum Reply {
    Length,
    Address(*mut sockaddr, *mut socklen_t),
    Message(*mut msghdr),
}

impl Reply {
    /// What the kernel writes back for a TCP read of no bytes that waited
    /// SO_RCVTIMEO out: tcp_recvmsg() loops `while (len > 0)`, so a wait
    /// for nothing ends in 0, not EAGAIN; the syscall then reports an
    /// empty address, no flags and no control data.
    fn empty(self) -> Result<ssize_t, Errno> {
        match self {
            Reply::Length => {}
            Reply::Address(addr, _) if addr.is_null() => {}
            Reply::Address(_, alen) => {
                if !kernel::readable(alen.cast(), std::mem::size_of::<socklen_t>()) {
                    return Err(Errno(libc::EFAULT));
                }
                // SAFETY: readable (checked above); the caller gave it for output.
                unsafe {
                    if (*alen as c_int) < 0 {
                        return Err(Errno(libc::EINVAL));
                    }
                    *alen = 0;
                }
            }
            // SAFETY: msg_len() checked the header readable before the
            // read got this far; the caller gave it for output.
            Reply::Message(msg) => unsafe {
                if !(*msg).msg_name.is_null() {
                    (*msg).msg_namelen = 0;
                }
                (*msg).msg_flags = 0;
                (*msg).msg_controllen = 0;
            },
        }
        Ok(0)
    }
}

fn before_read(fd: c_int, entry: &Entry, read: Read) -> Answer<ssize_t> {
    let (conn, flags) = (&entry.conn, read.flags);
    // A message or vector the kernel cannot read (EFAULT, EINVAL,
    // EMSGSIZE), a listener, or what the kernel answers either way.
    if read.len == usize::MAX || conn.has_flag(crate::state::FLAG_LISTENING) || (!conn.is_auto() && answered_by_the_kernel(read)) {
        return Real;
    }
    // The reading side is shut: the kernel's read ends at once, after a
    // pending error (tcp_recvmsg checks sk_err before sk_shutdown).
    if conn.has_flag(crate::state::FLAG_READ_SHUT) {
        let pending = if conn.is_auto() { None } else { conn.take_pending_error() };
        return match pending {
            Some(e) => Done(Err(e)),
            None => Real,
        };
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
    // tcp_recvmsg() waits once even for no bytes (`do ... while (len > 0)`),
    // and whatever ends that wait, a timeout or a signal, ends the read
    // with 0 (never restarted: it is no error).
    match conn.wait_while(unsent, kernel::deadline(fd, libc::SO_RCVTIMEO), read.len != 0, || still_unsent(fd, entry)) {
        Wait::Changed => Real,
        Wait::TimedOut | Wait::Interrupted if read.len == 0 => Done(read.reply.empty()),
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
    ($( fn $name:ident($fd:ident $(, $arg:ident : $ty:ty)*) flags = $flags:expr, len = $len:expr, vfs = $vfs:expr, reply = $reply:expr; )*) => {
        export_tracked! {$(
            fn $name($fd: c_int $(, $arg: $ty)*) -> ssize_t,
            if let Some(entry) = attention($fd) => {
                before_read($fd, entry, Read { flags: $flags, len: $len, vfs: $vfs, reply: $reply })
            }
        )*}
    };
}

read_hooks! {
    fn read(fd, buf: *mut c_void, len: size_t) flags = 0, len = len, vfs = true, reply = Reply::Length;
    fn recv(fd, buf: *mut c_void, len: size_t, flags: c_int) flags = flags, len = len, vfs = false, reply = Reply::Length;
    fn recvfrom(fd, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) flags = flags, len = len, vfs = false, reply = Reply::Address(addr, alen);
    fn recvmsg(fd, msg: *mut msghdr, flags: c_int) flags = flags, len = msg_len(msg), vfs = false, reply = Reply::Message(msg);
    fn readv(fd, iov: *const iovec, count: c_int) flags = 0, len = vector_len(iov, count), vfs = true, reply = Reply::Length;
    fn __read_chk(fd, buf: *mut c_void, len: size_t, buflen: size_t) flags = 0, len = len, vfs = true, reply = Reply::Length;
    fn __recv_chk(fd, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int) flags = flags, len = len, vfs = false, reply = Reply::Length;
    fn __recvfrom_chk(fd, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) flags = flags, len = len, vfs = false, reply = Reply::Address(addr, alen);
}

export_tracked! {
    /// preadv2 with offset -1 is readv on a socket (another offset: ESPIPE).
    fn preadv2(fd: c_int, iov: *const iovec, count: c_int, offset: libc::off_t, flags: c_int) -> ssize_t,
    if let Some(entry) = attention(fd).filter(|_| offset == -1) => {
        before_read(fd, entry, Read { flags: rwf_flags(flags), len: vector_len(iov, count), vfs: true, reply: Reply::Length })
    }

    fn preadv64v2(fd: c_int, iov: *const iovec, count: c_int, offset: libc::off_t, flags: c_int) -> ssize_t,
    if let Some(entry) = attention(fd).filter(|_| offset == -1) => {
        before_read(fd, entry, Read { flags: rwf_flags(flags), len: vector_len(iov, count), vfs: true, reply: Reply::Length })
    }
}

export_tracked! {
    fn recvmmsg(fd: c_int, msgs: *mut mmsghdr, count: libc::c_uint, flags: c_int, timeout: *mut timespec) -> c_int,
    if let Some(entry) = attention(fd) => {
        // do_recvmmsg() reports a pending error before it reads a message.
        if flags & (libc::MSG_ERRQUEUE | MSG_CMSG_COMPAT) == 0 && timeout_ok(timeout) {
            if let Some(e) = entry.conn.take_pending_error() {
                return Done(Err(e));
            }
        }
        if msgs.is_null() || count == 0 || !timeout_ok(timeout) {
            return Real;
        }
        // SAFETY: recvmmsg's contract: `count` messages at `msgs`, and
        // `timeout` null or readable (checked above).
        unsafe { read_messages(fd, entry, msgs, count, flags, timeout) }
    }
}

/// do_recvmmsg() on a deferred socket, message by message. Only a message
/// of no bytes can be "read" there: its wait for nothing ends in 0 after
/// SO_RCVTIMEO, and the loop goes on (with MSG_DONTWAIT after one under
/// MSG_WAITFORONE), until an error ends it, the timeout expires, or the
/// socket starts connecting (the rest is then read for real).
///
/// # Safety
/// As for recvmmsg: `count` messages at `msgs`; `timeout` null or readable.
unsafe fn read_messages(fd: c_int, entry: &Entry, msgs: *mut mmsghdr, count: libc::c_uint, flags: c_int, timeout: *mut timespec) -> Answer<c_int> {
    let end = (!timeout.is_null()).then(|| {
        // SAFETY: readable (the caller's contract).
        let t = unsafe { *timeout };
        kernel::after(t.tv_sec.saturating_mul(1_000_000_000).saturating_add(t.tv_nsec))
    });
    let mut flags = flags;
    let mut datagrams = 0;
    while datagrams < count {
        // SAFETY: within the caller's array.
        let msg = unsafe { msgs.add(datagrams as usize) };
        if !kernel::readable(msg.cast(), std::mem::size_of::<mmsghdr>()) {
            break;
        }
        // SAFETY: readable (checked above); the caller gave it for output.
        let hdr = unsafe { &raw mut (*msg).msg_hdr };
        let read = Read { flags: flags & !libc::MSG_WAITFORONE, len: msg_len(hdr), vfs: false, reply: Reply::Message(hdr) };
        match before_read(fd, entry, read) {
            // SAFETY: as above.
            Done(Ok(n)) => unsafe { (*msg).msg_len = n as libc::c_uint },
            Done(Err(e)) if datagrams == 0 => return Done(Err(e)),
            Done(Err(e)) => {
                // The kernel keeps an error after a message for later (sk_err).
                if e.0 != libc::EAGAIN {
                    entry.conn.hold_error(e.0);
                }
                break;
            }
            Real if datagrams == 0 => return Real,
            Real => {
                // SAFETY: the rest of the caller's array.
                let more = unsafe { crate::real::recvmmsg(fd, msg, count - datagrams, flags, timeout) };
                datagrams += more.max(0) as libc::c_uint;
                break;
            }
        }
        datagrams += 1;
        if flags & libc::MSG_WAITFORONE != 0 {
            flags |= libc::MSG_DONTWAIT;
        }
        if let Some(end) = end {
            // The time left goes back to the caller; none left ends the loop.
            let now = kernel::after(0);
            let left = (end.tv_sec - now.tv_sec) * 1_000_000_000 + (end.tv_nsec - now.tv_nsec);
            let left = timespec { tv_sec: left.max(0) / 1_000_000_000, tv_nsec: left.max(0) % 1_000_000_000 };
            // SAFETY: the caller's timeout, readable (checked) and writable.
            unsafe { *timeout = left };
            if left.tv_sec == 0 && left.tv_nsec == 0 {
                break;
            }
        }
    }
    Done(Ok(datagrams as c_int))
}

/// recvmmsg() refuses this flag from user space (EINVAL) before anything.
const MSG_CMSG_COMPAT: c_int = 0x8000_0000u32 as c_int;

/// recvmmsg()'s timeout is copied in first (EFAULT).
fn timeout_ok(timeout: *mut timespec) -> bool {
    timeout.is_null() || kernel::readable(timeout.cast(), std::mem::size_of::<timespec>())
}

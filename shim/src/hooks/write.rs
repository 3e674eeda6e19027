//! The write family. The first write on a deferred socket sends the SYN
//! with its data (`syn::first_write`); every later write is the real call.

use super::attention;
use super::syn::{self, first_write, Payload};
use crate::errno::{check, Errno};
use crate::export::{Answer, Done, Real};
use crate::fdtable::{self, Entry};
use crate::kernel::{self, MSG_FASTOPEN};
use crate::real;
use crate::state::{Phase, FLAG_COOKIE_REQUESTED};
use libc::{c_int, c_uint, c_void, iovec, loff_t, mmsghdr, msghdr, off_t, size_t, sockaddr, socklen_t, ssize_t};

export_fd! {
    fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t,
    if let Some(entry) = attention(fd) => {
        first_write(fd, entry, Payload::Buf(buf, len), 0)
    }

    fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t,
    if let Some(entry) = attention_or_fastopen(fd, flags) => {
        stale_fastopen(entry, flags).unwrap_or_else(|| first_write(fd, entry, Payload::Buf(buf, len), flags))
    }

    /// A deferred socket ignores the address given here and uses connect()'s
    /// (once the kernel would have accepted it).
    fn sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, alen: socklen_t) -> ssize_t,
    if let Some(entry) = attention_or_fastopen(fd, flags).filter(|_| addr.is_null() || super::connect::well_formed(addr, alen)) => {
        stale_fastopen(entry, flags).unwrap_or_else(|| first_write(fd, entry, Payload::Buf(buf, len), flags))
    }

    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t,
    if let Some(entry) = attention_or_fastopen(fd, flags) => {
        // A message the kernel refuses (EFAULT, EMSGSIZE, EINVAL) gets its answer.
        let Some(msg) = checked_message(msg) else { return Real };
        stale_fastopen(entry, flags).unwrap_or_else(|| first_write(fd, entry, Payload::Msg(msg), flags))
    }

    fn writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t,
    if let Some(entry) = attention(fd) => {
        // SAFETY: an all-zero msghdr is valid; we fill the fields writev has.
        let mut msg: msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov as *mut iovec;
        msg.msg_iovlen = count as _;
        // A count out of 0..=UIO_MAXIOV, or an unreadable vector: EINVAL,
        // EFAULT from the real call.
        if !(0..=UIO_MAXIOV as c_int).contains(&count) || !vector_ok(&msg) {
            return Real;
        }
        first_write(fd, entry, Payload::Msg(msg), 0)
    }

    /// The kernel sends each message in turn: the first one is the deferred
    /// write, the rest go out as usual. An error after the first message is
    /// not reported, as __sys_sendmmsg does. A first message cut short (what
    /// fit in the SYN, or a shortened auto-mode write) ends the call, as on
    /// the kernel's own deferred socket: the next ones would leave a hole.
    fn sendmmsg(fd: c_int, msgs: *mut mmsghdr, count: c_uint, flags: c_int) -> c_int,
    if let Some(entry) = attention(fd).filter(|_| count > 0) => {
        let Some(hdr) = checked_message(msgs.cast()) else { return Real };
        // SAFETY: readable (checked above); sendmmsg's contract makes it writable.
        let first = unsafe { &mut *msgs };
        let payload = Payload::Msg(hdr);
        match first_write(fd, entry, payload, flags) {
            Real => Real,
            Done(Err(e)) => Done(Err(e)),
            Done(Ok(n)) => {
                first.msg_len = n as c_uint;
                if (n as usize) < payload.len() {
                    return Done(Ok(1));
                }
                // SAFETY: the remaining count-1 entries, passed on.
                let rest = if count > 1 { unsafe { real::sendmmsg(fd, msgs.add(1), count - 1, flags) } } else { 0 };
                Done(Ok(1 + rest.max(0)))
            }
        }
    }

    /// sendfile() on a deferred socket: the file's first bytes go in the SYN
    /// (read with pread, so only what was sent is consumed), the rest by the
    /// real sendfile.
    fn sendfile(out: c_int, input: c_int, offset: *mut off_t, count: size_t) -> ssize_t,
    if let Some(entry) = attention(out).filter(|_| offset_ok(offset)) => {
        // SAFETY: sendfile's contract for `offset`.
        unsafe { sendfile_deferred(entry, out, input, offset, count) }
    }

    fn sendfile64(out: c_int, input: c_int, offset: *mut off_t, count: size_t) -> ssize_t,
    if let Some(entry) = attention(out).filter(|_| offset_ok(offset)) => {
        // SAFETY: as for sendfile (off_t is 64 bits here).
        unsafe { sendfile_deferred(entry, out, input, offset, count) }
    }

    /// splice() from a pipe into a deferred socket: the pipe's bytes are
    /// copied with tee() (not consumed), sent in the SYN, and then exactly
    /// the bytes sent are taken out of the pipe.
    /// (A socket takes no offset: the kernel refuses one, and says so.)
    fn splice(input: c_int, in_offset: *mut loff_t, out: c_int, out_offset: *mut loff_t, len: size_t, flags: c_uint) -> ssize_t,
    if let Some(entry) = attention(out).filter(|e| e.conn.is_unsent() && out_offset.is_null()) => {
        splice_deferred(entry, input, out, len, flags)
    }
}

/// The kernel's limit on iovecs (UIO_MAXIOV).
const UIO_MAXIOV: usize = 1024;

/// The program's msghdr, when the kernel would accept it as one to send:
/// readable, at most UIO_MAXIOV iovecs, readable vector, name and control.
fn checked_message(msg: *const msghdr) -> Option<msghdr> {
    if !kernel::readable(msg.cast(), std::mem::size_of::<msghdr>()) {
        return None;
    }
    // SAFETY: readable (checked above).
    let msg = unsafe { std::ptr::read_unaligned(msg) };
    let name_ok = msg.msg_name.is_null() || super::connect::well_formed(msg.msg_name.cast(), msg.msg_namelen);
    let control_ok = kernel::readable(msg.msg_control, msg.msg_controllen as usize);
    (msg.msg_iovlen <= UIO_MAXIOV && name_ok && control_ok && vector_ok(&msg)).then_some(msg)
}

/// The iovecs of `msg` are readable and their total fits in an ssize_t.
fn vector_ok(msg: &msghdr) -> bool {
    if !kernel::readable(msg.msg_iov.cast(), msg.msg_iovlen * std::mem::size_of::<iovec>()) {
        return false;
    }
    // SAFETY: readable (checked above).
    let vector = unsafe { std::slice::from_raw_parts(msg.msg_iov, msg.msg_iovlen) };
    vector.iter().try_fold(0usize, |sum, v| sum.checked_add(v.iov_len)).is_some_and(|total| total <= isize::MAX as usize)
}

/// sendfile's offset, when given, is readable.
fn offset_ok(offset: *mut off_t) -> bool {
    offset.is_null() || kernel::readable(offset.cast(), std::mem::size_of::<off_t>())
}

/// Like `attention`, and also any tracked socket when MSG_FASTOPEN is given.
#[inline(always)]
fn attention_or_fastopen(fd: c_int, flags: c_int) -> Option<&'static Entry> {
    if flags & MSG_FASTOPEN != 0 {
        fdtable::lookup(fd)
    } else {
        attention(fd)
    }
}

/// MSG_FASTOPEN on a socket whose connect() sent a cookie request: the
/// kernel never frees that request (until a disconnect), so it answers
/// EALREADY, even once connected (spec §7). A disabled client bit is
/// checked first, by the real call.
fn stale_fastopen(entry: &Entry, flags: c_int) -> Option<Answer<ssize_t>> {
    let conn = &entry.conn;
    if flags & MSG_FASTOPEN == 0 || !conn.has_flag(FLAG_COOKIE_REQUESTED) || conn.phase() != Phase::Kernel {
        return None;
    }
    kernel::client_fastopen_enabled().then_some(Done(Err(Errno(libc::EALREADY))))
}

/// At most this much goes through the first write of sendfile() or splice().
const CHUNK: usize = 64 * 1024;

/// See the splice export.
fn splice_deferred(entry: &Entry, input: c_int, out: c_int, len: size_t, flags: c_uint) -> Answer<ssize_t> {
    let mut private = [0 as c_int; 2];
    // SAFETY: a valid array of two fds.
    if unsafe { libc::pipe2(private.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Real;
    }
    // SAFETY: tee between the caller's pipe and ours.
    let copied = unsafe { libc::tee(input, private[1], len.min(CHUNK), flags & libc::SPLICE_F_NONBLOCK) };
    let mut chunk = vec![0u8; copied.max(0) as usize];
    // SAFETY: reading into our own buffer from our own pipe.
    let got = if copied > 0 { unsafe { real::read(private[0], chunk.as_mut_ptr().cast(), chunk.len()) } } else { copied };
    // SAFETY: closing our own pipe.
    unsafe {
        real::close(private[0]);
        real::close(private[1]);
    }
    if got <= 0 {
        // Empty pipe, not a pipe, or would block: the real call says so.
        return Real;
    }
    let mut send_flags = 0;
    if flags & libc::SPLICE_F_NONBLOCK != 0 {
        send_flags |= libc::MSG_DONTWAIT;
    }
    if flags & libc::SPLICE_F_MORE != 0 {
        send_flags |= libc::MSG_MORE;
    }
    let answer = first_write(out, entry, Payload::Buf(chunk.as_ptr().cast(), got as size_t), send_flags);
    if let Done(Ok(sent)) = answer {
        // Take exactly the bytes that went out from the caller's pipe.
        let mut left = sent as usize;
        while left > 0 {
            // SAFETY: reading into our own buffer.
            let n = unsafe { real::read(input, chunk.as_mut_ptr().cast(), left.min(chunk.len())) };
            if n <= 0 {
                break;
            }
            left -= n as usize;
        }
    }
    answer
}

/// # Safety
/// sendfile's contract for `offset`.
unsafe fn sendfile_deferred(entry: &Entry, out: c_int, input: c_int, offset: *mut off_t, count: size_t) -> Answer<ssize_t> {
    if !entry.conn.is_unsent() {
        // Only a pending error (or an outcome to see) to report first.
        return first_write(out, entry, Payload::Buf(std::ptr::null(), 0), 0);
    }
    // SAFETY: `offset`, when not null, points to the caller's off_t.
    let position = if offset.is_null() { unsafe { libc::lseek(input, 0, libc::SEEK_CUR) } } else { unsafe { *offset } };
    if position < 0 {
        // Not seekable: the bytes could not be put back, so the SYN leaves
        // without data and the real sendfile does the rest.
        if let Done(Err(e)) = syn::syn_without_data(out, entry, 0) {
            if e != Errno(libc::EINPROGRESS) {
                return Done(Err(e));
            }
        }
        return Real;
    }
    let mut chunk = vec![0u8; count.min(CHUNK)];
    // SAFETY: reading into our own buffer.
    let got = match check(unsafe { libc::pread(input, chunk.as_mut_ptr().cast(), chunk.len(), position) }) {
        Ok(n) => n,
        Err(e) => return Done(Err(e)),
    };
    let sent = match first_write(out, entry, Payload::Buf(chunk.as_ptr().cast(), got as size_t), 0) {
        Done(Ok(n)) => n,
        other => return other,
    };
    let advanced = position + sent as off_t;
    if offset.is_null() {
        // SAFETY: moving the caller's file offset past what was sent.
        unsafe { libc::lseek(input, advanced, libc::SEEK_SET) };
    } else {
        // SAFETY: as above, through the caller's pointer.
        unsafe { *offset = advanced };
    }
    if sent as size_t >= count || (sent as usize) < chunk.len() {
        return Done(Ok(sent));
    }
    // The whole chunk went out; the rest is an ordinary sendfile. Its error
    // (EAGAIN while the handshake runs) is not reported after a partial send.
    // SAFETY: the caller's arguments, with the count reduced.
    let rest = unsafe { real::sendfile(out, input, offset, count - sent as size_t) };
    Done(Ok(sent + rest.max(0)))
}

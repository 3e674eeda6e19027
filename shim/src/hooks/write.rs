//! The write family. The first write on a deferred socket sends the SYN
//! with its data (`syn::first_write`); every later write is the real call.

use super::{attention, still_unsent, rwf_flags, vector_len};
use super::syn::{self, first_write, Payload};
use crate::errno::{check, Errno};
use crate::export::{Answer, Done, Real};
use crate::fdtable::{self, Entry};
use crate::kernel::{self, MSG_FASTOPEN};
use crate::real;
use crate::state::{Phase, FLAG_COOKIE_REQUESTED, FLAG_HAS_LISTENED, FLAG_KERNEL_CONNECTED, FLAG_KERNEL_CONNECTING, FLAG_KERNEL_DISCONNECTING, FLAG_LISTENING};
use libc::{c_int, c_uint, c_void, iovec, loff_t, mmsghdr, msghdr, off_t, size_t, sockaddr, socklen_t, ssize_t};

export_tracked! {
    fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t,
    if let Some(entry) = attention(fd) => {
        first_write(fd, entry, Payload::Buf(buf, len), 0)
    }

    fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t,
    if let Some(entry) = attention_or_fastopen(fd, flags) => {
        stale_fastopen(entry, flags, &GivenAddress::Fine)
            // SAFETY: the caller's arguments, passed on.
            .or_else(|| own_fastopen(fd, entry, flags, || unsafe { real::send(fd, buf, len, flags) }))
            .unwrap_or_else(|| first_write(fd, entry, Payload::Buf(buf, len), flags))
    }

    /// A deferred socket ignores the address given here and uses connect()'s
    /// (once the kernel would have accepted it).
    fn sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, alen: socklen_t) -> ssize_t,
    if let Some(entry) = attention_or_fastopen(fd, flags) => {
        let given = given_address(addr, alen as i32, false);
        stale_fastopen(entry, flags, &given)
            // SAFETY: the caller's arguments, passed on.
            .or_else(|| own_fastopen(fd, entry, flags, || unsafe { real::sendto(fd, buf, len, flags, addr, alen) }))
            .unwrap_or_else(|| with_given_address(fd, entry, given, Payload::Buf(buf, len), flags))
    }

    /// A msghdr the kernel could not read is the kernel's to refuse (EFAULT).
    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t,
    if let Some(entry) = attention_or_fastopen(fd, flags).filter(|_| checked_message(msg).is_some()) => {
        // SAFETY: readable (checked by the guard).
        let message = unsafe { *msg };
        let given = given_address(message.msg_name.cast_const().cast(), message.msg_namelen as i32, true);
        stale_fastopen(entry, flags, &given)
            // SAFETY: the caller's arguments, passed on.
            .or_else(|| own_fastopen(fd, entry, flags, || unsafe { real::sendmsg(fd, msg, flags) }))
            .unwrap_or_else(|| with_given_address(fd, entry, given, Payload::Msg(message), flags))
    }

    /// A vector of no bytes never reaches the socket (the VFS answers 0).
    fn writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t,
    if let Some(entry) = attention(fd).filter(|_| usable_vector(iov, count)) => {
        first_write(fd, entry, vector(iov, count), 0)
    }

    /// pwritev2 with offset -1 is writev on a socket (another offset: ESPIPE).
    fn pwritev2(fd: c_int, iov: *const iovec, count: c_int, offset: off_t, flags: c_int) -> ssize_t,
    if let Some(entry) = attention(fd).filter(|_| offset == -1 && usable_vector(iov, count)) => {
        first_write(fd, entry, vector(iov, count), rwf_flags(flags))
    }

    fn pwritev64v2(fd: c_int, iov: *const iovec, count: c_int, offset: off_t, flags: c_int) -> ssize_t,
    if let Some(entry) = attention(fd).filter(|_| offset == -1 && usable_vector(iov, count)) => {
        first_write(fd, entry, vector(iov, count), rwf_flags(flags))
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
    if let Some(entry) = attention(out).filter(|_| count != 0 && offset_ok(offset)) => {
        // SAFETY: sendfile's contract for `offset`.
        unsafe { sendfile_deferred(entry, out, input, offset, count) }
    }

    fn sendfile64(out: c_int, input: c_int, offset: *mut off_t, count: size_t) -> ssize_t,
    if let Some(entry) = attention(out).filter(|_| count != 0 && offset_ok(offset)) => {
        // SAFETY: as for sendfile (off_t is 64 bits here).
        unsafe { sendfile_deferred(entry, out, input, offset, count) }
    }

    /// splice() from a pipe into a deferred socket: the pipe's bytes are
    /// copied with tee() (not consumed), sent in the SYN, and then exactly
    /// the bytes sent are taken out of the pipe.
    /// (A socket takes no offset: the kernel refuses one, and says so.)
    fn splice(input: c_int, in_offset: *mut loff_t, out: c_int, out_offset: *mut loff_t, len: size_t, flags: c_uint) -> ssize_t,
    if let Some(entry) = attention(out).filter(|_| len != 0 && out_offset.is_null()) => {
        if !entry.conn.is_unsent() {
            // Only a pending error (or an outcome to see) to report first.
            return first_write(out, entry, Payload::Buf(std::ptr::null(), 0), 0);
        }
        splice_deferred(entry, input, out, len, flags)
    }
}

/// An iovec array as the payload of a first write.
fn vector(iov: *const iovec, count: c_int) -> Payload {
    // SAFETY: an all-zero msghdr is valid; we fill the fields writev has.
    let mut msg: msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov as *mut iovec;
    msg.msg_iovlen = count.max(0) as _;
    Payload::Msg(msg)
}

/// A vector worth a first write: some bytes, and one the kernel accepts
/// (else its answer: 0, EINVAL or EFAULT).
fn usable_vector(iov: *const iovec, count: c_int) -> bool {
    let total = vector_len(iov, count);
    total != 0 && total != usize::MAX
}

/// The kernel's limit on iovecs (UIO_MAXIOV).
const UIO_MAXIOV: usize = 1024;

/// The program's msghdr, when the kernel would accept it as one to send:
/// readable, at most UIO_MAXIOV iovecs, readable vector and control (its
/// name is judged by `given_address`).
fn checked_message(msg: *const msghdr) -> Option<msghdr> {
    if !kernel::readable(msg.cast(), std::mem::size_of::<msghdr>()) {
        return None;
    }
    // SAFETY: readable (checked above).
    let msg = unsafe { std::ptr::read_unaligned(msg) };
    let control_ok = kernel::readable(msg.msg_control, msg.msg_controllen as usize);
    (msg.msg_iovlen <= UIO_MAXIOV && control_ok && vector_ok(&msg)).then_some(msg)
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
fn stale_fastopen(entry: &Entry, flags: c_int, given: &GivenAddress) -> Option<Answer<ssize_t>> {
    let conn = &entry.conn;
    if flags & MSG_FASTOPEN == 0 || !conn.has_flag(FLAG_COOKIE_REQUESTED) || conn.phase() != Phase::Kernel {
        return None;
    }
    // The kernel refuses an AF_UNSPEC address (EOPNOTSUPP) before that.
    if matches!(given, GivenAddress::Refused(_)) {
        return None;
    }
    kernel::client_fastopen_enabled().then_some(Done(Err(Errno(libc::EALREADY))))
}

/// What the kernel's deferred socket makes of an address given to
/// sendto()/sendmsg() (it sends to connect()'s destination anyway).
enum GivenAddress {
    Fine,
    /// Refused before anything is sent: EINVAL (length), EFAULT,
    /// EOPNOTSUPP (AF_UNSPEC).
    Refused(Errno),
    /// Shorter than a family: the SYN with data leaves, then EINVAL
    /// (__inet_stream_connect checks the length after tcp_connect()).
    TooShort,
}

/// move_addr_to_kernel() (sendto: a length over 128 is EINVAL; sendmsg:
/// truncated), then tcp_sendmsg_fastopen()'s AF_UNSPEC check.
fn given_address(addr: *const sockaddr, len: i32, sendmsg: bool) -> GivenAddress {
    if addr.is_null() {
        return GivenAddress::Fine;
    }
    let max = std::mem::size_of::<libc::sockaddr_storage>() as i32;
    if len < 0 || (!sendmsg && len > max) {
        return GivenAddress::Refused(Errno(libc::EINVAL));
    }
    // sendmsg with a name of length 0 has no name (copy_msghdr_from_user).
    if sendmsg && len == 0 {
        return GivenAddress::Fine;
    }
    let len = len.min(max) as usize;
    if !kernel::readable(addr.cast(), len) {
        return GivenAddress::Refused(Errno(libc::EFAULT));
    }
    if len < std::mem::size_of::<libc::sa_family_t>() {
        return GivenAddress::TooShort;
    }
    // SAFETY: at least the family is readable (checked above).
    if c_int::from(unsafe { (*addr).sa_family }) == libc::AF_UNSPEC {
        return GivenAddress::Refused(Errno(libc::EOPNOTSUPP));
    }
    GivenAddress::Fine
}

/// The first write of an explicit deferred socket, with the address the
/// program gave judged as the kernel would.
fn with_given_address(fd: c_int, entry: &Entry, given: GivenAddress, payload: Payload, flags: c_int) -> Answer<ssize_t> {
    // still_unsent: a process sharing the socket may have died sending its
    // SYN, leaving the phase to adopt.
    if entry.conn.is_auto() || !still_unsent(fd, entry) {
        // A connected socket ignores the address, but the syscall copies it
        // first (EFAULT, EINVAL).
        return match given {
            GivenAddress::Refused(e @ Errno(libc::EFAULT | libc::EINVAL)) => Done(Err(e)),
            _ => first_write(fd, entry, payload, flags),
        };
    }
    match given {
        GivenAddress::Fine => first_write(fd, entry, payload, flags),
        GivenAddress::Refused(e) => Done(Err(e)),
        // The kernel does not wait for the handshake it started.
        GivenAddress::TooShort => match first_write(fd, entry, payload, flags | libc::MSG_DONTWAIT) {
            Done(Ok(_) | Err(Errno(libc::EINPROGRESS))) => Done(Err(Errno(libc::EINVAL))),
            other => other,
        },
    }
}

/// The program's own Fast Open (MSG_FASTOPEN) on an explicit socket that is
/// not deferred (armed, disconnected, or past its SYN): the kernel does it,
/// and libtfo follows. A new SYN left: with it any error of an earlier life
/// went (tcp_connect_init clears sk_err). A connection that had failed was
/// reported instead (__inet_stream_connect's sock_error path), which leaves
/// the socket layer unconnected: the next connect() defers again.
fn own_fastopen(fd: c_int, entry: &Entry, flags: c_int, call: impl FnOnce() -> ssize_t) -> Option<Answer<ssize_t>> {
    let conn = &entry.conn;
    let phase = conn.phase();
    // A listener answers MSG_FASTOPEN (EISCONN) before any pending error,
    // and so does an unconnected socket in CLOSE: its connect comes first
    // and clears sk_err as the SYN leaves (libtfo may hold that error: it
    // took it at a connect that then failed before its SYN).
    let unconnected = || {
        !conn.has_flag(FLAG_KERNEL_CONNECTING | FLAG_KERNEL_CONNECTED | FLAG_KERNEL_DISCONNECTING | FLAG_HAS_LISTENED)
            && kernel::tcp_state(fd) == Some(kernel::TCP_CLOSE)
    };
    let ours = phase == Phase::Armed || (phase == Phase::Kernel && (conn.pending_error() == 0 || conn.has_flag(FLAG_LISTENING) || unconnected()));
    if flags & MSG_FASTOPEN == 0 || conn.is_auto() || !ours {
        return None;
    }
    let result = check(call());
    match result {
        Ok(_) | Err(Errno(libc::EINPROGRESS)) => {
            conn.drop_held_error();
            if phase == Phase::Armed {
                conn.connected_without_deferral(false);
            }
            let waited = flags & libc::MSG_DONTWAIT == 0 && !kernel::is_nonblocking(fd);
            conn.socket_connect_went(!waited, waited && result.is_ok());
            super::registrations::release(fd, entry);
        }
        Err(Errno(e)) if !answered_before_connecting(e) && kernel::tcp_state(fd) == Some(kernel::TCP_CLOSE) => {
            conn.socket_disconnected();
            // Refused or reset after the SYN left: tcp_connect_init cleared
            // an earlier life's error, and this one was just reported.
            if matches!(e, libc::ECONNREFUSED | libc::ECONNRESET | libc::ETIMEDOUT) {
                conn.drop_held_error();
            }
        }
        Err(_) => {}
    }
    Some(Done(result))
}

/// Errors of a MSG_FASTOPEN send that leave the socket layer as it was:
/// refused before connecting (arguments, Fast Open off, no memory), or by
/// the socket layer's own state (EALREADY, EISCONN).
fn answered_before_connecting(e: c_int) -> bool {
    matches!(
        e,
        libc::EALREADY
            | libc::EISCONN
            | libc::EOPNOTSUPP
            | libc::EFAULT
            | libc::EINVAL
            | libc::ENOBUFS
            | libc::ENOMEM
            | libc::EAGAIN
            | libc::EINTR
            | libc::EBADF
            | libc::ENOTSOCK
    )
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
        let sent = sent as usize;
        // Take exactly the bytes that went out from the caller's pipe.
        let mut left = sent;
        while left > 0 {
            // SAFETY: reading into our own buffer.
            let n = unsafe { real::read(input, chunk.as_mut_ptr().cast(), left.min(chunk.len())) };
            if n <= 0 {
                break;
            }
            left -= n as usize;
        }
        // The kernel's splice goes on sending after the SYN's share, as the
        // socket allows (at once on loopback, where the handshake is done;
        // EAGAIN on a real path when non-blocking; a wait when blocking).
        if sent < len && sent < got as usize {
            // SAFETY: the caller's pipe and our socket, the rest of the length.
            let rest = unsafe { real::splice(input, std::ptr::null_mut(), out, std::ptr::null_mut(), len - sent, flags) };
            return Done(Ok((sent + rest.max(0) as usize) as ssize_t));
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
    // The kernel's sendfile goes on after the SYN's share, as the socket
    // allows (at once on loopback, where the handshake is done; EAGAIN on a
    // real path when non-blocking; a wait when blocking).
    if (sent as usize) < chunk.len() && (sent as size_t) < count && sent > 0 {
        // SAFETY: the caller's arguments, with the count reduced.
        let rest = unsafe { real::sendfile(out, input, offset, count - sent as size_t) };
        return Done(Ok(sent + rest.max(0)));
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

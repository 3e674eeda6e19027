//! The write family. The first write on a deferred socket becomes
//! sendto()/sendmsg() with MSG_FASTOPEN to the recorded destination: the
//! kernel puts the data in the SYN and returns exactly what its own deferred
//! socket would (spec §6). Every later write is the real call.

use super::attention;
use crate::deferred::{Phase, SockAddr, Socket, FLAG_COOKIE_REQUESTED};
use crate::errno::{self, Saved};
use crate::kernel::{self, MSG_FASTOPEN, TFO_CLIENT_ENABLE};
use crate::{fdtable, real};
use libc::{c_int, c_uint, c_void, iovec, loff_t, mmsghdr, msghdr, off_t, size_t, sockaddr, socklen_t, ssize_t};

export_fd! {
    fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t,
    if let Some(socket) = attention(fd) => {
        first_write(fd, socket, syn_sendto(fd, buf, len, 0))
            .unwrap_or_else(|| real::write(fd, buf, len))
    }

    fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t,
    if let Some(socket) = attention_or_fastopen(fd, flags) => {
        stale_fastopen(socket, flags).or_else(|| first_write(fd, socket, syn_sendto(fd, buf, len, flags)))
            .unwrap_or_else(|| real::send(fd, buf, len, flags))
    }

    /// A deferred socket ignores the address given here and uses connect()'s.
    fn sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, alen: socklen_t) -> ssize_t,
    if let Some(socket) = attention_or_fastopen(fd, flags) => {
        stale_fastopen(socket, flags).or_else(|| first_write(fd, socket, syn_sendto(fd, buf, len, flags)))
            .unwrap_or_else(|| real::sendto(fd, buf, len, flags, addr, alen))
    }

    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t,
    if let Some(socket) = attention_or_fastopen(fd, flags).filter(|_| !msg.is_null()) => {
        stale_fastopen(socket, flags).or_else(|| first_write(fd, socket, syn_sendmsg(fd, *msg, flags)))
            .unwrap_or_else(|| real::sendmsg(fd, msg, flags))
    }

    fn writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t,
    if let Some(socket) = attention(fd) => {
        // SAFETY: an all-zero msghdr is valid; we fill the fields writev has.
        let mut msg: msghdr = std::mem::zeroed();
        msg.msg_iov = iov as *mut iovec;
        msg.msg_iovlen = count as _;
        first_write(fd, socket, syn_sendmsg(fd, msg, 0))
            .unwrap_or_else(|| real::writev(fd, iov, count))
    }

    /// The kernel sends each message in turn: the first one is the deferred
    /// write, the rest go out as usual. An error after the first message is
    /// not reported, as __sys_sendmmsg does.
    fn sendmmsg(fd: c_int, msgs: *mut mmsghdr, count: c_uint, flags: c_int) -> c_int,
    if let Some(socket) = attention(fd).filter(|_| !msgs.is_null() && count > 0) => {
        let first = &mut *msgs;
        match first_write(fd, socket, syn_sendmsg(fd, first.msg_hdr, flags)) {
            None => real::sendmmsg(fd, msgs, count, flags),
            Some(r) if r < 0 => r as c_int,
            Some(r) => {
                first.msg_len = r as c_uint;
                let saved = Saved::take();
                let rest = if count > 1 { real::sendmmsg(fd, msgs.add(1), count - 1, flags) } else { 0 };
                saved.restore(1 + rest.max(0))
            }
        }
    }

    /// sendfile() on a deferred socket: the file's first bytes go in the SYN
    /// (read with pread, so only what was sent is consumed), the rest by the
    /// real sendfile.
    fn sendfile(out: c_int, input: c_int, offset: *mut off_t, count: size_t) -> ssize_t,
    if let Some(socket) = attention(out) => {
        sendfile_deferred(socket, out, input, offset, count)
    }

    /// splice() from a pipe into a deferred socket: the pipe's bytes are
    /// copied with tee() (not consumed), sent in the SYN, and then exactly
    /// the bytes sent are taken out of the pipe.
    fn splice(input: c_int, in_offset: *mut loff_t, out: c_int, out_offset: *mut loff_t, len: size_t, flags: c_uint) -> ssize_t,
    if let Some(socket) = attention(out).filter(|s| s.phase().before_syn()) => {
        splice_deferred(socket, input, out, len, flags)
            .unwrap_or_else(|| real::splice(input, in_offset, out, out_offset, len, flags))
    }
}

/// Like `attention`, and also any tracked socket when MSG_FASTOPEN is given.
#[inline(always)]
fn attention_or_fastopen(fd: c_int, flags: c_int) -> Option<&'static Socket> {
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
fn stale_fastopen(socket: &Socket, flags: c_int) -> Option<ssize_t> {
    if flags & MSG_FASTOPEN == 0 || !socket.has_flag(FLAG_COOKIE_REQUESTED) || socket.phase() != Phase::Kernel {
        return None;
    }
    let saved = Saved::take();
    let enabled = kernel::fastopen_sysctl().is_some_and(|v| v & TFO_CLIENT_ENABLE != 0);
    saved.restore(());
    enabled.then(|| errno::fail(libc::EALREADY))
}

/// Sends the deferred SYN with the first data through `send_syn`, or reports
/// a pending error. `None` when neither applies: the caller makes the real
/// call. If another thread is sending the SYN right now, wait for it, as the
/// socket lock would make us.
pub fn first_write(fd: c_int, socket: &Socket, send_syn: impl FnOnce(&SockAddr) -> ssize_t) -> Option<ssize_t> {
    // An error left by a disconnect: a send reports it, unless the socket
    // was connected again and this write sends its SYN, which clears it
    // (tcp_connect_init).
    if !socket.phase().before_syn() {
        if let Some(err) = socket.take_pending_error() {
            return Some(errno::fail(err));
        }
    }
    loop {
        match socket.begin(Phase::Deferred, Phase::Sending) {
            Ok(()) => break,
            Err(Phase::Connecting | Phase::Sending) => {
                let saved = Saved::take();
                socket.wait_while(|p| matches!(p, Phase::Connecting | Phase::Sending), None, || true);
                saved.restore(());
            }
            Err(_) => return None,
        }
    }
    let caller_errno = Saved::take();
    let result = send_syn(&socket.endpoints().remote);
    let err = errno::get();
    if !(result == -1 && err == libc::EOPNOTSUPP) {
        // The SYN left: tcp_connect_init() cleared any old error.
        socket.set_pending_error(0);
    }
    match (result, err) {
        // Client Fast Open was switched off after connect(): the kernel's
        // socket stays deferred in SYN_SENT and so does ours.
        (-1, libc::EOPNOTSUPP) => socket.enter(Phase::Deferred),
        // Another process sharing the socket (fork) sent the SYN first: the
        // kernel socket is connecting or connected, so this is a plain write.
        (-1, libc::EALREADY | libc::EISCONN) => {
            socket.enter(Phase::Kernel);
            super::epoll::release(fd);
            return caller_errno.restore(None);
        }
        _ => {
            socket.enter(Phase::Kernel);
            super::epoll::release(fd);
        }
    }
    errno::set(err);
    Some(result)
}

/// The first write as sendto(): `len` bytes at `buf` to the recorded
/// destination, with MSG_FASTOPEN added to `flags`.
fn syn_sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> impl FnOnce(&SockAddr) -> ssize_t {
    // SAFETY: the caller's buffer contract is passed on to sendto unchanged.
    move |to| unsafe { real::sendto(fd, buf, len, flags | MSG_FASTOPEN, to.as_ptr(), to.len()) }
}

/// Sends the deferred SYN now, without data and without waiting (before
/// exec, or when data could not be taken back): EINPROGRESS is the usual
/// answer. `None` when the SYN had already left.
pub fn syn_without_data(fd: c_int, socket: &Socket, flags: c_int) -> Option<ssize_t> {
    first_write(fd, socket, syn_sendto(fd, std::ptr::null(), 0, flags | libc::MSG_DONTWAIT))
}

/// The first write as sendmsg(): `msg` to the recorded destination instead
/// of its own address, with MSG_FASTOPEN added to `flags`.
fn syn_sendmsg(fd: c_int, mut msg: msghdr, flags: c_int) -> impl FnOnce(&SockAddr) -> ssize_t {
    move |to| {
        msg.msg_name = to.as_ptr() as *mut c_void;
        msg.msg_namelen = to.len();
        // SAFETY: the caller's msghdr contract is passed on unchanged.
        unsafe { real::sendmsg(fd, &msg, flags | MSG_FASTOPEN) }
    }
}

/// See the splice export. `None`: make the real call.
unsafe fn splice_deferred(socket: &Socket, input: c_int, out: c_int, len: size_t, flags: c_uint) -> Option<ssize_t> {
    let saved = Saved::take();
    let mut private = [0 as c_int; 2];
    if libc::pipe2(private.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
        return saved.restore(None);
    }
    let copied = libc::tee(input, private[1], len.min(SENDFILE_CHUNK), flags & libc::SPLICE_F_NONBLOCK);
    let mut chunk = vec![0u8; copied.max(0) as usize];
    let got = if copied > 0 { libc::read(private[0], chunk.as_mut_ptr().cast(), chunk.len()) } else { copied };
    real::close(private[0]);
    real::close(private[1]);
    if got <= 0 {
        // Empty pipe, not a pipe, or would block: the real call says so.
        return saved.restore(None);
    }
    let mut send_flags = 0;
    if flags & libc::SPLICE_F_NONBLOCK != 0 {
        send_flags |= libc::MSG_DONTWAIT;
    }
    if flags & libc::SPLICE_F_MORE != 0 {
        send_flags |= libc::MSG_MORE;
    }
    saved.restore(());
    let sent = first_write(out, socket, syn_sendto(out, chunk.as_ptr().cast(), got as size_t, send_flags))?;
    if sent > 0 {
        // Take exactly the bytes that went out from the caller's pipe.
        let saved = Saved::take();
        let mut left = sent as usize;
        while left > 0 {
            let n = real::read(input, chunk.as_mut_ptr().cast(), left.min(chunk.len()));
            if n <= 0 {
                break;
            }
            left -= n as usize;
        }
        saved.restore(());
    }
    Some(sent)
}

/// At most this much of a file goes through the first write of sendfile().
const SENDFILE_CHUNK: usize = 64 * 1024;

unsafe fn sendfile_deferred(socket: &Socket, out: c_int, input: c_int, offset: *mut off_t, count: size_t) -> ssize_t {
    let saved = Saved::take();
    let position = if offset.is_null() { libc::lseek(input, 0, libc::SEEK_CUR) } else { *offset };
    if position < 0 {
        // Not seekable: the bytes could not be put back, so the SYN leaves
        // without data and the real sendfile does the rest.
        saved.restore(());
        let syn = syn_without_data(out, socket, 0);
        if syn.is_some_and(|r| r < 0 && errno::get() != libc::EINPROGRESS) {
            return -1;
        }
        saved.restore(());
        return real::sendfile(out, input, offset, count);
    }
    let mut chunk = vec![0u8; count.min(SENDFILE_CHUNK)];
    let got = libc::pread(input, chunk.as_mut_ptr().cast(), chunk.len(), position);
    if got < 0 {
        return -1;
    }
    saved.restore(());
    let Some(sent) = first_write(out, socket, syn_sendto(out, chunk.as_ptr().cast(), got as size_t, 0)) else {
        return real::sendfile(out, input, offset, count);
    };
    if sent < 0 {
        return sent;
    }
    let advanced = position + sent as off_t;
    if offset.is_null() {
        libc::lseek(input, advanced, libc::SEEK_SET);
    } else {
        *offset = advanced;
    }
    if sent as size_t >= count || (sent as usize) < chunk.len() {
        return saved.restore(sent);
    }
    // The whole chunk went out; the rest is an ordinary sendfile. Its error
    // (EAGAIN while the handshake runs) is not reported after a partial send.
    let rest = real::sendfile(out, input, offset, count - sent as size_t);
    saved.restore(sent + rest.max(0))
}

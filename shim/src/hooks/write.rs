//! The write family. The first write on a deferred socket becomes
//! sendto()/sendmsg() with MSG_FASTOPEN to the recorded destination: the
//! kernel puts the data in the SYN and returns exactly what its own deferred
//! socket would (spec §6). Every later write is the real call.

use crate::deferred::{Destination, Phase, Socket};
use crate::errno::{self, Saved};
use crate::kernel::MSG_FASTOPEN;
use crate::{fdtable, real};
use libc::{c_int, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

/// The socket behind `fd` if its SYN has not left yet.
#[inline(always)]
pub fn unsent(fd: c_int) -> Option<&'static Socket> {
    fdtable::lookup(fd).filter(|socket| socket.phase().before_syn())
}

export_fd! {
    fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t,
    if let Some(socket) = unsent(fd) => {
        first_write(socket, |to| real::sendto(fd, buf, len, MSG_FASTOPEN, to.as_ptr(), to.len()))
            .unwrap_or_else(|| real::write(fd, buf, len))
    }

    fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t,
    if let Some(socket) = unsent(fd) => {
        first_write(socket, |to| real::sendto(fd, buf, len, flags | MSG_FASTOPEN, to.as_ptr(), to.len()))
            .unwrap_or_else(|| real::send(fd, buf, len, flags))
    }

    /// A deferred socket ignores the address given here and uses connect()'s.
    fn sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, alen: socklen_t) -> ssize_t,
    if let Some(socket) = unsent(fd) => {
        first_write(socket, |to| real::sendto(fd, buf, len, flags | MSG_FASTOPEN, to.as_ptr(), to.len()))
            .unwrap_or_else(|| real::sendto(fd, buf, len, flags, addr, alen))
    }

    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t,
    if let Some(socket) = unsent(fd).filter(|_| !msg.is_null()) => {
        first_write(socket, |to| real::sendmsg(fd, &addressed(*msg, to), flags | MSG_FASTOPEN))
            .unwrap_or_else(|| real::sendmsg(fd, msg, flags))
    }

    fn writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t,
    if let Some(socket) = unsent(fd) => {
        // SAFETY: an all-zero msghdr is valid; we fill the fields writev has.
        let mut msg: msghdr = std::mem::zeroed();
        msg.msg_iov = iov as *mut iovec;
        msg.msg_iovlen = count as _;
        first_write(socket, |to| real::sendmsg(fd, &addressed(msg, to), MSG_FASTOPEN))
            .unwrap_or_else(|| real::writev(fd, iov, count))
    }
}

/// `msg` sent to the recorded destination instead of its own address.
fn addressed(mut msg: msghdr, to: &Destination) -> msghdr {
    msg.msg_name = to.as_ptr() as *mut c_void;
    msg.msg_namelen = to.len();
    msg
}

/// Sends the deferred SYN with the first data through `send_syn`. `None`
/// when the SYN has already left: the caller makes the real call. If another
/// thread is sending the SYN right now, wait for it, as the socket lock
/// would make us.
pub fn first_write(socket: &Socket, send_syn: impl FnOnce(&Destination) -> ssize_t) -> Option<ssize_t> {
    loop {
        match socket.begin(Phase::Deferred, Phase::Sending) {
            Ok(()) => break,
            Err(Phase::Connecting | Phase::Sending) => {
                let saved = Saved::take();
                socket.wait_while(|p| matches!(p, Phase::Connecting | Phase::Sending), None);
                saved.restore(());
            }
            Err(_) => return None,
        }
    }
    let result = send_syn(&socket.destination());
    let err = errno::get();
    // EOPNOTSUPP: client Fast Open was switched off after connect(); the
    // kernel's socket stays deferred in SYN_SENT and so does ours.
    let stays_deferred = result < 0 && err == libc::EOPNOTSUPP;
    socket.enter(if stays_deferred { Phase::Deferred } else { Phase::Kernel });
    errno::set(err);
    Some(result)
}

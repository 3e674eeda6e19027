//! connect(), shutdown() and getsockname() on a TCP_FASTOPEN_CONNECT socket
//! (spec §4, §5, §10, §11).
//!
//! With a cookie cached for (source, destination), or in a no-cookie mode,
//! the kernel defers: connect() returns 0 and nothing is sent. Otherwise it
//! sends a SYN carrying a cookie request at once. Both are reproduced on an
//! ordinary kernel socket; anything unusual goes to the real connect(), so
//! the kernel reports its own errors.

use super::{still_unsent, unsent};
use crate::deferred::{Endpoints, Phase, SockAddr, Socket, Wait, FLAG_COOKIE_REQUESTED};
use crate::errno::{self, Saved};
use crate::kernel::{self, MSG_FASTOPEN, TCP_CLOSE, TFO_CLIENT_ENABLE, TFO_CLIENT_NO_COOKIE};
use crate::log::{debug, warning};
use crate::{fdtable, real};
use libc::{c_int, sockaddr, socklen_t};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

export_fd! {
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int,
    if let Some(socket) = fdtable::lookup(fd).filter(|s| s.option() == 1) => {
        connect_fastopen(fd, socket, addr, len)
    }

    /// shutdown() of a deferred socket is a disconnect that sends nothing.
    fn shutdown(fd: c_int, how: c_int) -> c_int,
    if let Some(socket) = unsent(fd).filter(|_| (libc::SHUT_RD..=libc::SHUT_RDWR).contains(&how)) => {
        let saved = Saved::take();
        if still_unsent(fd, socket) && disconnect(fd, socket) {
            return saved.restore(0);
        }
        saved.restore(());
        real::shutdown(fd, how)
    }

    /// A deferred socket already has its local address and port.
    fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int,
    if let Some(socket) = unsent(fd) => {
        let saved = Saved::take();
        if !still_unsent(fd, socket) || matches!(socket.phase(), Phase::Connecting) {
            saved.restore(());
            return real::getsockname(fd, addr, len);
        }
        if len.is_null() || (addr.is_null() && *len > 0) {
            return errno::fail(libc::EFAULT);
        }
        if (*len as c_int) < 0 {
            return errno::fail(libc::EINVAL);
        }
        socket.endpoints().local.copy_out(addr, len);
        saved.restore(0)
    }
}

unsafe fn connect_fastopen(fd: c_int, socket: &Socket, addr: *const sockaddr, len: socklen_t) -> c_int {
    let saved = Saved::take();
    let unspec = !addr.is_null()
        && len as usize >= std::mem::size_of::<libc::sa_family_t>()
        && c_int::from((*addr).sa_family) == libc::AF_UNSPEC;
    match socket.phase() {
        phase if phase.before_syn() && still_unsent(fd, socket) => {
            if unspec && disconnect(fd, socket) {
                return saved.restore(0);
            }
            saved.restore(());
            return connect_again(fd, socket, addr, len);
        }
        Phase::Armed => {}
        _ => {
            if kernel::tcp_state(fd) != Some(TCP_CLOSE) || unspec {
                saved.restore(());
                return real::connect(fd, addr, len);
            }
            // Back in CLOSE after an RST, timeout or disconnect: the kernel's
            // flag survives tcp_disconnect(), so the next connect defers again.
            if socket.begin(Phase::Kernel, Phase::Armed).is_ok() {
                socket.clear_flag(FLAG_COOKIE_REQUESTED);
            }
        }
    }
    // Only a well-formed address of the socket's own family is ours; the
    // kernel answers the rest (EINVAL, EAFNOSUPPORT, AF_UNSPEC disconnect).
    let family = socket.family();
    let Some(ip) = kernel::ip_of(addr, len).filter(|_| c_int::from((*addr).sa_family) == family) else {
        saved.restore(());
        return real::connect(fd, addr, len);
    };
    if let Some(local) = deferral(fd, family, addr, len, ip) {
        if socket.begin(Phase::Armed, Phase::Connecting).is_ok() {
            socket.record_endpoints(Endpoints { remote: SockAddr::copy_from(addr, len), local });
            socket.enter(Phase::Deferred);
            super::epoll::hold(fd);
            debug!("fd {fd}: connect deferred until the first write");
            return saved.restore(0);
        }
        saved.restore(());
        return connect_again(fd, socket, addr, len);
    }
    saved.restore(());
    request_cookie(fd, socket, addr, len)
}

/// The kernel defers when it holds a cookie for (source, destination), or
/// when a no-cookie mode is on. Deferring needs what the kernel's connect()
/// already did: a route (its source address) and a local port. Without them
/// there is no deferral, and the kernel's connect reports the error itself.
/// Returns the local address a deferred socket reports.
unsafe fn deferral(fd: c_int, family: c_int, addr: *const sockaddr, len: socklen_t, dest: IpAddr) -> Option<SockAddr> {
    let local = kernel::local_address(fd)?;
    let source = kernel::source_for(fd, &local, family, addr, len)?;
    // The cookie first: with one (the common case) the no-cookie knobs do
    // not matter, and reading them costs four system calls.
    if !has_cookie(dest, source) && !no_cookie_mode(fd) {
        return None;
    }
    let mut local = kernel::with_local_port(fd, family, local)?;
    local.set_ip(source);
    Some(local)
}

/// Client no-cookie mode: the sysctl bit or the socket option (spec §2).
fn no_cookie_mode(fd: c_int) -> bool {
    kernel::fastopen_sysctl().unwrap_or(TFO_CLIENT_ENABLE) & TFO_CLIENT_NO_COOKIE != 0 || kernel::socket_no_cookie(fd)
}

fn has_cookie(dest: IpAddr, source: IpAddr) -> bool {
    static WARNED: AtomicBool = AtomicBool::new(false);
    match cookie_store::has_cookie(dest, Some(source)) {
        Ok(cached) => cached,
        Err(e) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                warning!("cannot read the kernel's Fast Open cookies ({e}); connecting without deferral");
            }
            false
        }
    }
}

/// No cookie: the SYN leaves now and asks for one. A zero-length
/// sendto(MSG_FASTOPEN) is exactly that connect: a cookie-request SYN,
/// EINPROGRESS when non-blocking, the handshake's result when blocking.
unsafe fn request_cookie(fd: c_int, socket: &Socket, addr: *const sockaddr, len: socklen_t) -> c_int {
    let r = real::sendto(fd, std::ptr::null(), 0, MSG_FASTOPEN | libc::MSG_NOSIGNAL, addr, len);
    if r == 0 || errno::get() == libc::EINPROGRESS {
        // The SYN left, and tcp_connect_init() cleared any old sk_err.
        socket.set_pending_error(0);
    }
    if r < 0 && errno::get() == libc::EOPNOTSUPP {
        // Client Fast Open is off in this netns. The kernel's connect() does
        // not check that, so a plain connect is what it would do.
        return real::connect(fd, addr, len);
    }
    socket.set_flag(FLAG_COOKIE_REQUESTED);
    socket.enter(Phase::Kernel);
    // Registrations held since a disconnect go back to the kernel.
    let saved = Saved::take();
    super::epoll::release(fd);
    saved.restore(r as c_int)
}

/// connect() again before the deferred SYN has left (spec §4): EISCONN at
/// once when non-blocking. A blocking one sleeps like inet_wait_for_connect
/// while the socket is in SYN_SENT: EISCONN when SO_SNDTIMEO expires, and
/// the kernel's own answer once a write has sent the SYN.
unsafe fn connect_again(fd: c_int, socket: &Socket, addr: *const sockaddr, len: socklen_t) -> c_int {
    let saved = Saved::take();
    if kernel::is_nonblocking(fd) {
        return errno::fail(libc::EISCONN);
    }
    match socket.wait_while(Phase::before_syn, kernel::deadline(fd, libc::SO_SNDTIMEO), || still_unsent(fd, socket)) {
        Wait::Changed => {
            saved.restore(());
            real::connect(fd, addr, len)
        }
        Wait::TimedOut => errno::fail(libc::EISCONN),
        Wait::Interrupted => errno::fail(libc::EINTR),
    }
}

/// tcp_disconnect() of a deferred socket: back to CLOSE without a packet,
/// ECONNRESET pending (spec §11). The local port stays, as in the kernel.
fn disconnect(fd: c_int, socket: &Socket) -> bool {
    if socket.begin(Phase::Deferred, Phase::Armed).is_err() {
        return false;
    }
    socket.set_pending_error(libc::ECONNRESET);
    // Held epoll registrations now report the disconnect (epoll.rs).
    super::epoll::rearm(fd);
    true
}

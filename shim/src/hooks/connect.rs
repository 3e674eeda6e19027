//! connect(), shutdown(), getsockname() and getpeername() (spec §4, §5,
//! §10, §11).
//!
//! Explicit sockets (the program set TCP_FASTOPEN_CONNECT, emulated): with
//! a cookie cached for (source, destination), or in a no-cookie mode, the
//! kernel defers: connect() returns 0 and nothing is sent; otherwise it
//! sends a SYN carrying a cookie request at once. Both are reproduced on an
//! ordinary kernel socket; anything unusual goes to the real connect(), so
//! the kernel reports its own errors.
//!
//! Auto mode: a TCP socket made by `socket()` that connects to a destination
//! the policy admits gets the kernel's own TCP_FASTOPEN_CONNECT (or the
//! emulation where the kernel lacks it), and is tracked while its SYN is
//! deferred. The program sees a connected socket: getpeername() names the
//! destination, and shutdown() first starts the connection.

use super::syn::{self, auto_unsent};
use super::{still_unsent, unsent};
use crate::addr::SockAddr;
use crate::config::{self, Backend};
use crate::errno::{check, Errno, SysResult};
use crate::export::{Answer, Done, Real};
use crate::fdtable::{self, Entry};
use crate::kernel::{self, MSG_FASTOPEN, TCP_FASTOPEN_CONNECT, TCP_SYN_SENT, TFO_CLIENT_NO_COOKIE};
use crate::log::{debug, warning};
use crate::state::{Endpoints, Engine, Phase, Wait, FLAG_HAS_CONNECTED, FLAG_KERNEL_CONNECTED, FLAG_KERNEL_CONNECTING, FLAG_KERNEL_DISCONNECTING, FLAG_HAS_LISTENED, FLAG_LISTENING};
use crate::stats::{self, Counter};
use crate::{failures, fetch, memo, policy, real};
use libc::{c_int, sockaddr, socklen_t};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

/// What move_addr_to_kernel() and inet_stream_connect() check first.
pub fn well_formed(addr: *const sockaddr, len: socklen_t) -> bool {
    (len as usize) >= std::mem::size_of::<libc::sa_family_t>()
        && (len as usize) <= std::mem::size_of::<libc::sockaddr_storage>()
        && kernel::readable(addr.cast(), len as usize)
}

/// What connect() finds on the fd.
pub enum ConnectTarget {
    Tracked(&'static Entry),
    Candidate,
}

#[inline(always)]
fn connect_target(fd: c_int) -> Option<ConnectTarget> {
    match fdtable::lookup(fd) {
        Some(entry) if entry.conn.is_auto() || entry.conn.option() == 1 => Some(ConnectTarget::Tracked(entry)),
        _ if fdtable::is_candidate(fd) && config::get().mode == crate::config::Mode::Auto => Some(ConnectTarget::Candidate),
        Some(entry) => Some(ConnectTarget::Tracked(entry)),
        None => None,
    }
}

export_fd! {
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int,
    if let Some(target: ConnectTarget) = connect_target(fd) => {
        // An address the kernel refuses before anything else (EFAULT,
        // EINVAL: longer than a sockaddr_storage, shorter than a family)
        // gets the kernel's answer.
        if !well_formed(addr, len) {
            return Real;
        }
        match target {
            ConnectTarget::Candidate => {
                // A bad address is the kernel's to report (EFAULT, EINVAL).
                if address_error(addr, len).is_some() {
                    fdtable::clear_candidate(fd);
                    return Real;
                }
                // SAFETY: readable for `len` bytes (checked above).
                let dest = unsafe { SockAddr::inet(addr, len) };
                auto_connect(fd, dest)
            }
            ConnectTarget::Tracked(entry) if entry.conn.is_auto() => {
                // SAFETY: the address is readable (well_formed).
                if unsafe { SockAddr::is_unspec(addr, len) } {
                    // A disconnect, the kernel's to make. A SYN with data
                    // still unanswered is the program's to drop: its reset
                    // (tcp_disconnect's ECONNRESET) is not retried.
                    // SAFETY: the caller's arguments.
                    let result = check(unsafe { real::connect(fd, addr, len) });
                    if entry.conn.is_confirming() && entry.conn.begin_resolve() {
                        entry.conn.resolved();
                    }
                    return Done(result);
                }
                // Connecting again: the program's socket is a connected one
                // to it (its connect() said 0), which says EISCONN.
                if auto_unsent(entry) {
                    syn::kick(fd, entry, Counter::KicksWait);
                }
                Done(Err(Errno(libc::EISCONN)))
            }
            ConnectTarget::Tracked(entry) if entry.conn.option() == 1 => {
                // The kernel checks the address first, whatever the state.
                if let Some(e) = address_error(addr, len) {
                    return Done(Err(e));
                }
                // SAFETY: readable for `len` bytes (checked above).
                let (dest, unspec) = unsafe { (SockAddr::inet(addr, len), SockAddr::is_unspec(addr, len)) };
                explicit_connect(fd, entry, (addr, len), dest, unspec)
            }
            ConnectTarget::Tracked(entry) => {
                // Option off: the kernel's connect, which may void a
                // shutdown noted before (see forget_shutdown).
                // SAFETY: the caller's arguments (checked readable above).
                let result = check(unsafe { real::connect(fd, addr, len) });
                // SAFETY: readable for `len` bytes (checked above).
                forget_shutdown(entry, unsafe { SockAddr::is_unspec(addr, len) }, result);
                Done(result)
            }
        }
    }
}

export_fd! {
    /// shutdown() of a deferred socket: explicit, a disconnect that sends
    /// nothing (spec §11); auto mode, the connection starts first (an empty
    /// request still reaches the server), and a SYN still in flight is
    /// waited for (a shutdown in SYN_SENT would drop the connection).
    fn shutdown(fd: c_int, how: c_int) -> c_int,
    if let Some(target: ShutdownTarget) = shutdown_target(fd, how) => {
        match target {
            ShutdownTarget::Tracked(entry) => {
                super::follow(fd, entry);
                shutdown_tracked(fd, how, entry)
            }
            ShutdownTarget::Early => shutdown_early(fd, how),
        }
    }
}

export_tracked! {
    /// A deferred socket already has its local address and port.
    fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int,
    if let Some(entry) = unsent(fd).filter(|e| e.conn.engine() == Engine::Emulated) => {
        if !still_unsent(fd, entry) || entry.conn.phase() == crate::state::Phase::Connecting {
            return Real;
        }
        // SAFETY: getsockname's contract for `addr` and `len`.
        Done(unsafe { copy_address(&entry.conn.endpoints().local, addr, len) })
    }

    /// Auto mode: the program believes it is connected, and may log or
    /// check its peer right away (the kernel's deferred socket would say
    /// ENOTCONN until the handshake).
    fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int,
    if let Some(entry) = super::attention(fd).filter(|e| e.conn.is_auto()) => {
        if !(entry.conn.is_unsent() || kernel::tcp_state(fd) == Some(TCP_SYN_SENT)) {
            return Real;
        }
        // SAFETY: getpeername's contract for `addr` and `len`.
        Done(unsafe { copy_address(&entry.conn.endpoints().remote, addr, len) })
    }
}

/// shutdown() of a tracked socket.
fn shutdown_tracked(fd: c_int, how: c_int, entry: &Entry) -> Answer<c_int> {
    let conn = &entry.conn;
    if conn.has_flag(FLAG_LISTENING) {
        // Shutting a listener's reading side disconnects it: back in
        // CLOSE, an ordinary socket again (sk_shutdown cleared).
        // SAFETY: the caller's arguments.
        let result = crate::errno::check(unsafe { real::shutdown(fd, how) });
        if result.is_ok() && how != libc::SHUT_WR {
            conn.stopped_listening();
        }
        return Done(result);
    }
    if conn.phase() == Phase::Armed && !conn.is_auto() {
        // Not connected: the kernel says ENOTCONN, yet keeps the shutdown
        // (inet_shutdown), and a later deferred connect keeps it too: a
        // read of the deferred socket then ends at once.
        // SAFETY: the caller's arguments.
        let result = crate::errno::check(unsafe { real::shutdown(fd, how) });
        note_shut_sides(entry, how);
        // inet_shutdown() wakes the socket's waiters even in CLOSE: an
        // edge-triggered registration held since a disconnect fires again.
        super::registrations::rearm(fd, entry);
        return Done(result);
    }
    if !conn.needs_attention() {
        if conn.is_auto() {
            return Real;
        }
        note_shutdown(fd, entry);
        // SAFETY: the caller's arguments.
        let result = crate::errno::check(unsafe { real::shutdown(fd, how) });
        // Back in CLOSE (after a failed connect): ENOTCONN, and the
        // kernel keeps the shutdown for a later deferral, as above.
        // tcp_poll() shows only the reading side there, so the
        // writing side is noted now.
        if result == Err(Errno(libc::ENOTCONN)) && how != libc::SHUT_RD {
            conn.sides_shut(false, true);
        }
        return Done(result);
    }
    if entry.conn.is_auto() {
        if auto_unsent(entry) {
            syn::kick(fd, entry, Counter::KicksShutdown);
        }
        if kernel::tcp_state(fd) == Some(TCP_SYN_SENT) {
            let _ = kernel::wait_for(fd, libc::POLLOUT, kernel::deadline(fd, libc::SO_SNDTIMEO));
        }
        if entry.conn.is_confirming() {
            syn::resolve(fd, entry, true);
        }
        // SAFETY: the caller's arguments.
        let result = crate::errno::check(unsafe { real::shutdown(fd, how) });
        // Still in SYN_SENT, the shutdown disconnected it (tcp_disconnect's
        // ECONNRESET): the program's own doing, not a reset to retry.
        if entry.conn.is_confirming() && kernel::tcp_state(fd) == Some(kernel::TCP_CLOSE) && entry.conn.begin_resolve() {
            entry.conn.resolved();
        }
        return Done(result);
    }
    if still_unsent(fd, entry) && disconnect(fd, entry) {
        return Done(Ok(0));
    }
    Real
}

/// shutdown() of a TCP socket libtfo does not track yet, which may defer
/// later. Unconnected (CLOSE), the kernel says ENOTCONN but keeps the
/// shutdown, and a later deferred connect keeps it too; only its reading
/// side is visible then (tcp_poll), so both sides are noted now.
fn shutdown_early(fd: c_int, how: c_int) -> Answer<c_int> {
    // SAFETY: the caller's arguments.
    let result = check(unsafe { real::shutdown(fd, how) });
    if result == Err(Errno(libc::ENOTCONN)) {
        if let Some(entry) = super::mark(fd) {
            note_shut_sides(entry, how);
        }
    }
    Done(result)
}

/// The sides a shutdown made in CLOSE leaves shut for a later deferral.
fn note_shut_sides(entry: &Entry, how: c_int) {
    entry.conn.sides_shut(how != libc::SHUT_WR, how != libc::SHUT_RD);
}

/// What shutdown() finds on the fd.
pub enum ShutdownTarget {
    Tracked(&'static Entry),
    Early,
}

#[inline(always)]
fn shutdown_target(fd: c_int, how: c_int) -> Option<ShutdownTarget> {
    if !(libc::SHUT_RD..=libc::SHUT_RDWR).contains(&how) {
        return None;
    }
    match fdtable::lookup(fd) {
        Some(entry) => Some(ShutdownTarget::Tracked(entry)),
        None => fdtable::may_defer(fd).then_some(ShutdownTarget::Early),
    }
}

/// What inet_shutdown() does to the socket layer: in SYN_SENT the shutdown
/// disconnects (SS_UNCONNECTED, and the cookie request is freed); a
/// "connecting" one already back in CLOSE, or in SYN_RECV, is left
/// "disconnecting". (A first write that waited the send timeout out leaves
/// the kernel "connecting" where libtfo noted "connected".)
fn note_shutdown(fd: c_int, entry: &Entry) {
    let conn = &entry.conn;
    if !conn.has_flag(FLAG_KERNEL_CONNECTING | FLAG_KERNEL_CONNECTED) {
        return;
    }
    match kernel::tcp_state(fd) {
        Some(TCP_SYN_SENT) => conn.socket_disconnected_by_shutdown(),
        Some(kernel::TCP_CLOSE | kernel::TCP_SYN_RECV) if conn.has_flag(FLAG_KERNEL_CONNECTING) => {
            conn.socket_disconnecting();
        }
        _ => {}
    }
}

/// tcp_disconnect() of an explicit deferred socket: no packet, ECONNRESET
/// pending; held epoll registrations report the new state.
fn disconnect(fd: c_int, entry: &Entry) -> bool {
    if !entry.conn.disconnect() {
        return false;
    }
    // The unconnected socket under it goes through tcp_disconnect() too, as
    // the kernel's would: its shutdown is forgotten, TCP_INFO's rcv_mss
    // becomes the minimum (88), and the port connect() took is released.
    if kernel::disconnect_from_syn_sent(fd, &entry.conn.endpoints().remote) {
        entry.conn.underneath_connected();
    }
    super::registrations::rearm(fd, entry);
    true
}

/// getsockname()/getpeername()'s copy-out with the kernel's checks.
///
/// # Safety
/// As for those calls.
unsafe fn copy_address(source: &SockAddr, addr: *mut sockaddr, len: *mut socklen_t) -> SysResult<c_int> {
    if !kernel::readable(len.cast(), std::mem::size_of::<socklen_t>()) {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: `len` is readable (checked above).
    let room = unsafe { *len };
    if (room as c_int) < 0 {
        return Err(Errno(libc::EINVAL));
    }
    if !kernel::readable(addr.cast(), (room as usize).min(source.len() as usize)) {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: the caller's buffer of `*len` bytes.
    unsafe { source.copy_out(addr, len) };
    Ok(0)
}

/// The checks connect() makes of its address before anything else
/// (move_addr_to_kernel, then __inet_stream_connect).
fn address_error(addr: *const sockaddr, len: socklen_t) -> Option<Errno> {
    if len as i32 <= 0 || len as usize > std::mem::size_of::<libc::sockaddr_storage>() {
        return Some(Errno(libc::EINVAL));
    }
    if !kernel::readable(addr.cast(), len as usize) {
        return Some(Errno(libc::EFAULT));
    }
    (len < std::mem::size_of::<libc::sa_family_t>() as socklen_t).then_some(Errno(libc::EINVAL))
}

/// Set once the kernel answered ENOPROTOOPT to TCP_FASTOPEN_CONNECT (before
/// 4.11): from then on auto mode emulates (TFO_BACKEND=auto).
static KERNEL_LACKS_OPTION: AtomicBool = AtomicBool::new(false);

/// A fallback: count why, and let the kernel connect plainly.
fn plain(why: Counter) -> Answer<c_int> {
    stats::count(why);
    Real
}

/// Auto mode: the first connect() of a TCP socket made by socket().
fn auto_connect(fd: c_int, dest: Option<SockAddr>) -> Answer<c_int> {
    fdtable::clear_candidate(fd);
    fetch::reap(fetch::Moment::Now);
    let config = config::get();
    let Some((dest, ip)) = dest.and_then(|d| Some((d, d.ip()?))) else { return Real };
    stats::count(Counter::SocketsSeen);
    if !config.policy.admits(ip, dest.port()) {
        return plain(Counter::FallbackPolicy);
    }
    if failures::in_backoff(policy::canonical(ip)) {
        debug!("fd {fd} {dest}: recent Fast Open failure on this path; plain connect");
        return plain(Counter::FallbackFailureMemory);
    }
    // No cookie yet: this connection goes plainly, and the cookie request
    // on a connection of libtfo's own, which costs the program nothing if
    // the path drops it (fetch.rs). (In a no-cookie mode the kernel defers
    // without one.)
    // Where the cookie cache cannot be read (netlink denied), the kernel's
    // own option still can: it asks for the cookie on this SYN, as before.
    if memo::cookie_cached(policy::canonical(ip), IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)) == Some(false) && !no_cookie_mode(fd) {
        ask_for_cookie(fd, &dest);
        return plain(Counter::FallbackNoCookie);
    }
    let engine = match config.backend {
        Backend::Emulate => Engine::Emulated,
        Backend::Auto if KERNEL_LACKS_OPTION.load(Ordering::Relaxed) => Engine::Emulated,
        Backend::Auto | Backend::Kernel => Engine::Kernel,
    };
    match engine {
        Engine::Kernel => kernel_deferral(fd, dest),
        Engine::Emulated => emulated_deferral(fd, dest, ip),
    }
}

/// Starts a cookie fetch for `dest` beside the program's socket `fd`,
/// unless the path it would take is in backoff.
fn ask_for_cookie(fd: c_int, dest: &SockAddr) {
    let Ok(local) = kernel::local_address(fd) else { return };
    let Some(source) = memo::source_for(fd, &local, dest) else { return };
    if failures::path_in_backoff(source) {
        debug!("fd {fd} {dest}: Fast Open fails on the path from {source}; no cookie request");
        return;
    }
    fetch::start(fd, dest, source);
}

/// A path in backoff gets no Fast Open: the socket's own source address
/// names it (`None` when it cannot be read: no backoff known).
fn path_stopped(source: Option<IpAddr>) -> bool {
    source.is_some_and(|s| !s.is_unspecified() && failures::path_in_backoff(s))
}

/// The kernel's own deferred connect, the default where it exists: one
/// setsockopt, then the real connect; the socket is tracked only while its
/// SYN has not left.
fn kernel_deferral(fd: c_int, dest: SockAddr) -> Answer<c_int> {
    match kernel::set_int_option(fd, libc::IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1) {
        Ok(()) => {}
        Err(Errno(libc::ENOPROTOOPT)) => {
            KERNEL_LACKS_OPTION.store(true, Ordering::Relaxed);
            if config::get().backend == Backend::Auto {
                let Some(ip) = dest.ip() else { return Real };
                return emulated_deferral(fd, dest, ip);
            }
            return plain(Counter::FallbackDisabled);
        }
        // Client Fast Open is off in this namespace: pass through silently.
        Err(Errno(libc::EOPNOTSUPP)) => return plain(Counter::FallbackDisabled),
        Err(_) => return plain(Counter::FallbackError),
    }
    // SAFETY: `dest` is a valid address of its length.
    let result = check(unsafe { real::connect(fd, dest.as_ptr(), dest.len()) });
    // A blocking connect without a cookie returns 0 after the handshake;
    // only a socket left in SYN_SENT was deferred.
    if result.is_ok() && kernel::tcp_state(fd) == Some(TCP_SYN_SENT) {
        let Some(entry) = super::mark(fd) else {
            // Cannot be tracked (fd beyond the table): start it now, or a
            // read-first program would wait forever.
            let _ = kernel::send_nothing(fd, libc::MSG_DONTWAIT);
            stats::count(Counter::FallbackError);
            return Done(result);
        };
        // Deferred: the kernel chose the source address, and so the path.
        if path_stopped(kernel::local_address(fd).ok().and_then(|a| a.ip())) {
            fdtable::forget(fd);
            return Done(undo_deferral(fd, &dest));
        }
        entry.conn.start_auto(Engine::Kernel, dest.family(), Endpoints { remote: dest, local: SockAddr::empty() });
        stats::count(Counter::ConnectionsDeferred);
        debug!("fd {fd} {dest}: connect deferred (kernel)");
    }
    Done(result)
}

/// Takes back the kernel's deferred connect (a disconnect that sends
/// nothing from SYN_SENT, then the option off) and connects plainly, as
/// the program asked.
fn undo_deferral(fd: c_int, dest: &SockAddr) -> SysResult<c_int> {
    let unspec = SockAddr::any(libc::AF_UNSPEC);
    // SAFETY: a valid AF_UNSPEC address.
    let _ = check(unsafe { real::connect(fd, unspec.as_ptr(), unspec.len()) });
    // Only back in CLOSE may the option change (EINVAL in SYN_SENT).
    let _ = kernel::set_int_option(fd, libc::IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 0);
    stats::count(Counter::FallbackFailureMemory);
    // SAFETY: `dest` is a valid address of its length.
    check(unsafe { real::connect(fd, dest.as_ptr(), dest.len()) })
}

/// The emulation, for kernels without TCP_FASTOPEN_CONNECT (or when asked).
fn emulated_deferral(fd: c_int, dest: SockAddr, ip: IpAddr) -> Answer<c_int> {
    let Some(family) = kernel::tcp_family(fd).filter(|&f| f == dest.family()) else { return Real };
    if !kernel::client_fastopen_enabled() {
        return plain(Counter::FallbackDisabled);
    }
    match deferral(fd, family, &dest, ip) {
        Some(local) if path_stopped(local.ip()) => plain(Counter::FallbackFailureMemory),
        Some(local) => {
            let Some(entry) = super::mark(fd) else { return plain(Counter::FallbackError) };
            entry.conn.start_auto(Engine::Emulated, family, Endpoints { remote: dest, local });
            // Registrations made before connect() are hidden from the kernel now.
            super::registrations::hold(fd, entry);
            stats::count(Counter::ConnectionsDeferred);
            debug!("fd {fd} {dest}: connect deferred (emulated)");
            Done(Ok(0))
        }
        // No cookie yet: ask for one with this connection's SYN.
        // SAFETY: a zero-length sendto reads no memory; `dest` is valid.
        None => match check(unsafe { real::sendto(fd, std::ptr::null(), 0, MSG_FASTOPEN | libc::MSG_NOSIGNAL, dest.as_ptr(), dest.len()) }) {
            Err(Errno(libc::EOPNOTSUPP)) => plain(Counter::FallbackDisabled),
            r => Done(r.map(|n| n as c_int)),
        },
    }
}

/// Explicit socket: TCP_FASTOPEN_CONNECT as the kernel does it.
fn explicit_connect(fd: c_int, entry: &Entry, given: (*const sockaddr, socklen_t), dest: Option<SockAddr>, unspec: bool) -> Answer<c_int> {
    let conn = &entry.conn;
    let phase = conn.phase();
    if unspec {
        // tcp_disconnect() clears sk_shutdown: a shutdown before connecting
        // is forgotten.
        conn.shutdown_forgotten();
    }
    if phase.unsent() && still_unsent(fd, entry) {
        if unspec && disconnect(fd, entry) {
            return Done(Ok(0));
        }
        return connect_again(fd, entry);
    }
    // The kernel socket is the truth: the program may have sent its own SYN
    // (sendto with MSG_FASTOPEN) on an armed socket, and then the kernel
    // answers (EALREADY, EISCONN).
    // Back in CLOSE after an RST, timeout or disconnect, the socket layer
    // may still say "connecting" (a failure no connect() has seen yet: it
    // is reported first) or "connected" (EISCONN until a disconnect).
    // A socket that listened once is the kernel's to answer too (6.18 says
    // EINVAL; an older kernel connects it plainly).
    let socket_layer_busy = conn.has_flag(FLAG_KERNEL_CONNECTING | FLAG_KERNEL_CONNECTED | FLAG_KERNEL_DISCONNECTING | FLAG_HAS_LISTENED);
    if kernel::tcp_state(fd) != Some(kernel::TCP_CLOSE) || (unspec && phase != crate::state::Phase::Armed) || socket_layer_busy {
        if phase == crate::state::Phase::Armed {
            conn.connected_without_deferral(false);
        }
        if unspec {
            // A disconnect also frees a cookie request.
            conn.cookie_request_freed();
        }
        // SAFETY: the caller's arguments (checked readable by the guard).
        let result = check(unsafe { real::connect(fd, given.0, given.1) });
        note_socket_layer(entry, unspec, result);
        return Done(result);
    }
    // Otherwise the kernel's flag survives tcp_disconnect(), so this connect
    // defers again, and an error left in sk_err stays for the next call.
    // So does a reading side shut since (sk_shutdown; tcp_disconnect clears it).
    if phase == Phase::Kernel {
        hold_kernel_error(fd, entry);
        // The writing side is not visible in CLOSE: FLAG_WRITE_SHUT holds
        // what the program shut there since the last disconnect.
        conn.reading_side_is(kernel::reading_shut(fd));
    }
    // libtfo follows this socket only since its option was set, so what
    // was done to it before (a shutdown in another process, an error a
    // disconnect left while the option was off) is the kernel's to tell:
    // it never deferred, so its state is the truth.
    let fresh = phase == Phase::Armed && !conn.has_flag(FLAG_HAS_CONNECTED);
    conn.rearm();
    // Only a well-formed address of the socket's own family is ours; the
    // kernel answers the rest (EINVAL, EAFNOSUPPORT, AF_UNSPEC disconnect).
    let Some((dest, ip)) = dest.filter(|d| d.family() == conn.family()).and_then(|d| Some((d, d.ip()?))) else {
        return Real;
    };
    if fresh {
        hold_kernel_error(fd, entry);
        if kernel::reading_shut(fd) {
            conn.sides_shut(true, false);
        }
    }
    stats::count(Counter::SocketsSeen);
    if let Some(local) = deferral(fd, conn.family(), &dest, ip) {
        if conn.begin_connect() {
            conn.deferred(Endpoints { remote: dest, local });
            stats::count(Counter::ConnectionsDeferred);
            super::registrations::hold(fd, entry);
            debug!("fd {fd} {dest}: connect deferred until the first write");
            return Done(Ok(0));
        }
        return connect_again(fd, entry);
    }
    request_cookie(fd, entry, &dest)
}

/// The kernel socket's pending error (sk_err) becomes libtfo's to report:
/// the deferral about to be made hides the kernel socket from the program.
fn hold_kernel_error(fd: c_int, entry: &Entry) {
    match kernel::take_socket_error(fd) {
        0 => {}
        e => entry.conn.hold_error(e),
    }
}

/// What a connect() the kernel answered did to its socket layer (SS_*):
/// success or EISCONN leave it connected, EINPROGRESS/EALREADY connecting,
/// a disconnect or any other error unconnected.
fn note_socket_layer(entry: &Entry, unspec: bool, result: SysResult<c_int>) {
    // "Disconnecting" refuses every connect (EINVAL) but a disconnect.
    if entry.conn.has_flag(FLAG_KERNEL_DISCONNECTING) {
        if !unspec {
            return;
        }
        entry.conn.socket_disconnecting_ended();
    }
    let (connected, connecting) = match result {
        _ if unspec => (false, false),
        Ok(_) | Err(Errno(libc::EISCONN)) => (true, false),
        Err(Errno(libc::EINPROGRESS | libc::EALREADY)) => (false, true),
        Err(_) => (false, false),
    };
    entry.conn.socket_connect_went(connecting, connected);
    // A failure reported by connect() disconnects the socket
    // (__inet_stream_connect), which frees a cookie request.
    if !connected && !connecting {
        entry.conn.cookie_request_freed();
    }
    forget_shutdown(entry, unspec, result);
}

/// A connect() the kernel answered ends what libtfo noted of a shutdown
/// made in CLOSE when it disconnected the socket (AF_UNSPEC, or a failure
/// after the SYN: tcp_disconnect() clears sk_shutdown), or when its SYN
/// left (the socket defers again only after such a disconnect). Errors
/// found before the SYN (address, route, port) leave the shutdown be.
fn forget_shutdown<T>(entry: &Entry, unspec: bool, result: SysResult<T>) {
    let voids = unspec
        || matches!(result, Ok(_) | Err(Errno(libc::EINPROGRESS | libc::EINTR | libc::ECONNREFUSED | libc::ETIMEDOUT | libc::ECONNRESET | libc::ECONNABORTED | libc::EPIPE)));
    if voids {
        entry.conn.shutdown_forgotten();
    }
}

/// The kernel defers when it holds a cookie for (source, destination), or
/// when a no-cookie mode is on. Deferring needs what the kernel's connect()
/// already did: a route (its source address) and a local port. Without them
/// there is no deferral, and the kernel's connect reports the error itself.
/// Returns the local address a deferred socket reports.
fn deferral(fd: c_int, family: c_int, dest: &SockAddr, ip: IpAddr) -> Option<SockAddr> {
    // An IPv6-only socket cannot reach an IPv4-mapped address: the
    // kernel's connect says so (ENETUNREACH).
    if matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()) && kernel::int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) == Ok(1) {
        return None;
    }
    // No TCP to a broadcast or multicast address (ENETUNREACH).
    let group = match crate::policy::canonical(ip) {
        IpAddr::V4(v4) => v4.is_broadcast() || v4.is_multicast(),
        IpAddr::V6(v6) => v6.is_multicast(),
    };
    if group {
        return None;
    }
    let local = kernel::local_address(fd).ok()?;
    let source = memo::source_for(fd, &local, dest)?;
    // The cookie first: with one (the common case) the no-cookie knobs do
    // not matter, and reading them costs four system calls. Connecting to
    // the wildcard address is connecting to the local host.
    if !cookie_or_warn(wildcard_is_local(ip, source), source) && !no_cookie_mode(fd) {
        return None;
    }
    let mut local = kernel::with_local_port(fd, family, local)?;
    local.set_ip(source);
    Some(local)
}

/// 0.0.0.0 and :: as the kernel's connect() reads them: the loopback address
/// (IPv4's for an IPv6 socket bound to a v4-mapped address, tcp_v6_connect).
fn wildcard_is_local(ip: IpAddr, source: IpAddr) -> IpAddr {
    match crate::policy::canonical(ip) {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() && crate::policy::canonical(source).is_ipv4() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// The emulation needs the cookie cache: one that cannot be read (netlink
/// denied) means no deferral, said once.
fn cookie_or_warn(dest: IpAddr, source: IpAddr) -> bool {
    memo::cookie_cached(dest, source).unwrap_or_else(|| {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !WARNED.swap(true, Ordering::Relaxed) {
            warning!("cannot read the kernel's Fast Open cookies; connecting without deferral");
        }
        false
    })
}

/// Client no-cookie mode: the sysctl bit or the socket option (spec §2).
fn no_cookie_mode(fd: c_int) -> bool {
    kernel::fastopen_sysctl().unwrap_or(0) & TFO_CLIENT_NO_COOKIE != 0 || kernel::socket_no_cookie(fd)
}

/// No cookie: the SYN leaves now and asks for one. A zero-length
/// sendto(MSG_FASTOPEN) is exactly that connect: a cookie-request SYN,
/// EINPROGRESS when non-blocking. A blocking one then waits in a real
/// connect(), not in the sendto: a sendto waits as a writer
/// (sk_write_pending), which makes the kernel delay its ACK of the SYN-ACK
/// and enter quick-ack mode, unlike the connect() it stands for.
fn request_cookie(fd: c_int, entry: &Entry, dest: &SockAddr) -> Answer<c_int> {
    let flags = MSG_FASTOPEN | libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    // SAFETY: a zero-length sendto reads no memory; `dest` is valid.
    let mut result = check(unsafe { real::sendto(fd, std::ptr::null(), 0, flags, dest.as_ptr(), dest.len()) });
    // tcp_connect_init() cleared any old sk_err as the SYN left: an error
    // libtfo held since a disconnect is gone too, whatever the wait below
    // reports (a failure there is connect()'s own, read as it returns).
    // EPIPE: the SYN left all the same on a socket shut down before.
    let syn_left = match result {
        Ok(_) | Err(Errno(libc::EINPROGRESS)) => true,
        Err(Errno(libc::EPIPE)) => kernel::tcp_state(fd) != Some(kernel::TCP_CLOSE),
        Err(_) => false,
    };
    if syn_left {
        entry.conn.drop_held_error();
    }
    if result == Err(Errno(libc::EINPROGRESS)) && !kernel::is_nonblocking(fd) {
        // The socket layer is "connecting": this connect() waits as the
        // first would (SO_SNDTIMEO, signals), and says EALREADY where that
        // one says EINPROGRESS (the wait ran out).
        // SAFETY: `dest` is a valid address of its length.
        result = match check(unsafe { real::connect(fd, dest.as_ptr(), dest.len()) }) {
            Err(Errno(libc::EALREADY)) => Err(Errno(libc::EINPROGRESS)),
            other => other.map(|n| n as isize),
        };
    }
    match result {
        // Client Fast Open is off in this netns. The kernel's connect() does
        // not check that, so a plain connect is what it would do.
        Err(Errno(libc::EOPNOTSUPP)) => Real,
        // A socket shut down before it connected: the SYN left, but sendto()
        // reports the shutdown (connect() would not look at it). Answer as
        // connect() would: EINPROGRESS, or the handshake's result.
        Err(Errno(libc::EPIPE)) if kernel::tcp_state(fd) != Some(kernel::TCP_CLOSE) => {
            entry.conn.connected_without_deferral(true);
            if kernel::is_nonblocking(fd) {
                entry.conn.socket_connect_went(true, false);
                return Done(Err(Errno(libc::EINPROGRESS)));
            }
            let _ = kernel::wait_for(fd, libc::POLLOUT, kernel::deadline(fd, libc::SO_SNDTIMEO));
            Done(match kernel::take_socket_error(fd) {
                0 => Ok(0),
                e => Err(Errno(e)),
            })
        }
        _ => {
            // A blocking connect that failed disconnected the socket, which
            // freed the cookie request; one a signal interrupted is still
            // connecting (SYN_SENT, the socket layer SS_CONNECTING).
            let connecting = matches!(result, Err(Errno(libc::EINPROGRESS | libc::EINTR)));
            entry.conn.connected_without_deferral(result.is_ok() || connecting);
            forget_shutdown(entry, false, result);
            entry.conn.socket_connect_went(connecting, result.is_ok());
            // Registrations held since a disconnect go back to the kernel.
            super::registrations::release(fd, entry);
            Done(result.map(|n| n as c_int))
        }
    }
}

/// connect() again before the deferred SYN has left (spec §4): EISCONN at
/// once when non-blocking. A blocking one sleeps like inet_wait_for_connect
/// while the socket is in SYN_SENT: EISCONN when SO_SNDTIMEO expires, and
/// the kernel's own answer once a write has sent the SYN.
fn connect_again(fd: c_int, entry: &Entry) -> Answer<c_int> {
    if kernel::is_nonblocking(fd) {
        return Done(Err(Errno(libc::EISCONN)));
    }
    let unsent = |p: crate::state::Phase| p.unsent();
    match entry.conn.wait_while(unsent, kernel::deadline(fd, libc::SO_SNDTIMEO), true, || still_unsent(fd, entry)) {
        Wait::Changed => Real,
        Wait::TimedOut => Done(Err(Errno(libc::EISCONN))),
        Wait::Interrupted => Done(Err(Errno(libc::EINTR))),
    }
}

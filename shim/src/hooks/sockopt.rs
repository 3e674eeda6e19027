//! setsockopt / getsockopt. TCP_FASTOPEN_CONNECT set by the program makes
//! an explicit socket: with the emulation it is validated exactly as
//! do_tcp_setsockopt() does and recorded (it never reaches the kernel);
//! with the kernel's own option it goes to the kernel. Either way auto mode
//! leaves that socket alone: the program asked for the kernel's semantics.

use super::syn;
use crate::config::{self, Backend, Mode};
use crate::errno::{Errno, SysResult};
use crate::export::{Answer, Done, Real};
use crate::fdtable::{self, Entry};
use crate::kernel::{self, TCP_CLOSE, TCP_FASTOPEN_CONNECT, TCP_SYN_SENT};
use crate::state::Engine;
use libc::{c_int, c_void, socklen_t};

fn is_fastopen_connect(level: c_int, name: c_int) -> bool {
    level == libc::IPPROTO_TCP && name == TCP_FASTOPEN_CONNECT
}

/// Whether the program's TCP_FASTOPEN_CONNECT is emulated: TFO_BACKEND
/// emulate, or auto on a kernel without the option.
fn emulated(fd: c_int, value: *const c_void, len: socklen_t) -> Option<SysResult<c_int>> {
    match config::get().backend {
        Backend::Emulate => None,
        Backend::Kernel => Some(real_set(fd, value, len)),
        Backend::Auto => match real_set(fd, value, len) {
            Err(Errno(libc::ENOPROTOOPT)) if kernel::tcp_family(fd).is_some() => None,
            other => Some(other),
        },
    }
}

fn real_set(fd: c_int, value: *const c_void, len: socklen_t) -> SysResult<c_int> {
    // SAFETY: the caller's arguments, passed on.
    crate::errno::check(unsafe { crate::real::setsockopt(fd, libc::IPPROTO_TCP, TCP_FASTOPEN_CONNECT, value, len) })
}

/// TCP options the kernel checks against the socket's state: an emulated
/// deferred socket is in SYN_SENT to the kernel, CLOSE underneath.
/// TCP_FASTOPEN and TCP_FASTOPEN_NO_COOKIE need CLOSE or LISTEN; a
/// TCP_WINDOW_CLAMP of 0 needs CLOSE. `None`: the kernel's answer is right.
fn state_checked(level: c_int, name: c_int, value: *const c_void, len: socklen_t) -> Option<Errno> {
    if level != libc::IPPROTO_TCP || !matches!(name, libc::TCP_FASTOPEN | kernel::TCP_FASTOPEN_NO_COOKIE | libc::TCP_WINDOW_CLAMP) {
        return None;
    }
    // The kernel checks the length and reads the value first.
    if (len as c_int) < std::mem::size_of::<c_int>() as c_int {
        return Some(Errno(libc::EINVAL));
    }
    if !kernel::readable(value, std::mem::size_of::<c_int>()) {
        return Some(Errno(libc::EFAULT));
    }
    // SAFETY: readable (checked above).
    let v = unsafe { std::ptr::read_unaligned(value as *const c_int) };
    (name != libc::TCP_WINDOW_CLAMP || v == 0).then_some(Errno(libc::EINVAL))
}

export! {
    fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: socklen_t) -> c_int {
        if let Some(e) = state_checked(level, name, value, len) {
            if super::unsent(fd).is_some_and(|e| e.conn.engine() == Engine::Emulated && super::still_unsent(fd, e)) {
                return Done(Err(e));
            }
        }
        if let Some(rule) = route_reset(level, name) {
            if let Some(entry) = super::unsent(fd).filter(|e| e.conn.engine() == Engine::Emulated && super::still_unsent(fd, e)) {
                // SAFETY: setsockopt's contract for `value` and `len`.
                return Done(unsafe { set_resetting_route(fd, entry, level, name, value, len, rule) });
            }
        }
        if !is_fastopen_connect(level, name) || config::get().mode == Mode::Off {
            return Real;
        }
        if let Some(entry) = fdtable::lookup(fd) {
            super::follow(fd, entry);
        }
        let result = match emulated(fd, value, len) {
            Some(result) => result,
            // SAFETY: setsockopt's contract for `value` and `len`.
            None => unsafe { set_fastopen_connect(fd, value, len) },
        };
        if result.is_ok() {
            fdtable::note_option_set(fd);
        }
        Done(result)
    }
}

/// The options whose answer libtfo may have to give itself.
fn is_ours(level: c_int, name: c_int) -> bool {
    is_fastopen_connect(level, name)
        || (level == libc::SOL_SOCKET && matches!(name, libc::SO_ERROR | libc::SO_PEERNAME))
        || (level == libc::IPPROTO_TCP && matches!(name, libc::TCP_INFO | libc::TCP_MAXSEG))
        || is_route_mtu(level, name)
}

/// When setting an option drops the socket's cached route (sk_dst_reset).
#[derive(Clone, Copy, PartialEq)]
enum RouteReset {
    Always,
    /// Only when the value changes (IP_TOS, IPV6_TCLASS, SO_MARK).
    OnChange,
}

#[inline(always)]
fn route_reset(level: c_int, name: c_int) -> Option<RouteReset> {
    match (level, name) {
        (libc::SOL_SOCKET, libc::SO_DONTROUTE | libc::SO_BINDTODEVICE | libc::SO_BINDTOIFINDEX) => Some(RouteReset::Always),
        (libc::SOL_SOCKET, libc::SO_MARK) | (libc::IPPROTO_IP, libc::IP_TOS) | (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => Some(RouteReset::OnChange),
        _ => None,
    }
}

/// An option that drops the kernel's route, set on an emulated deferred
/// socket: the kernel sets it (and answers); libtfo notes that the
/// deferred socket the program sees has no route any more.
///
/// # Safety
/// setsockopt's contract for `value` and `len`.
unsafe fn set_resetting_route(fd: c_int, entry: &Entry, level: c_int, name: c_int, value: *const c_void, len: socklen_t, rule: RouteReset) -> SysResult<c_int> {
    let read = || kernel::int_option(fd, level, name).ok();
    let before = if rule == RouteReset::OnChange { read() } else { None };
    // SAFETY: the caller's arguments.
    let result = crate::errno::check(unsafe { crate::real::setsockopt(fd, level, name, value, len) });
    if result.is_ok() && (rule == RouteReset::Always || read() != before) {
        entry.conn.route_reset();
    }
    result
}

/// IP_MTU / IPV6_MTU: the route's MTU, known once the socket has a route.
fn is_route_mtu(level: c_int, name: c_int) -> bool {
    (level == libc::IPPROTO_IP && name == libc::IP_MTU) || (level == libc::IPPROTO_IPV6 && name == libc::IPV6_MTU)
}

export_tracked! {
    fn getsockopt(fd: c_int, level: c_int, name: c_int, value: *mut c_void, len: *mut socklen_t) -> c_int,
    if let Some(entry) = fdtable::lookup(fd).filter(|_| is_ours(level, name)) => {
        let conn = &entry.conn;
        if is_fastopen_connect(level, name) {
            return match (conn.is_auto(), conn.engine()) {
                // The program never set it; it reads what it would without libtfo.
                // SAFETY: getsockopt's contract for `value` and `len`.
                (true, _) => Done(unsafe { get_int(0, value, len) }),
                // SAFETY: as above.
                (false, Engine::Emulated) if config::get().backend != Backend::Kernel => Done(unsafe { get_int(conn.option(), value, len) }),
                _ => Real,
            };
        }
        if conn.is_confirming() {
            syn::resolve(fd, entry, true);
        }
        let emulated_unsent = conn.engine() == Engine::Emulated && conn.is_unsent() && super::still_unsent(fd, entry);
        if level == libc::SOL_SOCKET && name == libc::SO_PEERNAME {
            // SAFETY: getsockopt's contract for `value` and `len`.
            return if emulated_unsent { Done(unsafe { peer_name(&conn.endpoints().remote, value, len) }) } else { Real };
        }
        if is_route_mtu(level, name) {
            // With its route dropped, the kernel's deferred socket is as
            // route-less as the unconnected one underneath (ENOTCONN).
            return if emulated_unsent && !conn.has_flag(crate::state::FLAG_ROUTE_RESET) {
                Done(route_mtu(conn.family(), &conn.endpoints().remote, level, name, value, len))
            } else {
                Real
            };
        }
        if level == libc::IPPROTO_TCP && name == libc::TCP_MAXSEG {
            // SAFETY: getsockopt's contract.
            return Done(unsafe { max_segment(fd, emulated_unsent, value, len) });
        }
        if level == libc::SOL_SOCKET {
            // SO_ERROR: sk_getsockopt() refuses a negative length first.
            // SAFETY: `len` is checked for readability before it is read.
            if kernel::readable(len.cast(), 4) && (unsafe { *len } as c_int) < 0 {
                return Done(Err(Errno(libc::EINVAL)));
            }
            return match conn.take_pending_error() {
                // SAFETY: as above.
                Some(Errno(e)) => Done(unsafe { get_int(e, value, len) }),
                None => Real,
            };
        }
        // SAFETY: getsockopt's contract.
        unsafe { tcp_info(fd, entry, value, len) }
    }
}

/// TCP_INFO of an emulated deferred socket: the kernel's would be in
/// SYN_SENT with no options yet; the unconnected socket under it says CLOSE.
///
/// # Safety
/// getsockopt's contract for `value` and `len`.
unsafe fn tcp_info(fd: c_int, entry: &Entry, value: *mut c_void, len: *mut socklen_t) -> Answer<c_int> {
    // SAFETY: the caller's arguments.
    let result = crate::errno::check(unsafe { crate::real::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, value, len) });
    // SAFETY: `len` was accepted by the kernel, so it is readable.
    let written = if result.is_ok() && !value.is_null() { (unsafe { *len }) as usize } else { 0 };
    if written >= 1 && entry.conn.engine() == Engine::Emulated && entry.conn.is_unsent() && super::still_unsent(fd, entry) {
        let info = value.cast::<u8>();
        // SAFETY: the kernel wrote `written` bytes there (min of the
        // caller's length and the structure's).
        unsafe {
            *info = TCP_SYN_SENT; // tcpi_state
            if written > 5 {
                *info.add(5) = 0; // tcpi_options
            }
        }
    }
    Done(result)
}

/// TCP_MAXSEG: in SYN_SENT the kernel reports mss_cache, in CLOSE the
/// program's own TCP_MAXSEG when it set one. The kernel checks the length
/// and writes the value; an emulated deferred socket's is then corrected.
///
/// # Safety
/// getsockopt's contract for `value` and `len`.
unsafe fn max_segment(fd: c_int, emulated_unsent: bool, value: *mut c_void, len: *mut socklen_t) -> SysResult<c_int> {
    // SAFETY: the caller's arguments.
    let result = crate::errno::check(unsafe { crate::real::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG, value, len) });
    if result.is_ok() && emulated_unsent && !value.is_null() {
        if let Some(mss) = kernel::tcp_info(fd).ok().and_then(|info| info.snd_mss) {
            // SAFETY: the kernel accepted `len`, so it is readable.
            let written = (unsafe { *len } as usize).min(4);
            // SAFETY: the kernel wrote `written` bytes (at most an int) there.
            unsafe { std::ptr::copy_nonoverlapping((mss as c_int).to_ne_bytes().as_ptr(), value.cast::<u8>(), written) };
        }
    }
    result
}

/// SO_PEERNAME of a deferred socket: the kernel names the peer of a socket
/// in SYN_SENT here (unlike getpeername), and refuses a buffer larger than
/// the address.
///
/// # Safety
/// getsockopt's contract for `value` and `len`.
unsafe fn peer_name(remote: &crate::addr::SockAddr, value: *mut c_void, len: *mut socklen_t) -> SysResult<c_int> {
    if !kernel::readable(len.cast(), std::mem::size_of::<socklen_t>()) {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: readable (checked above).
    let want = unsafe { *len } as c_int;
    if want < 0 || remote.len() < want as socklen_t {
        return Err(Errno(libc::EINVAL));
    }
    if want > 0 {
        if value.is_null() {
            return Err(Errno(libc::EFAULT));
        }
        // SAFETY: the caller's buffer of `want` bytes (getsockopt's contract).
        unsafe { std::ptr::copy_nonoverlapping(remote.as_ptr().cast::<u8>(), value.cast::<u8>(), want as usize) };
    }
    Ok(0)
}

/// IP_MTU / IPV6_MTU of a deferred socket: the route's MTU, asked of a UDP
/// socket connected to the same destination (it sends nothing).
fn route_mtu(family: c_int, remote: &crate::addr::SockAddr, level: c_int, name: c_int, value: *mut c_void, len: *mut socklen_t) -> SysResult<c_int> {
    // SAFETY: plain socket creation.
    let probe = crate::errno::check(unsafe { crate::real::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: a valid address; then the caller's buffer, as getsockopt's contract.
    let result = unsafe {
        crate::errno::check(crate::real::connect(probe, remote.as_ptr(), remote.len()))
            .and_then(|_| crate::errno::check(crate::real::getsockopt(probe, level, name, value, len)))
    };
    // SAFETY: closing the probe socket.
    unsafe { crate::real::close(probe) };
    result
}

/// The checks of do_tcp_setsockopt(), in its order (spec §3).
///
/// # Safety
/// setsockopt's contract for `value` and `len`.
#[cold]
#[inline(never)]
unsafe fn set_fastopen_connect(fd: c_int, value: *const c_void, len: socklen_t) -> SysResult<c_int> {
    // Only TCP sockets are ours; for anything else the kernel's own answer
    // (ENOTSOCK, ENOPROTOOPT, ...) is the right one.
    let Some(family) = kernel::tcp_family(fd) else { return real_set(fd, value, len) };
    if (len as c_int) < std::mem::size_of::<c_int>() as c_int {
        return Err(Errno(libc::EINVAL));
    }
    if !kernel::readable(value, std::mem::size_of::<c_int>()) {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: at least an int is readable there (checked above).
    let v = unsafe { std::ptr::read_unaligned(value as *const c_int) };
    if !(0..=1).contains(&v) {
        return Err(Errno(libc::EINVAL));
    }
    if !kernel::client_fastopen_enabled() {
        return Err(Errno(libc::EOPNOTSUPP));
    }
    let tracked = fdtable::lookup(fd).filter(|e| !e.conn.is_auto());
    // An auto-mode deferred socket is a connected one to the program.
    let auto_deferred = fdtable::lookup(fd).is_some_and(|e| e.conn.is_auto() && e.conn.is_unsent());
    let closed = match tracked.map(|e| e.conn.phase()) {
        Some(phase) if phase.unsent() => false,
        _ => !auto_deferred && kernel::tcp_state(fd) == Some(TCP_CLOSE),
    };
    if !closed {
        return Err(Errno(libc::EINVAL));
    }
    match tracked {
        // An entry a dup made before the option: it learns its family now.
        Some(entry) => {
            entry.conn.set_family(family);
            entry.conn.set_option(v)
        }
        // Setting 0 on a socket we never tracked changes nothing observable.
        None if v == 0 => {}
        None => match super::track(fd) {
            Some(entry) => {
                if fdtable::listened(fd) {
                    entry.conn.listened_before();
                }
                entry.conn.set_family(family);
                entry.conn.set_option(v)
            }
            // Out of fd range or pool: let the kernel's own option serve.
            None => return real_set(fd, value, len),
        },
    }
    Ok(0)
}

/// getsockopt of an int option, with do_tcp_getsockopt()'s length rules.
///
/// # Safety
/// getsockopt's contract for `out` and `len`.
pub unsafe fn get_int(value: c_int, out: *mut c_void, len: *mut socklen_t) -> SysResult<c_int> {
    if !kernel::readable(len.cast(), std::mem::size_of::<socklen_t>()) {
        return Err(Errno(libc::EFAULT));
    }
    // do_tcp_getsockopt() refuses a negative length, then takes
    // min(len, sizeof(int)).
    // SAFETY: `len` is readable (checked above).
    let asked = unsafe { *len };
    if (asked as c_int) < 0 {
        return Err(Errno(libc::EINVAL));
    }
    let n = asked.min(std::mem::size_of::<c_int>() as socklen_t);
    if !kernel::readable(out, n as usize) {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: `out` has room for `n` bytes (the caller's length, capped).
    unsafe {
        *len = n;
        if n > 0 {
            std::ptr::copy_nonoverlapping((&value as *const c_int).cast::<u8>(), out.cast::<u8>(), n as usize);
        }
    }
    Ok(0)
}

/// SIOCOUTQ and SIOCOUTQNSD (linux/sockios.h): the bytes not acknowledged,
/// and those not sent.
const SIOCOUTQ: libc::c_ulong = libc::TIOCOUTQ as libc::c_ulong;
const SIOCOUTQNSD: libc::c_ulong = 0x894B;

#[inline(always)]
fn send_queue_request(fd: c_int, request: libc::c_ulong) -> Option<&'static Entry> {
    if request == SIOCOUTQ || request == SIOCOUTQNSD {
        fdtable::lookup(fd)
    } else {
        None
    }
}

export_tracked! {
    /// The send-queue ioctls of a deferred socket answer 0, as tcp_ioctl()
    /// does in SYN_SENT. The emulation's socket is in CLOSE, where they give
    /// write_seq minus snd_una (or snd_nxt): 0 on a new socket, but large
    /// after a disconnect. The real call still runs, so a bad pointer gets
    /// the kernel's EFAULT. (ioctl is variadic in C; its one optional
    /// argument travels in the third argument register, so a three-argument
    /// function receives it.)
    fn ioctl(fd: c_int, request: libc::c_ulong, arg: *mut c_void) -> c_int,
    if let Some(entry) = send_queue_request(fd, request) => {
        if entry.conn.engine() != Engine::Emulated || !super::still_unsent(fd, entry) {
            return Real;
        }
        // SAFETY: ioctl's contract for `arg` (an int for these requests).
        let result = crate::errno::check(unsafe { crate::real::ioctl(fd, request, arg) });
        if result.is_ok() {
            // SAFETY: the kernel has just written an int there.
            unsafe { *arg.cast::<c_int>() = 0 };
        }
        Done(result)
    }
}

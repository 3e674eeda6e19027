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

export! {
    fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: socklen_t) -> c_int {
        if !is_fastopen_connect(level, name) || config::get().mode == Mode::Off {
            return Real;
        }
        let result = match emulated(fd, value, len) {
            Some(result) => result,
            // SAFETY: setsockopt's contract for `value` and `len`.
            None => unsafe { set_fastopen_connect(fd, value, len) },
        };
        if result.is_ok() {
            fdtable::clear_candidate(fd);
        }
        Done(result)
    }
}

/// The options whose answer libtfo may have to give itself.
fn is_ours(level: c_int, name: c_int) -> bool {
    is_fastopen_connect(level, name)
        || (level == libc::SOL_SOCKET && name == libc::SO_ERROR)
        || (level == libc::IPPROTO_TCP && name == libc::TCP_INFO)
}

export_fd! {
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
        if level == libc::SOL_SOCKET {
            // SO_ERROR: sk_getsockopt() refuses a negative length first.
            // SAFETY: `len` is checked for null before it is read.
            if !len.is_null() && (unsafe { *len } as c_int) < 0 {
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
    let long_enough = result.is_ok() && !value.is_null() && unsafe { *len } >= 8;
    if long_enough && entry.conn.engine() == Engine::Emulated && entry.conn.is_unsent() && super::still_unsent(fd, entry) {
        let info = value.cast::<u8>();
        // SAFETY: the kernel wrote at least 8 bytes there.
        unsafe {
            *info = TCP_SYN_SENT; // tcpi_state
            *info.add(5) = 0; // tcpi_options
        }
    }
    Done(result)
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
    if value.is_null() {
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
    let closed = match tracked.map(|e| e.conn.phase()) {
        Some(phase) if phase.unsent() => false,
        _ => kernel::tcp_state(fd) == Some(TCP_CLOSE),
    };
    if !closed {
        return Err(Errno(libc::EINVAL));
    }
    match tracked {
        Some(entry) => entry.conn.set_option(v),
        // Setting 0 on a socket we never tracked changes nothing observable.
        None if v == 0 => {}
        None => match super::track(fd) {
            Some(entry) => {
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
    if len.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    // min_t(unsigned int, len, sizeof(int)): a negative length reads as huge.
    // SAFETY: `len` is not null (checked), and the caller's to read.
    let n = unsafe { *len }.min(std::mem::size_of::<c_int>() as socklen_t);
    if n > 0 && out.is_null() {
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

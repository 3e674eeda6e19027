//! setsockopt / getsockopt: TCP_FASTOPEN_CONNECT is validated exactly as
//! do_tcp_setsockopt() does and recorded; it never reaches the kernel.

use crate::config::{self, Backend};
use crate::errno::{self, Saved};
use crate::deferred::Socket;
use crate::kernel::{self, TCP_CLOSE, TCP_FASTOPEN_CONNECT, TCP_SYN_SENT, TFO_CLIENT_ENABLE};
use crate::{fdtable, real};
use libc::{c_int, c_void, socklen_t};

fn is_fastopen_connect(level: c_int, name: c_int) -> bool {
    level == libc::IPPROTO_TCP && name == TCP_FASTOPEN_CONNECT && config::get().backend == Backend::Emulate
}

export! {
    fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: socklen_t) -> c_int {
        if is_fastopen_connect(level, name) {
            set_fastopen_connect(fd, value, len)
        } else {
            real::setsockopt(fd, level, name, value, len)
        }
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
    if let Some(socket) = fdtable::lookup(fd).filter(|_| is_ours(level, name)) => {
        if is_fastopen_connect(level, name) {
            return get_int(socket.option(), value, len);
        }
        if level == libc::SOL_SOCKET {
            // SO_ERROR: sk_getsockopt() refuses a negative length first.
            if !len.is_null() && (*len as c_int) < 0 {
                return errno::fail(libc::EINVAL);
            }
            if let Some(err) = socket.take_pending_error() {
                return get_int(err, value, len);
            }
            return real::getsockopt(fd, level, name, value, len);
        }
        tcp_info(fd, socket, value, len)
    }
}

/// TCP_INFO of a deferred socket: the kernel's would be in SYN_SENT with no
/// options yet; the unconnected socket under it says CLOSE.
unsafe fn tcp_info(fd: c_int, socket: &Socket, value: *mut c_void, len: *mut socklen_t) -> c_int {
    let r = real::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, value, len);
    if r == 0 && !value.is_null() && *len >= 8 && socket.phase().before_syn() {
        let saved = Saved::take();
        if super::still_unsent(fd, socket) {
            let info = value.cast::<u8>();
            *info = TCP_SYN_SENT; // tcpi_state
            *info.add(5) = 0; // tcpi_options
        }
        saved.restore(());
    }
    r
}

/// The checks of do_tcp_setsockopt(), in its order (spec §3).
#[cold]
#[inline(never)]
unsafe fn set_fastopen_connect(fd: c_int, value: *const c_void, len: socklen_t) -> c_int {
    let saved = Saved::take();
    // Only TCP sockets are ours; for anything else the kernel's own answer
    // (ENOTSOCK, ENOPROTOOPT, ...) is the right one.
    let Some(family) = kernel::tcp_family(fd) else {
        saved.restore(());
        return real::setsockopt(fd, libc::IPPROTO_TCP, TCP_FASTOPEN_CONNECT, value, len);
    };
    if (len as c_int) < std::mem::size_of::<c_int>() as c_int {
        return errno::fail(libc::EINVAL);
    }
    if value.is_null() {
        return errno::fail(libc::EFAULT);
    }
    let v = std::ptr::read_unaligned(value as *const c_int);
    if !(0..=1).contains(&v) {
        return errno::fail(libc::EINVAL);
    }
    if kernel::fastopen_sysctl().unwrap_or(TFO_CLIENT_ENABLE) & TFO_CLIENT_ENABLE == 0 {
        return errno::fail(libc::EOPNOTSUPP);
    }
    let tracked = fdtable::lookup(fd);
    let closed = match tracked.map(|s| s.phase()) {
        Some(phase) if phase.before_syn() => false,
        _ => kernel::tcp_state(fd) == Some(TCP_CLOSE),
    };
    if !closed {
        return errno::fail(libc::EINVAL);
    }
    match tracked {
        Some(socket) => socket.set_option(v),
        // Setting 0 on a socket we never tracked changes nothing observable.
        None if v == 0 => {}
        None => match fdtable::track(fd) {
            Some(socket) => {
                socket.set_family(family);
                socket.set_option(v)
            }
            // Out of fd range or pool: let the kernel's own option serve.
            None => {
                saved.restore(());
                return real::setsockopt(fd, libc::IPPROTO_TCP, TCP_FASTOPEN_CONNECT, value, len);
            }
        },
    }
    saved.restore(0)
}

/// getsockopt of an int option, with do_tcp_getsockopt()'s length rules.
pub unsafe fn get_int(value: c_int, out: *mut c_void, len: *mut socklen_t) -> c_int {
    if len.is_null() {
        return errno::fail(libc::EFAULT);
    }
    // min_t(unsigned int, len, sizeof(int)): a negative length reads as huge.
    let n = (*len).min(std::mem::size_of::<c_int>() as socklen_t);
    if n > 0 && out.is_null() {
        return errno::fail(libc::EFAULT);
    }
    *len = n;
    if n > 0 {
        std::ptr::copy_nonoverlapping((&value as *const c_int).cast::<u8>(), out.cast::<u8>(), n as usize);
    }
    0
}

//! What libtfo asks the kernel about a socket or the network namespace.
//! Every call goes to the real libc function, never through our hooks, and
//! callers restore errno themselves.

use crate::deferred::SockAddr;
use crate::real;
use libc::{c_int, c_void, sockaddr, socklen_t, timespec};
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TCP_FASTOPEN_CONNECT: c_int = 30;
pub const TCP_FASTOPEN_NO_COOKIE: c_int = 34;
pub const MSG_FASTOPEN: c_int = 0x2000_0000;

/// net.ipv4.tcp_fastopen bits (Documentation/networking/ip-sysctl.rst).
pub const TFO_CLIENT_ENABLE: c_int = 0x1;
pub const TFO_CLIENT_NO_COOKIE: c_int = 0x4;

/// From include/net/tcp_states.h.
pub const TCP_SYN_SENT: u8 = 2;
pub const TCP_CLOSE: u8 = 7;

fn int_option(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: value and len are valid for writing.
    let r = unsafe { real::getsockopt(fd, level, name, (&mut value as *mut c_int).cast(), &mut len) };
    (r == 0).then_some(value)
}

/// AF_INET or AF_INET6 when `fd` is a TCP socket (SOCK_STREAM, IPPROTO_TCP).
pub fn tcp_family(fd: c_int) -> Option<c_int> {
    if int_option(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)? != libc::IPPROTO_TCP {
        return None;
    }
    let family = int_option(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    matches!(family, libc::AF_INET | libc::AF_INET6).then_some(family)
}

/// The TCP state (tcpi_state) of the kernel's socket.
pub fn tcp_state(fd: c_int) -> Option<u8> {
    // tcpi_state is the first byte of struct tcp_info; the kernel copies
    // min(len, sizeof) bytes, so asking for 8 is enough.
    let mut info = [0u8; 8];
    let mut len = info.len() as socklen_t;
    // SAFETY: info and len are valid for writing.
    let r = unsafe { real::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, info.as_mut_ptr().cast(), &mut len) };
    (r == 0 && len >= 1).then_some(info[0])
}

/// The per-socket no-cookie mode (TCP_FASTOPEN_NO_COOKIE), off where unknown.
pub fn socket_no_cookie(fd: c_int) -> bool {
    int_option(fd, libc::IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE).unwrap_or(0) != 0
}

/// net.ipv4.tcp_fastopen of the caller's network namespace; /proc/sys/net
/// shows the namespace of the reading task.
pub fn fastopen_sysctl() -> Option<c_int> {
    const PATH: &[u8] = b"/proc/sys/net/ipv4/tcp_fastopen\0";
    // SAFETY: PATH is NUL-terminated; the buffer is valid for its length.
    unsafe {
        let fd = libc::open(PATH.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let mut buf = [0u8; 32];
        let n = real::read(fd, buf.as_mut_ptr().cast(), buf.len());
        real::close(fd);
        let text = std::str::from_utf8(buf.get(..usize::try_from(n).ok()?)?).ok()?;
        text.trim().parse().ok()
    }
}

/// O_NONBLOCK on the open file.
pub fn is_nonblocking(fd: c_int) -> bool {
    // SAFETY: F_GETFL takes no argument.
    let flags = unsafe { real::fcntl(fd, libc::F_GETFL, 0) };
    flags >= 0 && flags & libc::O_NONBLOCK != 0
}

/// The absolute CLOCK_MONOTONIC deadline for SO_RCVTIMEO / SO_SNDTIMEO, or
/// `None` when the socket has no timeout (wait forever).
pub fn deadline(fd: c_int, option: c_int) -> Option<timespec> {
    // SAFETY: a zeroed timeval is valid; the pointers are to locals.
    let tv = unsafe {
        let mut tv: libc::timeval = zeroed();
        let mut len = size_of::<libc::timeval>() as socklen_t;
        if real::getsockopt(fd, libc::SOL_SOCKET, option, (&mut tv as *mut libc::timeval).cast(), &mut len) != 0 {
            return None;
        }
        tv
    };
    if tv.tv_sec == 0 && tv.tv_usec == 0 {
        return None;
    }
    Some(crate::deferred::after(tv.tv_sec.saturating_mul(1_000_000_000).saturating_add(tv.tv_usec * 1000)))
}

/// The IP address inside a sockaddr_in / sockaddr_in6 of `len` bytes.
///
/// # Safety
/// `addr` must be readable for `len` bytes.
pub unsafe fn ip_of(addr: *const sockaddr, len: socklen_t) -> Option<IpAddr> {
    if addr.is_null() || (len as usize) < size_of::<libc::sa_family_t>() {
        return None;
    }
    match c_int::from((*addr).sa_family) {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            let sin = &*(addr as *const libc::sockaddr_in);
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            let sin6 = &*(addr as *const libc::sockaddr_in6);
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// getsockname() of `fd`.
pub fn local_address(fd: c_int) -> Option<SockAddr> {
    let mut local = SockAddr::empty();
    let mut len = SockAddr::MAX_LEN;
    // SAFETY: `local` has room for MAX_LEN bytes.
    (unsafe { real::getsockname(fd, local.as_mut_ptr(), &mut len) } == 0).then(|| {
        local.set_len(len);
        local
    })
}

/// `local` (the socket's getsockname()) with a port, binding the wildcard
/// address to port 0 first if it has none: the kernel's connect() assigns
/// the port before it defers, and keeps it after a disconnect. `None` when
/// no port is free (the kernel's connect would then fail, and reports it).
pub fn with_local_port(fd: c_int, family: c_int, local: SockAddr) -> Option<SockAddr> {
    if local.port() != 0 {
        return Some(local);
    }
    let mut any = SockAddr::empty();
    // SAFETY: the storage is large enough for either family.
    unsafe {
        let sa = any.as_mut_ptr();
        (*sa).sa_family = family as libc::sa_family_t;
    }
    any.set_len(if family == libc::AF_INET {
        size_of::<libc::sockaddr_in>() as socklen_t
    } else {
        size_of::<libc::sockaddr_in6>() as socklen_t
    });
    // SAFETY: `any` is a valid wildcard address of `family`.
    if unsafe { libc::bind(fd, any.as_ptr(), any.len()) } != 0 {
        return None;
    }
    local_address(fd)
}

/// The source address the kernel will use for `fd` towards `dest`: the bound
/// address in `local` (its getsockname()) if there is one, else the one
/// routing picks. Routing is asked by connecting a throwaway UDP socket,
/// which sends nothing. `None` means no route (or no address): the caller
/// lets the kernel connect and report it.
///
/// # Safety
/// `dest` must be readable for `len` bytes.
pub unsafe fn source_for(fd: c_int, local: &SockAddr, family: c_int, dest: *const sockaddr, len: socklen_t) -> Option<IpAddr> {
    if let Some(ip) = local.ip().filter(|ip| !ip.is_unspecified()) {
        return Some(ip);
    }
    let probe = real::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    if probe < 0 {
        return None;
    }
    // SO_MARK and SO_BINDTODEVICE steer routing; copy them when set.
    for option in [libc::SO_MARK, libc::SO_BINDTODEVICE] {
        let mut value = [0u8; libc::IFNAMSIZ];
        let mut vlen = value.len() as socklen_t;
        if real::getsockopt(fd, libc::SOL_SOCKET, option, value.as_mut_ptr().cast::<c_void>(), &mut vlen) == 0
            && value[..vlen as usize].iter().any(|&b| b != 0)
        {
            real::setsockopt(probe, libc::SOL_SOCKET, option, value.as_ptr().cast(), vlen);
        }
    }
    let source = if real::connect(probe, dest, len) == 0 { local_address(probe).and_then(|a| a.ip()) } else { None };
    real::close(probe);
    source
}

//! What the running kernel offers, asked the way libtfo itself cannot be
//! fooled: socket options are probed with raw system calls, so a libtfo
//! preloaded into tfo (shell-wide LD_PRELOAD) does not answer for the kernel.

use std::io;

pub const TCP_FASTOPEN_CONNECT: i32 = 30;
pub const TCPI_OPT_SYN_DATA: u8 = 0x20;

/// The kernel release, e.g. "6.1.0-18-amd64", and its (major, minor).
pub fn release() -> (String, (u32, u32)) {
    // SAFETY: utsname is plain bytes; uname fills it and cannot fail with a valid pointer.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid, writable utsname.
    unsafe { libc::uname(&mut uts) };
    let bytes: Vec<u8> = uts.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut numbers = text.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok());
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (text, version)
}

/// A sysctl of this network namespace, e.g. "net/ipv4/tcp_fastopen".
pub fn sysctl(name: &str) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/sys/{name}"))?;
    text.trim().parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{name}: {e}")))
}

/// A TcpExt counter of this network namespace (/proc/net/netstat), e.g.
/// "TCPFastOpenActive".
pub fn tcp_ext_counter(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let index = names.split_whitespace().position(|n| n == name)?;
        return values.split_whitespace().nth(index)?.parse().ok();
    }
    None
}

/// A fresh TCP socket made and closed with raw system calls.
struct RawSocket(i32);

impl RawSocket {
    fn new() -> io::Result<Self> {
        // SAFETY: socket(2) takes no pointers.
        let fd = unsafe { libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RawSocket(fd as i32))
    }
}

impl Drop for RawSocket {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::syscall(libc::SYS_close, self.0) };
    }
}

/// What the kernel answers to setsockopt(TCP_FASTOPEN_CONNECT, 1) on a new
/// socket: Ok, or the errno (ENOPROTOOPT: the option does not exist;
/// EOPNOTSUPP: it exists, but client Fast Open is off in this namespace).
pub fn fastopen_connect_probe() -> io::Result<()> {
    let socket = RawSocket::new()?;
    let one: i32 = 1;
    // SAFETY: the value pointer and length describe `one`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_setsockopt,
            socket.0,
            libc::IPPROTO_TCP,
            TCP_FASTOPEN_CONNECT,
            &one as *const i32,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// How many bytes of struct tcp_info this kernel fills in.
pub fn tcp_info_length() -> io::Result<usize> {
    let socket = RawSocket::new()?;
    let mut buf = [0u8; 512];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the buffer and its length pointer are valid for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_getsockopt,
            socket.0,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr(),
            &mut len as *mut libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(len as usize)
    }
}

/// The bits of net.ipv4.tcp_fastopen (Documentation/networking/ip-sysctl.rst).
pub const FASTOPEN_BITS: [(u64, &str, &str); 5] = [
    (0x1, "client", "client: programs may send data in the SYN"),
    (0x2, "server", "server: listeners that ask for it accept data in the SYN"),
    (0x4, "client_no_cookie", "client sends data in the SYN without a cookie"),
    (0x200, "server_no_cookie", "server accepts data in a SYN without a cookie"),
    (0x400, "server_every_listener", "server: every listener accepts Fast Open, asked or not"),
];
pub const FASTOPEN_CLIENT: u64 = 0x1;

//! What libtfo asks of the kernel: socket options, TCP_INFO, the Fast Open
//! sysctl, addresses, futex waits. Every call goes to the real libc function
//! (never through libtfo's hooks) and returns a [`SysResult`], errno read at
//! once.

use crate::addr::SockAddr;
use crate::errno::{check, Errno, SysResult};
use crate::real;
use libc::{c_int, c_void, socklen_t, timespec};
use std::mem::{size_of, zeroed};
use std::net::IpAddr;
use std::sync::atomic::AtomicU32;

pub const TCP_FASTOPEN_CONNECT: c_int = 30;
pub const TCP_FASTOPEN_NO_COOKIE: c_int = 34;
pub const MSG_FASTOPEN: c_int = 0x2000_0000;

/// net.ipv4.tcp_fastopen bits (Documentation/networking/ip-sysctl.rst).
pub const TFO_CLIENT_ENABLE: c_int = 0x1;
pub const TFO_CLIENT_NO_COOKIE: c_int = 0x4;

/// From include/net/tcp_states.h.
pub const TCP_SYN_SENT: u8 = 2;
pub const TCP_SYN_RECV: u8 = 3;
pub const TCP_CLOSE: u8 = 7;

/// tcpi_options: the SYN-ACK acknowledged the data in our SYN.
pub const TCPI_OPT_SYN_DATA: u8 = 32;

/// tcpi_fastopen_client_fail (spec §13).
pub const TFO_SYN_RETRANSMITTED: u8 = 3;

pub fn int_option(fd: c_int, level: c_int, name: c_int) -> SysResult<c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: value and len are valid for writing.
    check(unsafe { real::getsockopt(fd, level, name, (&mut value as *mut c_int).cast(), &mut len) })?;
    Ok(value)
}

pub fn set_int_option(fd: c_int, level: c_int, name: c_int, value: c_int) -> SysResult<()> {
    // SAFETY: value is a live int of the given size.
    check(unsafe { real::setsockopt(fd, level, name, (&value as *const c_int).cast(), size_of::<c_int>() as socklen_t) })?;
    Ok(())
}

/// AF_INET or AF_INET6 when `fd` is a TCP socket (SOCK_STREAM, IPPROTO_TCP;
/// a raw socket of protocol TCP is not one).
pub fn tcp_family(fd: c_int) -> Option<c_int> {
    if int_option(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL).ok()? != libc::IPPROTO_TCP
        || int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE).ok()? != libc::SOCK_STREAM
    {
        return None;
    }
    let family = int_option(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok()?;
    matches!(family, libc::AF_INET | libc::AF_INET6).then_some(family)
}

/// The first bytes of struct tcp_info libtfo reads.
#[derive(Clone, Copy, Debug)]
pub struct TcpInfo {
    pub state: u8,
    pub options: u8,
    /// tcpi_fastopen_client_fail (0 on kernels before 5.5).
    pub fastopen_client_fail: u8,
    /// tcpi_snd_mss: the socket's mss_cache, which TCP_MAXSEG reports in
    /// any state but CLOSE and LISTEN (there the program's own value).
    pub snd_mss: Option<u32>,
    /// tcpi_rtt: the smoothed round trip in microseconds (0 before one).
    pub rtt_us: u32,
    /// tcpi_total_retrans: segments retransmitted so far (the SYN too).
    pub total_retrans: u32,
}

pub fn tcp_info(fd: c_int) -> SysResult<TcpInfo> {
    // The kernel copies min(len, sizeof) bytes; the fields wanted are in
    // the first 104 (tcpi_fastopen_client_fail: bits 1-2 of byte 7;
    // tcpi_snd_mss: bytes 16-19; tcpi_rtt: 68-71; tcpi_total_retrans: 100-103).
    let mut info = [0u8; 104];
    let mut len = info.len() as socklen_t;
    // SAFETY: info and len are valid for writing.
    check(unsafe { real::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, info.as_mut_ptr().cast(), &mut len) })?;
    if len < 8 {
        return Err(Errno(libc::EINVAL));
    }
    let word = |at: usize| (len as usize >= at + 4).then(|| u32::from_ne_bytes([info[at], info[at + 1], info[at + 2], info[at + 3]]));
    Ok(TcpInfo {
        state: info[0],
        options: info[5],
        fastopen_client_fail: (info[7] >> 1) & 3,
        snd_mss: word(16),
        rtt_us: word(68).unwrap_or(0),
        total_retrans: word(100).unwrap_or(0),
    })
}

/// SIOCOUTQ: for a socket in CLOSE, write_seq - snd_una (moved by every
/// tcp_disconnect()). `None` where the kernel refuses.
pub fn send_queue(fd: c_int) -> Option<i32> {
    let mut queued: c_int = 0;
    // SAFETY: SIOCOUTQ writes one int.
    check(unsafe { real::ioctl(fd, libc::TIOCOUTQ as libc::c_ulong, (&mut queued as *mut c_int).cast()) }).ok()?;
    Some(queued)
}

/// The TCP state (tcpi_state) of the kernel's socket.
pub fn tcp_state(fd: c_int) -> Option<u8> {
    tcp_info(fd).ok().map(|i| i.state)
}

/// SO_ERROR: the socket's pending error, consumed.
pub fn take_socket_error(fd: c_int) -> c_int {
    int_option(fd, libc::SOL_SOCKET, libc::SO_ERROR).unwrap_or(0)
}

/// The per-socket no-cookie mode (TCP_FASTOPEN_NO_COOKIE), off where unknown.
pub fn socket_no_cookie(fd: c_int) -> bool {
    int_option(fd, libc::IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE).unwrap_or(0) != 0
}

/// net.ipv4.tcp_fastopen of the caller's network namespace; /proc/sys/net
/// shows the namespace of the reading task.
pub fn fastopen_sysctl() -> Option<c_int> {
    const PATH: &[u8] = b"/proc/sys/net/ipv4/tcp_fastopen\0";
    // SAFETY: PATH is NUL-terminated.
    let fd = unsafe { libc::open(PATH.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 32];
    // SAFETY: the buffer is valid for its length; fd is ours.
    let n = unsafe { real::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: closing the fd opened above.
    unsafe { real::close(fd) };
    let text = std::str::from_utf8(buf.get(..usize::try_from(n).ok()?)?).ok()?;
    text.trim().parse().ok()
}

/// Client Fast Open is on in this namespace (unknown counts as on: the
/// kernel's own answer follows anyway).
pub fn client_fastopen_enabled() -> bool {
    fastopen_sysctl().unwrap_or(TFO_CLIENT_ENABLE) & TFO_CLIENT_ENABLE != 0
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
    // SAFETY: an all-zero timeval is valid.
    let mut tv: libc::timeval = unsafe { zeroed() };
    let mut len = size_of::<libc::timeval>() as socklen_t;
    // SAFETY: tv and len are valid for writing.
    check(unsafe { real::getsockopt(fd, libc::SOL_SOCKET, option, (&mut tv as *mut libc::timeval).cast(), &mut len) }).ok()?;
    if tv.tv_sec == 0 && tv.tv_usec == 0 {
        return None;
    }
    Some(after(tv.tv_sec.saturating_mul(1_000_000_000).saturating_add(tv.tv_usec * 1000)))
}

/// getsockname() of `fd`.
pub fn local_address(fd: c_int) -> SysResult<SockAddr> {
    let mut local = SockAddr::empty();
    let mut len = SockAddr::MAX_LEN;
    // SAFETY: `local` has room for MAX_LEN bytes.
    check(unsafe { real::getsockname(fd, local.as_mut_ptr(), &mut len) })?;
    local.set_len(len);
    Ok(local)
}

/// `local` (the socket's getsockname()) with a port, binding the wildcard
/// address to port 0 first if it has none: the kernel's connect() assigns
/// the port before it defers, and keeps it after a disconnect. `None` when
/// no port is free (the kernel's connect would then fail, and reports it).
pub fn with_local_port(fd: c_int, family: c_int, local: SockAddr) -> Option<SockAddr> {
    // Bind to the address the socket has (or the wildcard), port 0. A socket
    // that has a port already refuses (EINVAL): then it keeps it. One that
    // had its port released by a disconnect still shows it in getsockname
    // (inet_sport), so the port number alone cannot tell.
    let mut at = SockAddr::any(family);
    if let Some(ip) = local.ip().filter(|ip| !ip.is_unspecified()) {
        at.set_ip(ip);
    }
    // SAFETY: `at` is a valid address of `family`.
    let bind = || check(unsafe { libc::bind(fd, at.as_ptr(), at.len()) });
    match bind() {
        Ok(_) => {}
        Err(Errno(libc::EINVAL)) if local.port() != 0 => return Some(local),
        Err(_) => return None,
    }
    let mut bound = local_address(fd).ok()?;
    if bound.port() == 0 {
        // IP_BIND_ADDRESS_NO_PORT (an inet option, IPv6 sockets too): the
        // port waits for connect(), which the kernel's deferred connect has
        // made; assign it as that would.
        let (level, name) = (libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT);
        set_int_option(fd, level, name, 0).ok()?;
        let assigned = bind();
        let _ = set_int_option(fd, level, name, 1);
        assigned.ok()?;
        bound = local_address(fd).ok()?;
    }
    Some(bound)
}

/// What steers routing for a socket besides its destination: SO_MARK,
/// SO_BINDTODEVICE (the interface name, zero-padded; empty when unbound)
/// and IP_TRANSPARENT.
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
pub struct Steering {
    pub mark: u32,
    pub device: [u8; libc::IFNAMSIZ],
    /// IP_TRANSPARENT (IPV6_TRANSPARENT sets the same bit): any source
    /// address routes, local or not.
    pub transparent: bool,
}

/// SO_MARK, SO_BINDTODEVICE and IP_TRANSPARENT of `fd` (zero where unset
/// or unreadable).
pub fn steering(fd: c_int) -> Steering {
    let mut steering = Steering::default();
    let mut mark = [0u8; 4];
    for (option, out) in [(libc::SO_MARK, &mut mark[..]), (libc::SO_BINDTODEVICE, &mut steering.device[..])] {
        let mut len = out.len() as socklen_t;
        // SAFETY: `out` and `len` are valid for writing `len` bytes.
        if unsafe { real::getsockopt(fd, libc::SOL_SOCKET, option, out.as_mut_ptr().cast::<c_void>(), &mut len) } != 0 {
            out.fill(0);
        }
    }
    steering.mark = u32::from_ne_bytes(mark);
    steering.transparent = int_option(fd, libc::IPPROTO_IP, libc::IP_TRANSPARENT).unwrap_or(0) != 0;
    steering
}

/// The source address routing picks towards `dest` for a socket steered
/// as `steering`: a throwaway UDP socket is connected there (which sends
/// nothing) and asked its address. `None` means no route (or no address):
/// the caller lets the kernel connect and report it.
pub fn route_source(dest: &SockAddr, steering: &Steering, bound: Option<IpAddr>) -> Option<IpAddr> {
    // SAFETY: plain socket creation.
    let probe = check(unsafe { real::socket(dest.family(), libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) }).ok()?;
    if steering.mark != 0 {
        let _ = set_int_option(probe, libc::SOL_SOCKET, libc::SO_MARK, steering.mark as c_int);
    }
    let device_len = steering.device.iter().position(|&b| b == 0).unwrap_or(steering.device.len());
    if device_len > 0 {
        // SAFETY: the name and its length, within the array.
        unsafe { real::setsockopt(probe, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, steering.device.as_ptr().cast(), device_len as socklen_t) };
    }
    // A socket bound to an address routes from it (one that is not local,
    // bound under IP_FREEBIND, has no route: ENETUNREACH).
    if steering.transparent {
        // Allowed to the program (CAP_NET_ADMIN), so to its probe.
        let _ = set_int_option(probe, libc::IPPROTO_IP, libc::IP_TRANSPARENT, 1);
    }
    let bound_ok = bound.is_none_or(|ip| {
        let _ = set_int_option(probe, libc::IPPROTO_IP, libc::IP_FREEBIND, 1);
        let mut at = SockAddr::any(dest.family());
        at.set_ip(ip);
        // SAFETY: `at` is a valid address of the probe's family.
        check(unsafe { libc::bind(probe, at.as_ptr(), at.len()) }).is_ok()
    });
    // SAFETY: `dest` is a valid address of its length.
    let connected = bound_ok && check(unsafe { real::connect(probe, dest.as_ptr(), dest.len()) }).is_ok();
    let source = if connected { local_address(probe).ok().and_then(|a| a.ip()) } else { None };
    // SAFETY: closing the probe socket opened above.
    unsafe { real::close(probe) };
    source
}

/// A zero-length send: on a deferred socket the SYN leaves without data
/// (the kernel's answer: EINPROGRESS when it does not wait).
pub fn send_nothing(fd: c_int, flags: c_int) -> SysResult<isize> {
    // SAFETY: a zero-length send reads no memory.
    check(unsafe { real::send(fd, std::ptr::null(), 0, flags | libc::MSG_NOSIGNAL) })
}

/// The socket's reading side is shut (sk_shutdown has RCV_SHUTDOWN), which
/// tcp_poll() reports as POLLRDHUP in any state.
pub fn reading_shut(fd: c_int) -> bool {
    poll_now(fd, libc::POLLRDHUP) & libc::POLLRDHUP != 0
}

/// What poll() reports of `fd` for `events` now, without waiting.
pub fn poll_now(fd: c_int, events: i16) -> i16 {
    let mut entry = libc::pollfd { fd, events, revents: 0 };
    // SAFETY: one valid pollfd; a timeout of 0 never waits.
    match unsafe { real::poll(&mut entry, 1, 0) } {
        1 => entry.revents,
        _ => 0,
    }
}

/// Waits until `fd` reports any of `events` (or an error or hang-up), at
/// most until `deadline`. Returns the revents, 0 on timeout.
pub fn wait_for(fd: c_int, events: i16, deadline: Option<timespec>) -> SysResult<i16> {
    loop {
        let timeout = match deadline {
            None => -1,
            Some(d) => {
                let now = after(0);
                let ms = (d.tv_sec - now.tv_sec) * 1000 + (d.tv_nsec - now.tv_nsec) / 1_000_000;
                ms.clamp(0, i32::MAX as i64) as c_int
            }
        };
        let mut entry = libc::pollfd { fd, events, revents: 0 };
        // SAFETY: one valid pollfd.
        match check(unsafe { real::poll(&mut entry, 1, timeout) }) {
            Ok(0) => return Ok(0),
            Ok(_) => return Ok(entry.revents),
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Whether the program's memory at `ptr` can be read for `len` bytes, asked
/// of the kernel (process_vm_readv of one byte per page, from this very
/// process) rather than by touching it: where the kernel would answer
/// EFAULT, a hook must let it, never crash. Where the question is refused
/// (a seccomp filter, EPERM), mincore() says at least whether it is mapped.
pub fn readable(ptr: *const c_void, len: usize) -> bool {
    const PAGE: usize = 4096;
    const PROBES: usize = 64;
    if len == 0 {
        return true;
    }
    if ptr.is_null() || (ptr as usize).checked_add(len).is_none() {
        return false;
    }
    let end = ptr as usize + len;
    let mut scratch = [0u8; PROBES];
    let mut at = ptr as usize;
    while at < end {
        // One byte at `at`, then at each page start up to the last byte.
        let mut remote = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 1 }; PROBES];
        let mut count = 0;
        while count < PROBES && at < end {
            remote[count].iov_base = at as *mut c_void;
            count += 1;
            at = (at / PAGE + 1) * PAGE;
        }
        if at >= end && count < PROBES && (end - 1) / PAGE != (remote[count - 1].iov_base as usize) / PAGE {
            remote[count].iov_base = (end - 1) as *mut c_void;
            count += 1;
        }
        let local = libc::iovec { iov_base: scratch.as_mut_ptr().cast(), iov_len: count };
        // SAFETY: `local` is our own buffer of `count` bytes; the remote
        // addresses are only read by the kernel, which checks them.
        let got = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, remote.as_ptr(), count as libc::c_ulong, 0) };
        if got < 0 {
            return match Errno::last() {
                Errno(libc::EFAULT) => false,
                // Refused (a container's seccomp filter forbids it): mincore
                // at least knows unmapped memory.
                _ => mapped(ptr, len),
            };
        }
        if got as usize != count {
            return false;
        }
    }
    true
}

/// Whether every page of `len` bytes at `ptr` is mapped (mincore: ENOMEM
/// for an unmapped page), a page at a time so its result is one byte.
fn mapped(ptr: *const c_void, len: usize) -> bool {
    const PAGE: usize = 4096;
    let mut page = ptr as usize & !(PAGE - 1);
    let end = (ptr as usize).saturating_add(len);
    while page < end {
        let mut resident = 0u8;
        // SAFETY: mincore only reports on the page, into `resident`.
        if unsafe { libc::mincore(page as *mut c_void, PAGE, &mut resident) } != 0 && Errno::last() == Errno(libc::ENOMEM) {
            return false;
        }
        page += PAGE;
    }
    true
}

/// Whether the kernel would restart a blocking socket call (one without a
/// socket timeout) that a signal handler interrupted: every signal with a
/// handler has SA_RESTART. Which signal it was is not known afterwards, so
/// a mix of handlers with and without SA_RESTART counts as "interrupted".
pub fn handlers_restart() -> bool {
    let mut any = false;
    for signal in 1..=libc::SIGRTMAX() {
        // SAFETY: an all-zero sigaction is valid storage for the old action.
        let mut action: libc::sigaction = unsafe { zeroed() };
        // SAFETY: only reads the disposition (no new action is given).
        if unsafe { libc::sigaction(signal, std::ptr::null(), &mut action) } != 0 {
            continue;
        }
        if action.sa_sigaction == libc::SIG_DFL || action.sa_sigaction == libc::SIG_IGN {
            continue;
        }
        if action.sa_flags & libc::SA_RESTART == 0 {
            return false;
        }
        any = true;
    }
    any
}

/// CLOCK_MONOTONIC in milliseconds.
pub fn monotonic_ms() -> u64 {
    let now = after(0);
    now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000
}

/// CLOCK_MONOTONIC now plus `nanos`.
pub fn after(nanos: i64) -> timespec {
    let mut now = timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let total = now.tv_nsec.saturating_add(nanos);
    timespec { tv_sec: now.tv_sec.saturating_add(total / 1_000_000_000), tv_nsec: total % 1_000_000_000 }
}

/// FUTEX_WAIT_BITSET with an absolute CLOCK_MONOTONIC deadline (or none); Ok when
/// woken (or the word changed), else the errno (ETIMEDOUT, EINTR: a signal
/// without SA_RESTART interrupts, as the blocking socket call would be).
/// Not FUTEX_PRIVATE: the word may live in memory shared with a fork child
/// (`shared.rs`), whose wake must reach this process.
pub fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<&timespec>) -> SysResult<()> {
    // SAFETY: `word` is a live u32 for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            deadline.map_or(std::ptr::null(), |d| d as *const timespec),
            std::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    match r {
        0 => Ok(()),
        _ => match Errno::last() {
            Errno(libc::EAGAIN) => Ok(()),
            e => Err(e),
        },
    }
}

pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: as above; waking has no memory effects.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// connect(AF_UNSPEC): tcp_disconnect() of `fd`, which sends nothing for a
/// socket in CLOSE.
pub fn disconnect(fd: c_int) {
    let unspec = SockAddr::any(libc::AF_UNSPEC);
    // SAFETY: an AF_UNSPEC address of sockaddr's size.
    unsafe { real::connect(fd, unspec.as_ptr(), size_of::<libc::sockaddr>() as socklen_t) };
}

/// tcp_disconnect() of the unconnected `fd` as the kernel's deferred socket
/// to `remote` goes through it: from SYN_SENT. Only that releases the port
/// connect() took (tcp_set_state(CLOSE) puts a port not bound explicitly),
/// forgets a source address not bound explicitly, and moves write_seq past
/// an initial sequence number. The socket is put in SYN_SENT by the
/// kernel's own deferred connect without a cookie, which sends nothing, and
/// the error that disconnect leaves is consumed (the caller reports its
/// own). A kernel without that connect gets the disconnect from CLOSE.
/// True when the socket did go through SYN_SENT.
pub fn disconnect_from_syn_sent(fd: c_int, remote: &SockAddr) -> bool {
    let tcp = libc::IPPROTO_TCP;
    let saved = (int_option(fd, tcp, TCP_FASTOPEN_CONNECT), int_option(fd, tcp, TCP_FASTOPEN_NO_COOKIE));
    // The file flags of a blocking socket, which this call makes non-blocking.
    let blocking = fcntl_flags(fd).filter(|f| f & libc::O_NONBLOCK == 0);
    let armed = set_int_option(fd, tcp, TCP_FASTOPEN_CONNECT, 1).is_ok() && set_int_option(fd, tcp, TCP_FASTOPEN_NO_COOKIE, 1).is_ok();
    let mut connected = false;
    if armed {
        // Non-blocking for this one call: should the kernel send a SYN after
        // all (active Fast Open disabled after a black hole), connect() must
        // not wait for it.
        if let Some(flags) = blocking {
            set_fcntl_flags(fd, flags | libc::O_NONBLOCK);
        }
        // SAFETY: `remote` is a valid address of its length.
        connected = unsafe { real::connect(fd, remote.as_ptr(), remote.len()) } == 0 || Errno::last().0 == libc::EINPROGRESS;
        if let Some(flags) = blocking {
            set_fcntl_flags(fd, flags);
        }
    }
    disconnect(fd);
    if armed {
        take_socket_error(fd);
    }
    let _ = set_int_option(fd, tcp, TCP_FASTOPEN_NO_COOKIE, saved.1.unwrap_or(0));
    let _ = set_int_option(fd, tcp, TCP_FASTOPEN_CONNECT, saved.0.unwrap_or(0));
    connected
}

fn fcntl_flags(fd: c_int) -> Option<c_int> {
    // SAFETY: F_GETFL takes no argument.
    check(unsafe { real::fcntl(fd, libc::F_GETFL, 0) }).ok()
}

fn set_fcntl_flags(fd: c_int, flags: c_int) {
    // SAFETY: F_SETFL with an int argument.
    unsafe { real::fcntl(fd, libc::F_SETFL, flags as usize) };
}

/// Whether this kernel refuses listen() (EINVAL) on a socket that connected
/// once and was disconnected since (Linux 6.18 does; older kernels listen).
/// The emulation's socket never reached the kernel's connect, so the kernel
/// cannot answer for it: one probe per process tells. The probe is the
/// kernel's own deferred connect without a cookie, which sends nothing; a
/// kernel without it (or a namespace without the client bit, or without
/// loopback) is taken to listen, as older kernels do.
pub fn listen_refused_after_connect() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    static ANSWER: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 yes, 2 no
    match ANSWER.load(Ordering::Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let refused = probe_listen_after_connect() == Some(true);
    ANSWER.store(if refused { 1 } else { 2 }, Ordering::Relaxed);
    refused
}

fn probe_listen_after_connect() -> Option<bool> {
    // SAFETY: plain socket creation.
    let probe = check(unsafe { real::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) }).ok()?;
    let answer = (|| {
        set_int_option(probe, libc::IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1).ok()?;
        set_int_option(probe, libc::IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, 1).ok()?;
        let mut discard = SockAddr::any(libc::AF_INET);
        discard.set_ip(IpAddr::from([127, 0, 0, 1]));
        discard.set_port(9);
        // SAFETY: `discard` is a valid IPv4 address; the socket is ours.
        match check(unsafe { real::connect(probe, discard.as_ptr(), discard.len()) }) {
            Ok(_) | Err(Errno(libc::EINPROGRESS)) => {}
            Err(_) => return None,
        }
        disconnect(probe);
        // SAFETY: our own socket.
        Some(check(unsafe { real::listen(probe, 1) }) == Err(Errno(libc::EINVAL)))
    })();
    // SAFETY: closing the probe socket opened above.
    unsafe { real::close(probe) };
    answer
}

/// Whether `fd`'s one-shot registration in the epoll instance `epfd` has
/// fired, so the kernel keeps it disabled until EPOLL_CTL_MOD: its events
/// in /proc/self/fdinfo/<epfd> are then only the flag bits (ep_poll_callback
/// clears the rest). `None` where that cannot be read.
pub fn oneshot_fired(epfd: c_int, fd: c_int) -> Option<bool> {
    // EPOLLEXCLUSIVE | EPOLLWAKEUP | EPOLLONESHOT | EPOLLET (EP_PRIVATE_BITS).
    const FLAG_BITS: u32 = 0xf000_0000;
    let mut path = [0u8; 40];
    let mut out = std::io::Cursor::new(&mut path[..]);
    std::io::Write::write_fmt(&mut out, format_args!("/proc/self/fdinfo/{epfd}\0")).ok()?;
    // SAFETY: a NUL-terminated path in our buffer.
    let file = check(unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) }).ok()?;
    // Lines "tfd: %8d events: %8x data: ...", read in pieces; a line cut at
    // the end of a piece is carried over.
    let mut buf = [0u8; 4096];
    let (mut kept, mut answer) = (0usize, None);
    loop {
        // SAFETY: reading into the free part of our buffer.
        let got = unsafe { real::read(file, buf[kept..].as_mut_ptr().cast(), buf.len() - kept) };
        if got <= 0 {
            break;
        }
        let filled = kept + got as usize;
        let end = buf[..filled].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in buf[..end].split(|&b| b == b'\n') {
            let mut words = std::str::from_utf8(line).unwrap_or("").split_whitespace();
            if words.next() != Some("tfd:") || words.next().and_then(|w| w.parse::<c_int>().ok()) != Some(fd) {
                continue;
            }
            let events = (words.next() == Some("events:")).then(|| words.next()).flatten().and_then(|w| u32::from_str_radix(w, 16).ok());
            answer = events.map(|e| e & !FLAG_BITS == 0);
        }
        if end == 0 && filled == buf.len() {
            break; // a line longer than the buffer: not an fdinfo line
        }
        buf.copy_within(end..filled, 0);
        kept = filled - end;
    }
    // SAFETY: our own descriptor.
    unsafe { real::close(file) };
    answer
}

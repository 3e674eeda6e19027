//! The per-socket state machine of an emulated TCP_FASTOPEN_CONNECT socket.
//!
//! ```text
//!   Armed ──connect(), cookie cached──▶ Connecting ──▶ Deferred ──first write──▶ Sending ──▶ Kernel
//!     │                                                   ▲                          │
//!     └──connect(), no cookie: SYN with cookie request ──────────────────────────────┼──▶ Kernel
//!                                                         └── write failed EOPNOTSUPP┘
//! ```
//!
//! * `Armed`: the option is recorded; the kernel socket is untouched (CLOSE).
//! * `Deferred`: `connect()` returned 0 without a packet; the destination is
//!   recorded and the kernel socket is still unconnected.
//! * `Connecting` / `Sending`: one thread owns the transition (the loser of a
//!   race waits for it), so exactly one SYN ever leaves.
//! * `Kernel`: the kernel's socket is connecting or connected and answers
//!   every call itself. If it later returns to CLOSE (RST, timeout,
//!   disconnect), the next `connect()` defers again, like the kernel's flag.
//!
//! The phase word doubles as a futex, so blocking readers and a blocking
//! second `connect()` sleep until the first write moves the socket on.

use libc::{c_int, sockaddr, socklen_t, timespec};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Phase {
    Armed = 0,
    Connecting = 1,
    Deferred = 2,
    Sending = 3,
    Kernel = 4,
}

impl Phase {
    fn from_u32(v: u32) -> Phase {
        match v {
            1 => Phase::Connecting,
            2 => Phase::Deferred,
            3 => Phase::Sending,
            4 => Phase::Kernel,
            _ => Phase::Armed,
        }
    }

    /// No SYN has left yet, or the one thread sending it has not returned.
    pub fn before_syn(self) -> bool {
        matches!(self, Phase::Connecting | Phase::Deferred | Phase::Sending)
    }
}

/// The socket's connect() went out as a SYN carrying a cookie request (no
/// cookie was cached). The kernel never frees `fastopen_req` on that path,
/// so a later MSG_FASTOPEN gives EALREADY (spec §7).
pub const FLAG_COOKIE_REQUESTED: u32 = 1;

/// A socket address as the kernel takes and returns it (IPv4 or IPv6).
#[derive(Clone, Copy)]
pub struct SockAddr {
    storage: libc::sockaddr_in6,
    len: socklen_t,
}

impl SockAddr {
    pub const MAX_LEN: socklen_t = std::mem::size_of::<libc::sockaddr_in6>() as socklen_t;

    pub fn empty() -> Self {
        // SAFETY: an all-zero sockaddr_in6 is a valid (AF_UNSPEC) value.
        SockAddr { storage: unsafe { std::mem::zeroed() }, len: 0 }
    }

    /// Copies `len` bytes (at most MAX_LEN) from `addr`.
    ///
    /// # Safety
    /// `addr` must be readable for `len` bytes.
    pub unsafe fn copy_from(addr: *const sockaddr, len: socklen_t) -> Self {
        let mut out = Self::empty();
        out.len = len.min(Self::MAX_LEN);
        std::ptr::copy_nonoverlapping(addr.cast::<u8>(), out.as_mut_ptr().cast::<u8>(), out.len as usize);
        out
    }

    pub fn as_ptr(&self) -> *const sockaddr {
        (&self.storage as *const libc::sockaddr_in6).cast()
    }

    pub fn as_mut_ptr(&mut self) -> *mut sockaddr {
        (&mut self.storage as *mut libc::sockaddr_in6).cast()
    }

    pub fn len(&self) -> socklen_t {
        self.len
    }

    pub fn set_len(&mut self, len: socklen_t) {
        self.len = len.min(Self::MAX_LEN);
    }

    /// The IP address, for an AF_INET or AF_INET6 address.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        // SAFETY: the storage holds `len` initialised bytes (at most MAX_LEN).
        unsafe { crate::kernel::ip_of(self.as_ptr(), self.len) }
    }

    /// The port in host order (sin_port and sin6_port share an offset).
    pub fn port(&self) -> u16 {
        u16::from_be(self.storage.sin6_port)
    }

    /// Replaces the IP address, keeping family, port and the rest.
    pub fn set_ip(&mut self, ip: std::net::IpAddr) {
        match ip {
            std::net::IpAddr::V4(v4) if c_int::from(self.storage.sin6_family) == libc::AF_INET => {
                // SAFETY: an AF_INET address is a sockaddr_in, which fits in the storage.
                let sin = unsafe { &mut *(self.as_mut_ptr() as *mut libc::sockaddr_in) };
                sin.sin_addr.s_addr = u32::from(v4).to_be();
            }
            std::net::IpAddr::V6(v6) if c_int::from(self.storage.sin6_family) == libc::AF_INET6 => {
                self.storage.sin6_addr.s6_addr = v6.octets();
            }
            _ => {}
        }
    }

    /// getsockname()-style copy-out: at most `*len` bytes, then `*len` = full length.
    ///
    /// # Safety
    /// `out` must be writable for `*len` bytes; `len` must be valid.
    pub unsafe fn copy_out(&self, out: *mut sockaddr, len: *mut socklen_t) {
        let n = (*len).min(self.len);
        if n > 0 {
            std::ptr::copy_nonoverlapping(self.as_ptr().cast::<u8>(), out.cast::<u8>(), n as usize);
        }
        *len = self.len;
    }
}

/// The two ends of a deferred connection: where the SYN will go, and the
/// local address the kernel's deferred socket would already report.
#[derive(Clone, Copy)]
pub struct Endpoints {
    pub remote: SockAddr,
    pub local: SockAddr,
}

pub struct Socket {
    pub(crate) refs: AtomicU32,
    pub(crate) next_free: AtomicU32,
    phase: AtomicU32,
    waiters: AtomicU32,
    option: AtomicU32,
    /// AF_INET or AF_INET6, learnt when the option was set.
    family: AtomicU32,
    flags: AtomicU32,
    /// An error the kernel would hold in sk_err (ECONNRESET after a
    /// disconnect), reported once by SO_ERROR, a send or a receive.
    pending_error: AtomicI32,
    endpoints: UnsafeCell<Endpoints>,
}

// SAFETY: `endpoints` is only written by the thread that won the
// Armed→Connecting transition and only read by the thread that won
// Deferred→Sending; the phase stores (Release) and CAS (Acquire) order them.
unsafe impl Sync for Socket {}

impl Default for Socket {
    fn default() -> Self {
        Socket {
            refs: AtomicU32::new(0),
            next_free: AtomicU32::new(0),
            phase: AtomicU32::new(Phase::Armed as u32),
            waiters: AtomicU32::new(0),
            option: AtomicU32::new(0),
            family: AtomicU32::new(0),
            flags: AtomicU32::new(0),
            pending_error: AtomicI32::new(0),
            endpoints: UnsafeCell::new(Endpoints { remote: SockAddr::empty(), local: SockAddr::empty() }),
        }
    }
}

pub enum Wait {
    Changed,
    TimedOut,
    Interrupted,
}

impl Socket {
    /// Back to a fresh, armed entry with one reference.
    pub(crate) fn reset(&self) {
        self.phase.store(Phase::Armed as u32, Ordering::Relaxed);
        self.option.store(0, Ordering::Relaxed);
        self.flags.store(0, Ordering::Relaxed);
        self.pending_error.store(0, Ordering::Relaxed);
        self.refs.store(1, Ordering::Release);
    }

    #[inline]
    pub fn phase(&self) -> Phase {
        Phase::from_u32(self.phase.load(Ordering::Acquire))
    }

    pub fn option(&self) -> c_int {
        self.option.load(Ordering::Relaxed) as c_int
    }

    pub fn set_option(&self, value: c_int) {
        self.option.store(value as u32, Ordering::Relaxed)
    }

    pub fn family(&self) -> c_int {
        self.family.load(Ordering::Relaxed) as c_int
    }

    pub fn set_family(&self, family: c_int) {
        self.family.store(family as u32, Ordering::Relaxed)
    }

    pub fn has_flag(&self, flag: u32) -> bool {
        self.flags.load(Ordering::Relaxed) & flag != 0
    }

    pub fn set_flag(&self, flag: u32) {
        self.flags.fetch_or(flag, Ordering::Relaxed);
    }

    pub fn clear_flag(&self, flag: u32) {
        self.flags.fetch_and(!flag, Ordering::Relaxed);
    }

    /// Takes ownership of a transition; on failure returns the phase found.
    pub fn begin(&self, from: Phase, to: Phase) -> Result<(), Phase> {
        self.phase
            .compare_exchange(from as u32, to as u32, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(Phase::from_u32)
    }

    /// Ends a transition (or moves on) and wakes threads waiting for it.
    pub fn enter(&self, phase: Phase) {
        self.phase.store(phase as u32, Ordering::Release);
        if self.waiters.load(Ordering::Acquire) != 0 {
            futex_wake(&self.phase);
        }
    }

    /// Records where the deferred connect goes; only while owning `Connecting`.
    pub fn record_endpoints(&self, endpoints: Endpoints) {
        // SAFETY: we own the Connecting phase, so nobody reads the cell.
        unsafe { *self.endpoints.get() = endpoints }
    }

    /// The recorded endpoints; valid while the socket is Deferred or Sending.
    pub fn endpoints(&self) -> Endpoints {
        // SAFETY: see the Sync impl.
        unsafe { *self.endpoints.get() }
    }

    /// Something for libtfo to do on this socket: its SYN has not left, or
    /// an error is waiting to be reported.
    #[inline]
    pub fn needs_attention(&self) -> bool {
        self.phase().before_syn() || self.pending_error.load(Ordering::Relaxed) != 0
    }

    pub fn set_pending_error(&self, errno: c_int) {
        self.pending_error.store(errno, Ordering::Relaxed);
    }

    pub fn pending_error(&self) -> c_int {
        self.pending_error.load(Ordering::Relaxed)
    }

    /// Reports the pending error once, as sock_error() does.
    pub fn take_pending_error(&self) -> Option<c_int> {
        match self.pending_error.swap(0, Ordering::AcqRel) {
            0 => None,
            e => Some(e),
        }
    }

    /// Sleeps while the phase satisfies `waiting`, until `deadline`
    /// (CLOCK_MONOTONIC) if one is given. Every 100 ms `unchanged()` is asked
    /// too: after fork() another process may send the SYN of a shared socket
    /// without this process's phase word ever changing.
    pub fn wait_while(&self, waiting: fn(Phase) -> bool, deadline: Option<timespec>, unchanged: impl Fn() -> bool) -> Wait {
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let result = loop {
            let current = self.phase.load(Ordering::Acquire);
            if !waiting(Phase::from_u32(current)) {
                break Wait::Changed;
            }
            let slice = after(100_000_000);
            let until = match deadline {
                Some(d) if (d.tv_sec, d.tv_nsec) < (slice.tv_sec, slice.tv_nsec) => d,
                _ => slice,
            };
            match futex_wait(&self.phase, current, &until) {
                0 | libc::EAGAIN => continue,
                libc::ETIMEDOUT if deadline.is_some_and(|d| (d.tv_sec, d.tv_nsec) <= (until.tv_sec, until.tv_nsec)) => {
                    break Wait::TimedOut
                }
                libc::ETIMEDOUT if unchanged() => continue,
                libc::ETIMEDOUT => break Wait::Changed,
                libc::EINTR => break Wait::Interrupted,
                _ => break Wait::Changed, // futex unusable: let the kernel answer
            }
        };
        self.waiters.fetch_sub(1, Ordering::AcqRel);
        result
    }
}

/// CLOCK_MONOTONIC now plus `nanos`.
pub fn after(nanos: i64) -> timespec {
    let mut now = timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let total = now.tv_nsec.saturating_add(nanos);
    timespec { tv_sec: now.tv_sec.saturating_add(total / 1_000_000_000), tv_nsec: total % 1_000_000_000 }
}

/// FUTEX_WAIT_BITSET with an absolute CLOCK_MONOTONIC deadline; returns 0 or
/// the errno. A signal without SA_RESTART gives EINTR, as the blocking
/// socket call it stands in for would.
fn futex_wait(word: &AtomicU32, expected: u32, deadline: &timespec) -> c_int {
    let timeout = deadline as *const timespec;
    // SAFETY: `word` is a live u32 for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG,
            expected,
            timeout,
            std::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    if r == 0 {
        0
    } else {
        crate::errno::get()
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: as above; waking has no memory effects.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, i32::MAX);
    }
}

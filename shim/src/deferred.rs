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
use std::sync::atomic::{AtomicU32, Ordering};

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

/// Where the deferred connect goes; written by the thread owning
/// `Connecting`, read by the thread owning `Sending`.
#[derive(Clone, Copy)]
pub struct Destination {
    storage: libc::sockaddr_in6,
    len: socklen_t,
}

impl Destination {
    pub fn as_ptr(&self) -> *const sockaddr {
        (&self.storage as *const libc::sockaddr_in6).cast()
    }

    pub fn len(&self) -> socklen_t {
        self.len
    }
}

pub struct Socket {
    pub(crate) refs: AtomicU32,
    pub(crate) next_free: AtomicU32,
    phase: AtomicU32,
    waiters: AtomicU32,
    option: AtomicU32,
    flags: AtomicU32,
    destination: UnsafeCell<Destination>,
}

// SAFETY: `destination` is only written by the thread that won the
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
            flags: AtomicU32::new(0),
            // SAFETY: an all-zero sockaddr_in6 is a valid (AF_UNSPEC) value.
            destination: UnsafeCell::new(Destination { storage: unsafe { std::mem::zeroed() }, len: 0 }),
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

    pub fn has_flag(&self, flag: u32) -> bool {
        self.flags.load(Ordering::Relaxed) & flag != 0
    }

    pub fn set_flag(&self, flag: u32) {
        self.flags.fetch_or(flag, Ordering::Relaxed);
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

    /// Records the destination; only while owning `Connecting`.
    pub fn record_destination(&self, addr: *const sockaddr, len: socklen_t) {
        let len = len.min(std::mem::size_of::<libc::sockaddr_in6>() as socklen_t);
        // SAFETY: we own the Connecting phase, so nobody reads the cell; the
        // caller checked `addr` is readable for `len` bytes.
        unsafe {
            let dest = &mut *self.destination.get();
            std::ptr::copy_nonoverlapping(addr.cast::<u8>(), (&mut dest.storage as *mut libc::sockaddr_in6).cast::<u8>(), len as usize);
            dest.len = len;
        }
    }

    /// The recorded destination; only while owning `Sending`.
    pub fn destination(&self) -> Destination {
        // SAFETY: see the Sync impl.
        unsafe { *self.destination.get() }
    }

    /// Sleeps while the phase satisfies `waiting`, until `deadline`
    /// (CLOCK_MONOTONIC) if one is given.
    pub fn wait_while(&self, waiting: fn(Phase) -> bool, deadline: Option<timespec>) -> Wait {
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let result = loop {
            let current = self.phase.load(Ordering::Acquire);
            if !waiting(Phase::from_u32(current)) {
                break Wait::Changed;
            }
            match futex_wait(&self.phase, current, deadline.as_ref()) {
                0 | libc::EAGAIN => continue,
                libc::ETIMEDOUT => break Wait::TimedOut,
                libc::EINTR => break Wait::Interrupted,
                _ => break Wait::Changed, // futex unusable: let the kernel answer
            }
        };
        self.waiters.fetch_sub(1, Ordering::AcqRel);
        result
    }
}

/// FUTEX_WAIT_BITSET with an absolute CLOCK_MONOTONIC deadline; returns 0 or
/// the errno. A signal without SA_RESTART gives EINTR, as the blocking
/// socket call it stands in for would.
fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<&timespec>) -> c_int {
    let timeout = deadline.map_or(std::ptr::null(), |d| d as *const timespec);
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

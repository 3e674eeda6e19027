//! The per-socket deferred-connect state machine. Every legal move is a
//! method here; hooks ask named questions and never set a phase themselves.
//!
//! ```text
//!  from        to          when
//!  ----------  ----------  ------------------------------------------------
//!  Armed       Connecting  connect(), explicit emulated socket, deferral possible
//!  Connecting  Deferred    the destination is recorded; connect() returns 0
//!  Connecting  Armed       a fork child found the transition half done
//!  Confirming  Kernel      in a fork child (the parent acts on the outcome)
//!  Armed       Kernel      connect() without deferral (cookie request, error)
//!  Deferred    Sending     the first write, or a kick (read, wait, shutdown, exec)
//!  Sending     Confirming  auto mode: the SYN left carrying data
//!  Sending     Kernel      the SYN left (no data, or explicit mode)
//!  Sending     Deferred    no SYN left: client Fast Open switched off (EOPNOTSUPP)
//!  Confirming  Resolving   a hook looks for the SYN's outcome (one thread at a time)
//!  Resolving   Confirming  no outcome yet (still SYN_SENT)
//!  Resolving   Kernel      established, or retried after a reset, or failed
//!  Deferred    Armed       explicit: shutdown()/connect(AF_UNSPEC) disconnect
//!  Deferred    Kernel      another process sharing the socket sent the SYN
//!  Kernel      Armed       explicit: the kernel socket is back in CLOSE and
//!                          connect() is called again (the option survives)
//! ```
//!
//! * `Armed`: explicit, emulated: the option is recorded; the kernel socket
//!   is untouched (CLOSE).
//! * `Deferred`: `connect()` returned 0 without a packet. Emulated: the
//!   kernel socket is still unconnected and the destination is recorded
//!   here. Kernel backend (auto mode): the kernel holds the socket deferred.
//! * `Connecting`, `Sending`, `Resolving`: one thread owns the transition
//!   (the loser of a race waits for it, or skips it), so exactly one SYN ever
//!   leaves and one retry at most is made.
//! * `Confirming` (auto mode): the SYN left with data; until the handshake's
//!   outcome is seen, a reset is retried without data and a dropped SYN is
//!   remembered (failure memory).
//! * `Kernel`: the kernel's socket answers every call itself.
//!
//! The phase word doubles as a futex, so blocking readers and a blocking
//! second `connect()` sleep until the first write moves the socket on.

use crate::addr::SockAddr;
use crate::errno::Errno;
use crate::kernel;
use libc::{c_int, timespec};
use std::cell::UnsafeCell;
use crate::shared::{Arena, Slot};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Phase {
    Armed = 0,
    Connecting = 1,
    Deferred = 2,
    Sending = 3,
    Confirming = 4,
    Resolving = 5,
    Kernel = 6,
}

impl Phase {
    fn from_u32(v: u32) -> Phase {
        match v {
            1 => Phase::Connecting,
            2 => Phase::Deferred,
            3 => Phase::Sending,
            4 => Phase::Confirming,
            5 => Phase::Resolving,
            6 => Phase::Kernel,
            _ => Phase::Armed,
        }
    }

    /// No SYN has left yet, or the one thread sending it has not returned.
    pub fn unsent(self) -> bool {
        matches!(self, Phase::Connecting | Phase::Deferred | Phase::Sending)
    }

    /// A transition another thread owns.
    fn busy(self) -> bool {
        matches!(self, Phase::Connecting | Phase::Sending | Phase::Resolving)
    }
}

/// Who asked for Fast Open on this socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Origin {
    /// The program set TCP_FASTOPEN_CONNECT: the kernel's exact semantics.
    Explicit = 0,
    /// Auto mode: the program never asked, and sees a plain connection.
    Auto = 1,
}

/// How the deferred connect is made for this socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Engine {
    /// libtfo keeps the destination; the first write is sendto(MSG_FASTOPEN).
    Emulated = 0,
    /// The kernel's own TCP_FASTOPEN_CONNECT holds the socket deferred.
    Kernel = 1,
}

/// The two ends of a deferred connection: where the SYN will go, and the
/// local address the kernel's deferred socket would already report.
#[derive(Clone, Copy)]
pub struct Endpoints {
    pub remote: SockAddr,
    pub local: SockAddr,
}

/// The socket's connect() went out as a SYN carrying a cookie request (no
/// cookie was cached). The kernel never frees `fastopen_req` on that path,
/// so a later MSG_FASTOPEN gives EALREADY (spec §7).
pub const FLAG_COOKIE_REQUESTED: u32 = 1;

/// The socket listens: the kernel's poll reports no error for a listener,
/// whatever an earlier life left pending.
pub const FLAG_LISTENING: u32 = 4;

/// The kernel socket's socket layer says "connected" (SS_CONNECTED): a
/// blocking connect or first write completed, or a connect() said so. A
/// connect() then gives EISCONN, whatever the TCP state, until a disconnect.
pub const FLAG_KERNEL_CONNECTED: u32 = 16;

/// shutdown(SHUT_RD) before the socket connected: the kernel keeps it, so
/// a read of the deferred socket ends at once (0) instead of waiting.
pub const FLAG_READ_SHUT: u32 = 8;

/// The kernel socket is "connecting" to the socket layer (SS_CONNECTING): a
/// SYN left through a call that did not wait for its outcome. A connect()
/// then reports a failure the kernel saw (sk_err, else ECONNABORTED) before
/// anything else, and resets that.
pub const FLAG_KERNEL_CONNECTING: u32 = 2;

/// The socket layer says "disconnecting" (SS_DISCONNECTING): a shutdown
/// found the socket connecting but already back in CLOSE (or SYN_RECV).
/// Every connect() then says EINVAL until a disconnect (AF_UNSPEC).
pub const FLAG_KERNEL_DISCONNECTING: u32 = 32;

/// shutdown(SHUT_WR or SHUT_RDWR) before the socket connected: with the
/// reading side shut too (SHUTDOWN_MASK) tcp_poll() adds POLLHUP.
pub const FLAG_WRITE_SHUT: u32 = 256;

/// The socket listened once. Linux 6.18 then refuses every connect()
/// (EINVAL), so connect() is the kernel's to answer, never deferred.
pub const FLAG_HAS_LISTENED: u32 = 64;

/// The kernel's connect() would have run for this socket (a deferral made
/// by the emulation): Linux 6.18 then refuses listen() for good
/// (kernel::listen_refused_after_connect).
pub const FLAG_HAS_CONNECTED: u32 = 128;

/// The socket underneath went through the kernel's connect() too (its SYN
/// left, or an emulated disconnect took it through SYN_SENT): the kernel
/// then answers listen() itself, its checks in its own order.
pub const FLAG_UNDERNEATH_CONNECTED: u32 = 512;
/// An emulated deferred socket whose route the kernel's would have dropped
/// (sk_dst_reset: SO_DONTROUTE, a new TOS or mark, binding to a device):
/// IP_MTU then says ENOTCONN, until a new connect routes it again.
pub const FLAG_ROUTE_RESET: u32 = 1024;

/// How many epoll instances may hold one deferred socket's registrations.
pub const MAX_WATCHERS: usize = 4;

/// What the kernel's socket holds: one per socket, shared by the processes
/// that share the socket once one of them forked (`shared.rs`).
pub struct SocketState {
    phase: AtomicU32,
    waiters: AtomicU32,
    origin: AtomicU8,
    engine: AtomicU8,
    /// Explicit TCP_FASTOPEN_CONNECT value (emulated sockets).
    option: AtomicU32,
    /// AF_INET or AF_INET6, learnt when the option was set or at connect.
    family: AtomicU32,
    flags: AtomicU32,
    /// An error the kernel would hold in sk_err (ECONNRESET after a
    /// disconnect, an error libtfo consumed while looking), reported once
    /// by SO_ERROR, a send or a receive.
    pending_error: AtomicI32,
    /// FORKS when the connect() was deferred: a fork since then may share
    /// the socket with another process.
    forks_at_defer: AtomicU32,
    /// SIOCOUTQ of the socket underneath when this process first forked
    /// since the deferral (UNMARKED before). tcp_disconnect() moves it (the
    /// sequence number jumps), so a change while the socket is still in
    /// CLOSE means another process sharing it disconnected it. (Only for a
    /// state the arena had no room to share.)
    send_queue_mark: AtomicI32,
    /// When the auto-mode connect() was deferred (CLOCK_MONOTONIC, ms).
    deferred_at_ms: std::sync::atomic::AtomicU64,
    /// Bumped at every change of phase: a process sharing the socket tells
    /// from it that the other one moved it (epoll registrations follow).
    epoch: AtomicU32,
    /// The process whose thread owns the transition under way (Connecting,
    /// Sending, Resolving): one sharing the socket may die in it.
    owner: AtomicI32,
    endpoints: UnsafeCell<Endpoints>,
}

// SAFETY: `endpoints` is only written by the thread that owns the
// Armed→Connecting (or a fresh entry's) transition and only read once the
// phase has been published with Release and read with Acquire.
unsafe impl Sync for SocketState {}

impl Default for SocketState {
    fn default() -> Self {
        SocketState {
            phase: AtomicU32::new(Phase::Armed as u32),
            waiters: AtomicU32::new(0),
            origin: AtomicU8::new(Origin::Explicit as u8),
            engine: AtomicU8::new(Engine::Emulated as u8),
            option: AtomicU32::new(0),
            family: AtomicU32::new(0),
            flags: AtomicU32::new(0),
            pending_error: AtomicI32::new(0),
            deferred_at_ms: Default::default(),
            forks_at_defer: AtomicU32::new(0),
            send_queue_mark: AtomicI32::new(UNMARKED),
            owner: AtomicI32::new(0),
            epoch: AtomicU32::new(0),
            endpoints: UnsafeCell::new(Endpoints { remote: SockAddr::empty(), local: SockAddr::empty() }),
        }
    }
}

impl SocketState {
    /// A copy of `from`, made while no transition is under way. Its waiters
    /// come along: they went to sleep on `from`'s word, are woken to sleep
    /// on this one, and will count themselves out of it.
    fn copy_from(&self, from: &SocketState) {
        let relaxed = Ordering::Relaxed;
        self.origin.store(from.origin.load(relaxed), relaxed);
        self.engine.store(from.engine.load(relaxed), relaxed);
        self.option.store(from.option.load(relaxed), relaxed);
        self.family.store(from.family.load(relaxed), relaxed);
        self.flags.store(from.flags.load(relaxed), relaxed);
        self.pending_error.store(from.pending_error.load(relaxed), relaxed);
        self.forks_at_defer.store(from.forks_at_defer.load(relaxed), relaxed);
        self.send_queue_mark.store(from.send_queue_mark.load(relaxed), relaxed);
        self.deferred_at_ms.store(from.deferred_at_ms.load(relaxed), relaxed);
        self.owner.store(from.owner.load(relaxed), relaxed);
        self.epoch.store(from.epoch.load(relaxed), relaxed);
        self.waiters.store(from.waiters.load(relaxed), relaxed);
        // SAFETY: no transition is under way (the caller's contract), so
        // nobody writes either cell.
        unsafe { *self.endpoints.get() = *from.endpoints.get() };
        self.phase.store(from.phase.load(relaxed), Ordering::Release);
    }
}

pub struct Connection {
    /// The socket's state while this process alone holds it.
    local: SocketState,
    /// The socket's state in memory shared with forked processes, once the
    /// socket was tracked at a fork (null before): see `Deref`.
    shared: AtomicPtr<Slot<SocketState>>,
    /// FORKS + 1 at the last fork that counted this process in the slot
    /// (once per entry, however many dups name it).
    counted_at_fork: AtomicU32,
    /// The SYN's data kept for a retry after a reset (auto mode, non-blocking).
    pub retained: crate::retain::Retained,
    /// epoll instances (fd + 1) holding this socket's registrations.
    pub watchers: [AtomicU32; MAX_WATCHERS],
}

impl Default for Connection {
    fn default() -> Self {
        Connection {
            local: SocketState::default(),
            shared: AtomicPtr::new(std::ptr::null_mut()),
            counted_at_fork: AtomicU32::new(0),
            retained: Default::default(),
            watchers: Default::default(),
        }
    }
}

/// Every question and transition reads the socket's state where it lives:
/// this process's own, or the slot shared since a fork.
impl std::ops::Deref for Connection {
    type Target = SocketState;

    #[inline(always)]
    fn deref(&self) -> &SocketState {
        let slot = self.shared.load(Ordering::Acquire);
        if slot.is_null() {
            &self.local
        } else {
            // SAFETY: a slot of the shared arena, never unmapped.
            unsafe { &(*slot).value }
        }
    }
}

/// The states of sockets shared with forked processes.
// SAFETY: an all-zero SocketState is valid (atomics, and addresses of
// plain bytes).
static SHARED: Arena<SocketState> = unsafe { Arena::new() };

/// No SIOCOUTQ mark taken since the deferral.
const UNMARKED: i32 = i32::MIN;

/// How many times this process forked (parent and child both count).
static FORKS: AtomicU32 = AtomicU32::new(0);

/// Called after every fork, in both processes.
pub fn note_fork() {
    FORKS.fetch_add(1, Ordering::Relaxed);
    PID.store(0, Ordering::Relaxed);
}

/// This process's id, asked once per process (0: not yet).
static PID: AtomicI32 = AtomicI32::new(0);

/// Whether process `pid` exists (one that cannot be signalled does).
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let signalled = unsafe { libc::kill(pid, 0) };
    signalled == 0 || Errno::last().0 != libc::ESRCH
}

fn my_pid() -> i32 {
    match PID.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: getpid has no preconditions.
            let pid = unsafe { libc::getpid() };
            PID.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// How a wait for another thread's transition ended.
pub enum Wait {
    Changed,
    TimedOut,
    Interrupted,
}

impl Connection {
    pub(crate) fn reset(&self) {
        self.unshare();
        self.phase.store(Phase::Armed as u32, Ordering::Relaxed);
        self.origin.store(Origin::Explicit as u8, Ordering::Relaxed);
        self.engine.store(Engine::Emulated as u8, Ordering::Relaxed);
        self.option.store(0, Ordering::Relaxed);
        self.flags.store(0, Ordering::Relaxed);
        self.pending_error.store(0, Ordering::Relaxed);
        self.retained.release();
        for w in &self.watchers {
            w.store(0, Ordering::Relaxed);
        }
    }

    // ---- what it is -------------------------------------------------------

    #[inline]
    pub fn phase(&self) -> Phase {
        Phase::from_u32(self.phase.load(Ordering::Acquire))
    }

    pub fn origin(&self) -> Origin {
        [Origin::Explicit, Origin::Auto][(self.origin.load(Ordering::Relaxed) == Origin::Auto as u8) as usize]
    }

    pub fn is_auto(&self) -> bool {
        self.origin() == Origin::Auto
    }

    pub fn engine(&self) -> Engine {
        [Engine::Emulated, Engine::Kernel][(self.engine.load(Ordering::Relaxed) == Engine::Kernel as u8) as usize]
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

    fn set_flag(&self, flag: u32, on: bool) {
        if on {
            self.flags.fetch_or(flag, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!flag, Ordering::Relaxed);
        }
    }

    // ---- the socket layer underneath, as the kernel's socket would have it --
    // (the hooks request these; the bits are private to this file)

    /// A SYN left through a call (connect, a first write, the program's own
    /// MSG_FASTOPEN): `connected` when it waited and succeeded, `connecting`
    /// when it did not wait (SS_CONNECTING), neither when it failed.
    pub fn socket_connect_went(&self, connecting: bool, connected: bool) {
        self.set_flag(FLAG_KERNEL_CONNECTING, connecting);
        self.set_flag(FLAG_KERNEL_CONNECTED, connected);
    }

    /// A connect() failed after its SYN, or a shutdown in SYN_SENT
    /// disconnected the socket: unconnected, its cookie request freed.
    pub fn socket_disconnected(&self) {
        self.set_flag(FLAG_KERNEL_CONNECTING | FLAG_KERNEL_CONNECTED | FLAG_COOKIE_REQUESTED, false);
    }

    /// A shutdown in SYN_SENT disconnected the socket (its writing side,
    /// shut in CLOSE before, is open again: tcp_disconnect).
    pub fn socket_disconnected_by_shutdown(&self) {
        self.socket_disconnected();
        self.set_flag(FLAG_WRITE_SHUT, false);
    }

    /// A shutdown found the socket "connecting" but already back in CLOSE
    /// (or SYN_RECV): "disconnecting" until a disconnect.
    pub fn socket_disconnecting(&self) {
        self.set_flag(FLAG_KERNEL_CONNECTING, false);
        self.set_flag(FLAG_KERNEL_DISCONNECTING, true);
    }

    /// A disconnect (AF_UNSPEC) ended "disconnecting".
    pub fn socket_disconnecting_ended(&self) {
        self.set_flag(FLAG_KERNEL_DISCONNECTING, false);
    }

    /// The cookie request of the socket's SYN is freed (a disconnect).
    pub fn cookie_request_freed(&self) {
        self.set_flag(FLAG_COOKIE_REQUESTED, false);
    }

    /// The socket underneath went through the kernel's connect() too.
    pub fn underneath_connected(&self) {
        self.set_flag(FLAG_UNDERNEATH_CONNECTED, true);
    }

    /// The kernel's route of the socket would be dropped (sk_dst_reset).
    pub fn route_reset(&self) {
        self.set_flag(FLAG_ROUTE_RESET, true);
    }

    /// listen() succeeded: a listener, and one that has listened.
    pub fn listening(&self) {
        self.set_flag(FLAG_LISTENING | FLAG_HAS_LISTENED, true);
    }

    /// It listened before libtfo tracked it (and is no listener now).
    pub fn listened_before(&self) {
        self.set_flag(FLAG_HAS_LISTENED, true);
    }

    /// No longer a listener (a shutdown of it).
    pub fn stopped_listening(&self) {
        self.set_flag(FLAG_LISTENING, false);
    }

    /// A shutdown before the socket connected shut these sides (the kernel
    /// keeps sk_shutdown for a later deferral).
    pub fn sides_shut(&self, read: bool, write: bool) {
        if read {
            self.set_flag(FLAG_READ_SHUT, true);
        }
        if write {
            self.set_flag(FLAG_WRITE_SHUT, true);
        }
    }

    /// tcp_disconnect() (or a SYN leaving) cleared sk_shutdown.
    pub fn shutdown_forgotten(&self) {
        self.set_flag(FLAG_READ_SHUT | FLAG_WRITE_SHUT, false);
    }

    /// The reading side as the kernel's socket shows it now (the writing
    /// side is not visible in CLOSE, so it is kept as noted).
    pub fn reading_side_is(&self, shut: bool) {
        self.set_flag(FLAG_READ_SHUT, shut);
    }

    /// No SYN has left yet.
    #[inline]
    pub fn is_unsent(&self) -> bool {
        self.phase().unsent()
    }

    /// Something for libtfo to do on this socket: its SYN has not left, its
    /// outcome is unknown, or an error is waiting to be reported.
    #[inline]
    pub fn needs_attention(&self) -> bool {
        let phase = self.phase();
        phase.unsent()
            || matches!(phase, Phase::Confirming | Phase::Resolving)
            || self.pending_error.load(Ordering::Relaxed) != 0
    }

    /// The SYN's outcome is still to be seen (auto mode).
    #[inline]
    pub fn is_confirming(&self) -> bool {
        self.phase() == Phase::Confirming
    }

    /// How long ago an auto-mode connect() was deferred.
    pub fn deferred_for_ms(&self) -> u64 {
        kernel::monotonic_ms().saturating_sub(self.deferred_at_ms.load(Ordering::Relaxed))
    }

    /// The recorded endpoints; valid once the socket was Deferred.
    pub fn endpoints(&self) -> Endpoints {
        // SAFETY: see the Sync impl.
        unsafe { *self.endpoints.get() }
    }

    // ---- pending error ----------------------------------------------------

    /// The socket holds `errno` for the program's next call (sk_err: a
    /// disconnect's ECONNRESET, a failure libtfo consumed to look at it).
    pub fn hold_error(&self, errno: c_int) {
        self.pending_error.store(errno, Ordering::Relaxed);
    }

    /// The held error is gone (a new SYN left: tcp_connect_init clears it).
    pub fn drop_held_error(&self) {
        self.hold_error(0);
    }

    pub fn pending_error(&self) -> c_int {
        self.pending_error.load(Ordering::Relaxed)
    }

    /// Reports the pending error once, as sock_error() does.
    pub fn take_pending_error(&self) -> Option<Errno> {
        match self.pending_error.swap(0, Ordering::AcqRel) {
            0 => None,
            e => Some(Errno(e)),
        }
    }

    // ---- transitions --------------------------------------------------------

    fn cas(&self, from: Phase, to: Phase) -> Result<(), Phase> {
        self.phase.compare_exchange(from as u32, to as u32, Ordering::AcqRel, Ordering::Acquire).map_err(Phase::from_u32)?;
        self.epoch.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// See `SocketState::epoch`.
    pub fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Relaxed)
    }

    fn enter(&self, phase: Phase) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
        self.phase.store(phase as u32, Ordering::Release);
        if self.waiters.load(Ordering::Acquire) != 0 {
            kernel::futex_wake(&self.phase);
        }
    }

    /// Takes a transition from `from` to the busy phase `to`, noting this
    /// process as its owner.
    fn take(&self, from: Phase, to: Phase) -> Result<(), Phase> {
        self.cas(from, to)?;
        self.owner.store(my_pid(), Ordering::Relaxed);
        Ok(())
    }

    /// Explicit socket, emulated: connect() is about to record a deferral.
    pub fn begin_connect(&self) -> bool {
        self.take(Phase::Armed, Phase::Connecting).is_ok()
    }

    /// The deferral is recorded: connect() returns 0.
    pub fn deferred(&self, endpoints: Endpoints) {
        self.forks_at_defer.store(FORKS.load(Ordering::Relaxed), Ordering::Relaxed);
        self.send_queue_mark.store(UNMARKED, Ordering::Relaxed);
        // SAFETY: we own the Connecting phase, so nobody reads the cell.
        unsafe { *self.endpoints.get() = endpoints };
        self.flags.fetch_and(!FLAG_ROUTE_RESET, Ordering::Relaxed);
        self.flags.fetch_or(FLAG_HAS_CONNECTED, Ordering::Relaxed);
        self.enter(Phase::Deferred);
    }

    /// A fresh entry for an auto-mode socket whose connect() was deferred.
    pub fn start_auto(&self, engine: Engine, family: c_int, endpoints: Endpoints) {
        self.origin.store(Origin::Auto as u8, Ordering::Relaxed);
        self.engine.store(engine as u8, Ordering::Relaxed);
        self.set_family(family);
        self.deferred_at_ms.store(kernel::monotonic_ms(), Ordering::Relaxed);
        self.forks_at_defer.store(FORKS.load(Ordering::Relaxed), Ordering::Relaxed);
        // SAFETY: the entry is not yet published in the fd table.
        unsafe { *self.endpoints.get() = endpoints };
        self.flags.fetch_or(FLAG_HAS_CONNECTED, Ordering::Relaxed);
        self.enter(Phase::Deferred);
    }

    /// connect() went ahead without deferral (the SYN left, or it failed).
    pub fn connected_without_deferral(&self, cookie_requested: bool) {
        if cookie_requested {
            self.flags.fetch_or(FLAG_COOKIE_REQUESTED, Ordering::Relaxed);
        }
        self.flags.fetch_or(FLAG_UNDERNEATH_CONNECTED, Ordering::Relaxed);
        self.enter(Phase::Kernel);
    }

    /// Takes the right to send the deferred SYN. Waits while another thread
    /// (or process) is connecting or sending, as the socket lock would make
    /// us; `Err` holds the phase when there is nothing left to send. Once
    /// the other sender's SYN is out, the socket is the kernel's (`Err`):
    /// its writes wait for the connection themselves, or say EAGAIN, while
    /// the sender may still be waiting for its handshake.
    pub fn begin_send(&self, fd: c_int) -> Result<(), Phase> {
        loop {
            match self.take(Phase::Deferred, Phase::Sending) {
                Ok(()) => return Ok(()),
                Err(phase @ (Phase::Connecting | Phase::Sending)) => {
                    if phase == Phase::Sending && self.engine() == Engine::Emulated && kernel::tcp_state(fd).is_some_and(|s| s != kernel::TCP_CLOSE) {
                        return Err(phase);
                    }
                    self.adopt_orphan(fd);
                    self.wait_while(|p| p == phase, Some(kernel::after(10_000_000)), true, || true);
                }
                Err(phase) => return Err(phase),
            }
        }
    }

    /// A transition whose owner died (a process sharing the socket since a
    /// fork, killed in it) would never finish: settle it from the kernel
    /// socket, as a fork child settles its parent's other threads' ones.
    pub fn adopt_orphan(&self, fd: c_int) {
        if !self.is_shared() || !self.phase().busy() {
            return;
        }
        let owner = self.owner.load(Ordering::Relaxed);
        if owner == 0 || owner == my_pid() || alive(owner) {
            return;
        }
        self.settle_after_fork(kernel::tcp_state(fd).is_some_and(|s| s != kernel::TCP_CLOSE));
    }

    /// The SYN left: with data to confirm (auto mode), or done.
    pub fn syn_left(&self, with_data_to_confirm: bool) {
        self.flags.fetch_or(FLAG_UNDERNEATH_CONNECTED, Ordering::Relaxed);
        self.enter(if with_data_to_confirm { Phase::Confirming } else { Phase::Kernel });
    }

    /// No SYN left (client Fast Open switched off): still deferred.
    pub fn syn_not_sent(&self) {
        self.enter(Phase::Deferred);
    }

    /// Takes the right to act on the SYN's outcome; false if another thread
    /// has it, or it is done.
    pub fn begin_resolve(&self) -> bool {
        // The SYN's data is kept by the process that sent it (the owner of
        // Sending, still noted): only it can retry it after a reset, so
        // while it lives, another process sharing the socket leaves the
        // outcome to it and gets the kernel's answers meanwhile (for 3 s at
        // most: each look costs that process a kill(pid, 0)).
        if self.is_shared() && self.phase() == Phase::Confirming && self.deferred_for_ms() < 3000 {
            let sender = self.owner.load(Ordering::Relaxed);
            if sender != 0 && sender != my_pid() && alive(sender) {
                return false;
            }
        }
        self.take(Phase::Confirming, Phase::Resolving).is_ok()
    }

    /// The outcome is not in yet (still SYN_SENT): back to waiting for it.
    pub fn unresolved(&self) {
        self.enter(Phase::Confirming);
    }

    /// The outcome is handled; the kernel answers from now on.
    pub fn resolved(&self) {
        self.retained.release();
        self.enter(Phase::Kernel);
    }

    /// Before a fork: an explicit emulated deferred socket about to be
    /// shared takes its mark (once per deferral), for `catch_up`.
    pub fn mark_before_fork(&self, fd: c_int) {
        if self.phase() == Phase::Deferred
            && !self.is_auto()
            && self.engine() == Engine::Emulated
            && self.send_queue_mark.load(Ordering::Relaxed) == UNMARKED
        {
            if let Some(queued) = kernel::send_queue(fd) {
                self.send_queue_mark.store(queued, Ordering::Relaxed);
            }
        }
    }

    /// Before a fork: the child will hold this socket too, so its state
    /// moves to (or is counted once more in) the shared arena. A transition
    /// under way stays this process's: the child settles it
    /// (`settle_after_fork`), as when the arena is full.
    pub fn share_for_fork(&self) {
        let fork = FORKS.load(Ordering::Relaxed).wrapping_add(1);
        if self.counted_at_fork.swap(fork, Ordering::Relaxed) == fork {
            return; // a dup of an entry counted already
        }
        let slot = self.shared.load(Ordering::Acquire);
        if !slot.is_null() {
            // SAFETY: a slot of the shared arena, never unmapped.
            return unsafe { &*slot }.add_process();
        }
        if !matches!(self.phase(), Phase::Armed | Phase::Deferred | Phase::Kernel) {
            return;
        }
        // Nothing to share: an epoll instance's entry, or a socket whose
        // option was cleared and that has nothing to remember.
        let untouched = self.phase() == Phase::Armed
            && !self.is_auto()
            && self.option() == 0
            && self.flags.load(Ordering::Relaxed) == 0
            && self.pending_error() == 0;
        if untouched {
            return;
        }
        let Some(slot) = SHARED.allocate(2) else { return };
        slot.value.copy_from(&self.local);
        self.shared.store(slot as *const Slot<SocketState> as *mut Slot<SocketState>, Ordering::Release);
        // Threads asleep on the old word would never hear of a transition
        // made on the new one: they look again, and sleep there.
        if self.local.waiters.load(Ordering::Acquire) != 0 {
            kernel::futex_wake(&self.local.phase);
        }
    }

    /// The state lives in the shared arena (a fork since it was tracked).
    pub fn is_shared(&self) -> bool {
        !self.shared.load(Ordering::Relaxed).is_null()
    }

    /// This process lets go of the shared state (the entry's last fd was
    /// closed, or the process exits).
    pub fn unshare(&self) {
        let slot = self.shared.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !slot.is_null() {
            // SAFETY: a slot of the shared arena, never unmapped.
            SHARED.release(unsafe { &*slot });
        }
    }

    /// Some epoll instance holds registrations of this socket.
    pub fn has_watchers(&self) -> bool {
        self.watchers.iter().any(|w| w.load(Ordering::Relaxed) != 0)
    }

    /// A deferred socket shared with another process since it was deferred
    /// (a fork): the other process may have disconnected it.
    #[inline(always)]
    pub fn may_be_disconnected_elsewhere(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == Phase::Deferred as u32
            && self.send_queue_mark.load(Ordering::Relaxed) != UNMARKED
            && !self.is_shared()
            && FORKS.load(Ordering::Relaxed) != self.forks_at_defer.load(Ordering::Relaxed)
    }

    /// Follows a disconnect made by another process sharing the socket
    /// (its shutdown() or connect(AF_UNSPEC) ran tcp_disconnect() on the
    /// socket underneath): this process sees what the kernel's would, an
    /// unconnected socket with ECONNRESET pending.
    #[cold]
    pub fn catch_up(&self, fd: c_int) {
        let mark = self.send_queue_mark.load(Ordering::Relaxed);
        if kernel::send_queue(fd).is_some_and(|queued| queued != mark) && kernel::tcp_state(fd) == Some(kernel::TCP_CLOSE) {
            self.disconnect();
        }
    }

    /// Explicit: disconnect of a deferred socket (no packet, ECONNRESET;
    /// tcp_disconnect() clears sk_shutdown, so a shutdown made before the
    /// connect is forgotten).
    pub fn disconnect(&self) -> bool {
        if self.cas(Phase::Deferred, Phase::Armed).is_err() {
            return false;
        }
        self.set_flag(FLAG_READ_SHUT | FLAG_WRITE_SHUT, false);
        self.hold_error(libc::ECONNRESET);
        true
    }

    /// Another process sharing the socket sent its SYN.
    pub fn sent_elsewhere(&self) {
        let _ = self.cas(Phase::Deferred, Phase::Kernel);
    }

    /// Explicit: the kernel socket is back in CLOSE; the option survives
    /// tcp_disconnect(), so the next connect() defers again.
    pub fn rearm(&self) {
        if self.cas(Phase::Kernel, Phase::Armed).is_ok() {
            self.flags.fetch_and(!FLAG_COOKIE_REQUESTED, Ordering::Relaxed);
        }
    }

    /// In a fork child only the forking thread exists: a transition another
    /// thread owned would never finish. `syn_gone` says whether the kernel
    /// socket left CLOSE.
    /// A SYN's outcome is the parent's to act on: two processes retrying one
    /// reset would send the kept bytes twice.
    pub fn settle_after_fork(&self, syn_gone: bool) {
        match self.phase() {
            Phase::Connecting => self.enter(Phase::Armed),
            Phase::Sending if syn_gone => self.enter(Phase::Kernel),
            Phase::Sending => self.enter(Phase::Deferred),
            Phase::Confirming | Phase::Resolving => self.resolved(),
            _ => {}
        }
    }

    /// Sleeps while the phase satisfies `waiting`, until `deadline`
    /// (CLOCK_MONOTONIC) if one is given. After a fork, every 100 ms
    /// `unchanged()` is asked too: another process may send the SYN of a
    /// shared socket without this process's phase word ever changing. A
    /// signal handler interrupts it as it would the socket call (EINTR, or
    /// restarted when `restartable`: a call that ends at a signal without
    /// an error, such as a read of no bytes, is not).
    pub fn wait_while(&self, waiting: impl Fn(Phase) -> bool, deadline: Option<timespec>, restartable: bool, unchanged: impl Fn() -> bool) -> Wait {
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let result = loop {
            let current = self.phase.load(Ordering::Acquire);
            if !waiting(Phase::from_u32(current)) {
                break Wait::Changed;
            }
            // Only a socket shared with another process (a fork since it was
            // deferred) needs looking at now and then; otherwise one futex
            // wait, which a signal interrupts exactly as it would the
            // blocking socket call (EINTR, or a restart with SA_RESTART).
            let shared = FORKS.load(Ordering::Relaxed) != self.forks_at_defer.load(Ordering::Relaxed);
            let until = if shared {
                let slice = kernel::after(100_000_000);
                Some(match deadline {
                    Some(d) if (d.tv_sec, d.tv_nsec) < (slice.tv_sec, slice.tv_nsec) => d,
                    _ => slice,
                })
            } else if !restartable && deadline.is_none() {
                // An untimed futex wait is restarted by the kernel itself
                // under SA_RESTART; a timed one says EINTR.
                Some(kernel::after(3_600_000_000_000))
            } else {
                deadline
            };
            match kernel::futex_wait(&self.phase, current, until.as_ref()) {
                Ok(()) => continue,
                Err(Errno(libc::ETIMEDOUT)) if deadline.is_some_and(|d| until.is_some_and(|u| (d.tv_sec, d.tv_nsec) <= (u.tv_sec, u.tv_nsec))) => {
                    break Wait::TimedOut
                }
                Err(Errno(libc::ETIMEDOUT)) if unchanged() => continue,
                Err(Errno(libc::ETIMEDOUT)) => break Wait::Changed,
                // A timed futex wait is never restarted; the socket call it
                // stands for is, without a socket timeout, under SA_RESTART.
                Err(Errno(libc::EINTR)) if restartable && deadline.is_none() && kernel::handlers_restart() => continue,
                Err(Errno(libc::EINTR)) => break Wait::Interrupted,
                Err(_) => break Wait::Changed, // futex unusable: let the kernel answer
            }
        };
        self.waiters.fetch_sub(1, Ordering::AcqRel);
        result
    }

    /// Phases a fork child must settle: transitions another thread owned,
    /// and outcomes the parent will act on.
    pub fn is_mid_transition(&self) -> bool {
        self.phase().busy() || self.phase() == Phase::Confirming
    }
}

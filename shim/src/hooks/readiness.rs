//! What a wait on descriptors reports (spec §9): one implementation for
//! poll, ppoll, select, pselect (through [`Slots`]) and the epoll_wait
//! family (through its phases), each front end keeping only its own
//! argument format.
//!
//! 1. Collect: the deferred sockets among the descriptors asked about. An
//!    emulated socket whose SYN has not left reports POLLOUT|POLLWRNORM
//!    and nothing else (tcp_poll's DEFER_CONNECT case), but the unconnected
//!    kernel socket under it would add POLLHUP, which makes level-triggered
//!    loops drop it: such sockets are taken out of the real wait and
//!    answered here. A pending error (a disconnect's) adds POLLERR.
//! 2. Probe, kick, wait: when libtfo's answers are ready, the real wait only
//!    looks (it must not wait). Auto mode: a wait that would wait, for input
//!    on a deferred socket, starts its connection first ([`kicks`]): the
//!    program is waiting for the server to speak, or was told "writable"
//!    and has nothing to write. A wait that finds something ready kicks
//!    nothing.
//! 3. Resolve: an auto-mode SYN that carried data has its outcome looked at
//!    after the wait; a reset retried meanwhile makes the wait start over,
//!    so the program never sees the reset.
//! 4. Merge: the real wait's answer and libtfo's, counted as the kernel
//!    counts. Only EINTR gives way to libtfo's ready answers (the kernel
//!    says EINTR only when nothing is ready); every other error (select's
//!    EBADF for a closed descriptor in a set, EFAULT, EINVAL) is decided by
//!    the kernel before it looks at readiness, so it fails the whole call,
//!    select's sets left as the caller gave them.

use super::syn::{self, Outcome};
use super::{attention, still_unsent};
use crate::errno::{Errno, SysResult};
use crate::fdtable::{self, Entry};
use crate::state::{Engine, FLAG_LISTENING, FLAG_READ_SHUT, FLAG_WRITE_SHUT};
use crate::stats::Counter;
use libc::c_int;

/// What tcp_poll() reports for a deferred socket.
pub const DEFERRED_MASK: i16 = libc::POLLOUT | libc::POLLWRNORM;

/// Interest in input, for the kick rule.
pub const INPUT_MASK: i16 = libc::POLLIN | libc::POLLRDNORM | libc::POLLPRI | libc::POLLRDHUP;

/// What tcp_poll() reports for this deferred socket: also "readable, peer
/// gone" when its reading side was shut before it connected, and "hung up"
/// when both sides were.
pub fn deferred_mask(entry: &Entry) -> i16 {
    let mut mask = DEFERRED_MASK;
    if entry.conn.has_flag(FLAG_READ_SHUT) {
        mask |= libc::POLLIN | libc::POLLRDNORM | libc::POLLRDHUP;
        if entry.conn.has_flag(FLAG_WRITE_SHUT) {
            mask |= libc::POLLHUP;
        }
    }
    mask
}

/// What libtfo answers for a socket hidden from the real wait: its
/// deferred mask, POLLERR while an error is held.
fn hidden_mask(entry: &Entry) -> i16 {
    deferred_mask(entry) | if entry.conn.pending_error() != 0 { libc::POLLERR } else { 0 }
}

/// The one decision whether a wait starts a deferred connection: it asks
/// for input (`events`) and would wait (or the socket waited long enough).
pub fn kicks(entry: &Entry, events: i16, caller_waits: bool) -> bool {
    events & INPUT_MASK != 0 && syn::wait_kicks(entry, caller_waits)
}

/// [`kicks`] for epoll_wait, which sees a socket libtfo's timer starts
/// meanwhile with either engine (`syn::epoll_wait_kicks`).
pub fn epoll_kicks(entry: &Entry, events: i16, caller_waits: bool) -> bool {
    events & INPUT_MASK != 0 && syn::epoll_wait_kicks(entry, caller_waits)
}

/// Starts the deferred connection of `fd` for a wait ([`kicks`] said so).
pub fn kick(fd: c_int) {
    if let Some(entry) = fdtable::lookup(fd).filter(|e| syn::auto_unsent(e)) {
        syn::kick(fd, entry, Counter::KicksWait);
    }
}

/// Probe, kick, wait: `real(state, now)` is the real wait (`now`: without
/// waiting); `kick_all` starts the connections [`kicks`] chose, making them
/// ordinary connecting sockets for the real wait.
pub fn wait_phase<S>(
    state: &mut S,
    ready: bool,
    any_kick: bool,
    real: impl Fn(&mut S, bool) -> SysResult<c_int>,
    kick_all: impl FnOnce(&mut S),
) -> SysResult<c_int> {
    if ready {
        return real(state, true);
    }
    if !any_kick {
        return real(state, false);
    }
    // Nothing libtfo answers is ready: does anything else have news?
    match real(state, true) {
        Ok(0) => {
            kick_all(state);
            real(state, false)
        }
        other => other,
    }
}

/// After the wait: the outcome of an auto-mode SYN with data, if in. True
/// when a reset was retried (readiness seen before it is stale).
pub fn retried(fd: c_int, entry: &Entry) -> bool {
    entry.conn.is_confirming() && syn::resolve(fd, entry, true) == Outcome::Retried
}

/// An error of the real wait that libtfo's own ready answers replace (the
/// kernel would have returned them).
pub fn gives_way(result: &SysResult<c_int>, ready: bool) -> bool {
    ready && result == &Err(Errno(libc::EINTR))
}

/// A wait's descriptors in its own argument format (poll's array, select's
/// sets). Slot `i` is one descriptor asked about.
pub trait Slots {
    fn count(&self) -> usize;
    /// The descriptor of slot `i` and the poll events asked for it.
    fn asked(&self, i: usize) -> Option<(c_int, i16)>;
    /// Takes slot `i` out of the real wait / gives it back as asked.
    fn hide(&mut self, i: usize);
    fn give_back(&mut self, i: usize);
    /// After the real wait, slot `i` (hidden) is the caller's again, to be
    /// reported by libtfo.
    fn unhide_after(&mut self, i: usize);
    /// The real wait over the caller's arguments; `now`: without waiting.
    fn real(&mut self, now: bool) -> c_int;
    /// After a probe that found nothing ready and before the wait that
    /// follows it: slot `i` (not hidden) is asked again, where the probe
    /// changed what the caller asked (select clears the bits not ready).
    fn ask_again(&mut self, _i: usize) {}
    /// Whether slot `i` reporting `mask` counts as ready.
    fn shows(&self, i: usize, mask: i16) -> bool;
    /// Slot `i` reports `mask` too; returns how much it adds to the count.
    fn report(&mut self, i: usize, mask: i16) -> c_int;
    /// The real wait's own answers are dropped (it said EINTR; libtfo's
    /// ready ones are reported alone).
    fn clear_real(&mut self);
    /// The call fails, or starts over: what the caller gave is put back
    /// where the kernel leaves it untouched.
    fn restore(&mut self);
}

/// The wait of poll and select: collect, probe, kick, wait, resolve, merge
/// (the module comment), started over after a retried reset.
pub fn wait(slots: &mut impl Slots, caller_waits: bool) -> SysResult<c_int> {
    loop {
        let (result, retried) = wait_once(slots, caller_waits);
        if result.is_err() {
            slots.restore();
        }
        if !retried || result.is_err() {
            return result;
        }
        slots.restore();
    }
}

fn wait_once(slots: &mut impl Slots, caller_waits: bool) -> (SysResult<c_int>, bool) {
    let count = slots.count();
    let mut hidden = Bits::new(count);
    let mut kicked = Bits::new(count);
    let (mut ready, mut any_kick) = (false, false);
    for i in 0..count {
        let Some((fd, events)) = slots.asked(i) else { continue };
        let Some(entry) = attention(fd) else { continue };
        if entry.conn.is_confirming() {
            syn::resolve(fd, entry, true);
        }
        if !entry.conn.is_unsent() {
            continue;
        }
        if kicks(entry, events, caller_waits) {
            kicked.set(i);
            any_kick = true;
        }
        if entry.conn.engine() == Engine::Emulated && still_unsent(fd, entry) {
            hidden.set(i);
            ready |= slots.shows(i, hidden_mask(entry));
            slots.hide(i);
        }
    }
    let result = wait_phase(
        slots,
        ready,
        any_kick,
        |slots, now| crate::errno::check(slots.real(now)),
        |slots| {
            for i in (0..count).filter(|&i| kicked.get(i)) {
                if hidden.get(i) {
                    slots.give_back(i);
                    hidden.clear(i);
                }
                if let Some((fd, _)) = slots.asked(i) {
                    kick(fd);
                }
            }
            for i in (0..count).filter(|&i| !hidden.get(i)) {
                if slots.asked(i).is_some() {
                    slots.ask_again(i);
                }
            }
        },
    );
    for i in (0..count).filter(|&i| hidden.get(i)) {
        slots.unhide_after(i);
    }
    let gave_way = gives_way(&result, ready);
    if result.is_err() && !gave_way {
        return (result, false);
    }
    let mut total = result.unwrap_or(0).max(0);
    if gave_way {
        slots.clear_real();
    }
    let mut retried_any = false;
    for i in 0..count {
        let Some((fd, _)) = slots.asked(i) else { continue };
        if hidden.get(i) {
            if let Some(entry) = attention(fd) {
                total += slots.report(i, hidden_mask(entry));
            }
            continue;
        }
        let Some(entry) = attention(fd).filter(|_| !gave_way) else { continue };
        if retried(fd, entry) {
            retried_any = true;
        } else if entry.conn.pending_error() != 0 && !entry.conn.has_flag(FLAG_LISTENING) {
            // A disconnected socket's error, held by libtfo rather than the
            // socket, is POLLERR: readable and writable to select, even
            // where the socket itself is not writable (TCP_NOTSENT_LOWAT).
            total += slots.report(i, libc::POLLERR);
        }
    }
    (Ok(total), retried_any)
}

/// Entries beyond this many are tracked on the heap (rare: huge wait sets
/// that also hold a deferred socket).
const STACK_BITS: usize = 1024;

/// A bit per slot, on the stack for the usual sizes.
pub struct Bits {
    stack: [u64; STACK_BITS / 64],
    heap: Vec<u64>,
}

impl Bits {
    pub fn new(len: usize) -> Self {
        let mut bits = Bits { stack: [0; STACK_BITS / 64], heap: Vec::new() };
        if len > STACK_BITS {
            bits.heap.resize(len.div_ceil(64), 0);
        }
        bits
    }

    pub fn words(&mut self) -> &mut [u64] {
        if self.heap.is_empty() {
            &mut self.stack
        } else {
            &mut self.heap
        }
    }

    fn word(&self, i: usize) -> u64 {
        if self.heap.is_empty() {
            self.stack[i / 64]
        } else {
            self.heap[i / 64]
        }
    }

    pub fn set(&mut self, i: usize) {
        self.words()[i / 64] |= 1 << (i % 64);
    }

    pub fn clear(&mut self, i: usize) {
        self.words()[i / 64] &= !(1 << (i % 64));
    }

    pub fn get(&self, i: usize) -> bool {
        self.word(i) & (1 << (i % 64)) != 0
    }
}

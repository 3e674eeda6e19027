//! epoll (spec §9). The kernel's deferred socket reports EPOLLOUT only; the
//! unconnected socket under libtfo's would add EPOLLHUP, which epoll always
//! reports and no event mask can hide. So while a socket's SYN has not
//! left, its registrations are *held*: recorded here and removed from the
//! kernel's epoll instance, and epoll_wait reports EPOLLOUT for them itself
//! (level-triggered every time, edge-triggered once per registration).
//! When the SYN leaves (or, after a disconnect, once the pending error has
//! been read), each held registration is added back with the program's own
//! events and data, and from then on the kernel reports everything.
//!
//! Only registrations of sockets libtfo tracks are recorded, and epoll
//! instances holding one are tracked too, so closing them is seen. Each
//! record remembers the fd-table entries of its socket and instance: a
//! number closed behind our back and reused no longer matches, and its
//! record is dropped, never reported or re-added. When no registration is
//! held anywhere, epoll_wait costs one load on top of the real call.

use super::still_unsent;
use crate::deferred::Socket;
use crate::errno::{self, Saved};
use crate::lock::OwnedLock;
use crate::{fdtable, real};
use libc::{c_int, epoll_event, sigset_t, timespec, EPOLLET, EPOLLONESHOT, EPOLLOUT, EPOLLWRNORM};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Registration {
    epfd: c_int,
    fd: c_int,
    /// The fd-table entries of `fd` and `epfd` when registered.
    socket: usize,
    instance: usize,
    event: epoll_event,
    /// Removed from the kernel's instance while the SYN has not left.
    held: bool,
    /// Edge-triggered or one-shot: EPOLLOUT already reported since held.
    reported: bool,
}

// SAFETY: plain data (epoll_event holds a u64 the kernel never dereferences).
unsafe impl Send for Registration {}

static REGISTRY: OwnedLock<Vec<Registration>> = OwnedLock::new(Vec::new());
/// Registrations currently held; 0 keeps epoll_wait on its fast path.
static HELD: AtomicUsize = AtomicUsize::new(0);
/// Registrations recorded at all; 0 lets connect/close skip the registry.
static RECORDED: AtomicUsize = AtomicUsize::new(0);
/// With maxevents 1, held registrations and the kernel take turns.
static KERNEL_TURN: AtomicBool = AtomicBool::new(false);

const REPORTED_MASK: u32 = (EPOLLOUT | EPOLLWRNORM) as u32;

export_fd! {
    fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut epoll_event) -> c_int,
    if let Some(socket) = fdtable::lookup(fd) => {
        control(epfd, op, fd, event, socket)
    }
}

export_fd! {
    fn epoll_wait(epfd: c_int, events: *mut epoll_event, max: c_int, timeout: c_int) -> c_int,
    if let Some(_held: ()) = held_somewhere() => {
        wait(epfd, events, max, |events, max, now| real::epoll_wait(epfd, events, max, if now { 0 } else { timeout }))
    }

    fn epoll_pwait(epfd: c_int, events: *mut epoll_event, max: c_int, timeout: c_int, mask: *const sigset_t) -> c_int,
    if let Some(_held: ()) = held_somewhere() => {
        wait(epfd, events, max, |events, max, now| real::epoll_pwait(epfd, events, max, if now { 0 } else { timeout }, mask))
    }

    fn epoll_pwait2(epfd: c_int, events: *mut epoll_event, max: c_int, timeout: *const timespec, mask: *const sigset_t) -> c_int,
    if let Some(_held: ()) = held_somewhere() => {
        const NOW: timespec = timespec { tv_sec: 0, tv_nsec: 0 };
        wait(epfd, events, max, |events, max, now| real::epoll_pwait2(epfd, events, max, if now { &NOW } else { timeout }, mask))
    }
}

/// `Some` when some registration is held somewhere.
#[inline(always)]
fn held_somewhere() -> Option<()> {
    (HELD.load(Ordering::Relaxed) != 0).then_some(())
}

/// The identity of `fd`'s fd-table entry (0 when untracked).
fn entry_of(fd: c_int) -> usize {
    fdtable::lookup(fd).map_or(0, |s| s as *const Socket as usize)
}

impl Registration {
    /// Both numbers still name what they named at registration.
    fn current(&self) -> bool {
        self.socket != 0 && entry_of(self.fd) == self.socket && entry_of(self.epfd) == self.instance
    }

    fn is(&self, fd: c_int) -> bool {
        self.fd == fd && self.current()
    }

    /// The kernel must not see this registration while the SYN has not left.
    fn hold(&mut self) {
        if !self.held {
            // SAFETY: DEL takes no event.
            unsafe { real::epoll_ctl(self.epfd, libc::EPOLL_CTL_DEL, self.fd, std::ptr::null_mut()) };
            self.held = true;
            self.reported = false;
            HELD.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Back to the kernel, with the program's events and data.
    fn release(&mut self) {
        if self.held {
            // SAFETY: the event is a valid epoll_event owned by the record.
            unsafe { real::epoll_ctl(self.epfd, libc::EPOLL_CTL_ADD, self.fd, &mut self.event) };
            self.held = false;
            HELD.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A one-shot registration that already reported its event.
    fn disarmed(&self) -> bool {
        self.reported && self.event.events & EPOLLONESHOT as u32 != 0
    }
}

/// Removes records that `keep` rejects, keeping the counters right.
fn retain(registry: &mut Vec<Registration>, keep: impl Fn(&Registration) -> bool) {
    registry.retain(|r| {
        if keep(r) {
            return true;
        }
        RECORDED.fetch_sub(1, Ordering::Relaxed);
        if r.held {
            HELD.fetch_sub(1, Ordering::Relaxed);
        }
        false
    });
}

unsafe fn control(epfd: c_int, op: c_int, fd: c_int, event: *mut epoll_event, socket: &Socket) -> c_int {
    let saved = Saved::take();
    // Re-entered from a signal handler: leave the bookkeeping alone.
    let Some(mut registry) = REGISTRY.lock() else { return real::epoll_ctl(epfd, op, fd, event) };
    retain(&mut registry, Registration::current);
    let position = registry.iter().position(|r| r.epfd == epfd && r.fd == fd);
    match (op, position.filter(|&i| registry[i].held)) {
        // Held registrations exist only here; answer as the kernel would.
        (libc::EPOLL_CTL_ADD, Some(_)) => errno::fail(libc::EEXIST),
        (libc::EPOLL_CTL_MOD, Some(_)) if event.is_null() => errno::fail(libc::EFAULT),
        (libc::EPOLL_CTL_MOD, Some(i)) => {
            let reg = &mut registry[i];
            reg.event = *event;
            reg.reported = false;
            if matches!(synthesized(reg), Held::Release) {
                reg.release();
            }
            saved.restore(0)
        }
        (libc::EPOLL_CTL_DEL, Some(_)) => {
            retain(&mut registry, |r| !(r.epfd == epfd && r.fd == fd));
            saved.restore(0)
        }
        _ => {
            // The kernel validates and applies it; the record follows.
            let r = real::epoll_ctl(epfd, op, fd, event);
            if r != 0 {
                return r;
            }
            match (op, position) {
                (libc::EPOLL_CTL_ADD, _) => {
                    // Closing the epoll instance must reach us to drop its records.
                    fdtable::mark(epfd);
                    let mut reg = Registration {
                        epfd,
                        fd,
                        socket: socket as *const Socket as usize,
                        instance: entry_of(epfd),
                        event: *event,
                        held: false,
                        reported: false,
                    };
                    if socket.phase().before_syn() && still_unsent(fd, socket) {
                        reg.hold();
                    }
                    registry.push(reg);
                    RECORDED.fetch_add(1, Ordering::Relaxed);
                }
                (libc::EPOLL_CTL_MOD, Some(i)) => registry[i].event = *event,
                (libc::EPOLL_CTL_DEL, Some(_)) => retain(&mut registry, |r| !(r.epfd == epfd && r.fd == fd)),
                _ => {}
            }
            saved.restore(0)
        }
    }
}

/// Runs `f` on the registry when it may be needed and this thread can take
/// it; errno is kept.
fn with_registry(needed: &AtomicUsize, f: impl FnOnce(&mut Vec<Registration>)) {
    if needed.load(Ordering::Relaxed) == 0 {
        return;
    }
    let saved = Saved::take();
    if let Some(mut registry) = REGISTRY.lock() {
        f(&mut registry);
    }
    saved.restore(())
}

/// `fd` was just deferred: hold its registrations.
pub fn hold(fd: c_int) {
    with_registry(&RECORDED, |registry| registry.iter_mut().filter(|r| r.is(fd)).for_each(Registration::hold));
}

/// `fd`'s SYN left: give its registrations back to the kernel (a one-shot
/// registration that fired stays quiet until EPOLL_CTL_MOD).
pub fn release(fd: c_int) {
    with_registry(&HELD, |registry| {
        registry.iter_mut().filter(|r| r.is(fd) && !r.disarmed()).for_each(Registration::release)
    });
}

/// `fd` was disconnected before its SYN left: the kernel would wake its
/// watchers with the new state, so edge-triggered ones report again.
pub fn rearm(fd: c_int) {
    with_registry(&HELD, |registry| {
        registry.iter_mut().filter(|r| r.is(fd) && r.held && !r.disarmed()).for_each(|r| r.reported = false)
    });
}

/// `fd` (a socket or an epoll instance) is being closed or replaced: drop
/// its records. Records this cannot reach (a signal handler interrupted the
/// lock's owner) no longer match their entries and are dropped later.
pub fn forget(fd: c_int) {
    with_registry(&RECORDED, |registry| retain(registry, |r| r.fd != fd && r.epfd != fd));
}

/// What becomes of a held registration at this epoll_wait.
enum Held {
    /// Still hidden from the kernel: report this mask (may be 0).
    Report(u32),
    /// Nothing left to hide (the SYN left, perhaps from another process, or
    /// the pending error was read): give it back to the kernel.
    Release,
    /// Its fd no longer names the socket it registered: drop the record.
    Drop,
}

/// Before the SYN: EPOLLOUT only (and EPOLLERR while a disconnect's error
/// is unread). After a disconnect, until the error is read: what the kernel
/// reports for CLOSE with sk_err set.
fn synthesized(reg: &Registration) -> Held {
    if !reg.current() {
        return Held::Drop;
    }
    let Some(socket) = fdtable::lookup(reg.fd) else { return Held::Drop };
    let unsent = still_unsent(reg.fd, socket);
    if !reg.current() {
        return Held::Drop; // still_unsent found the number reused and forgot it
    }
    let wanted = reg.event.events & REPORTED_MASK;
    let error = if socket.pending_error() != 0 { libc::EPOLLERR as u32 } else { 0 };
    if unsent {
        Held::Report(wanted | error)
    } else if error != 0 {
        Held::Report(wanted | error | libc::EPOLLHUP as u32)
    } else if reg.disarmed() {
        Held::Report(0)
    } else {
        Held::Release
    }
}

/// fork() handlers: the child must not inherit a lock held by a thread that
/// does not exist there.
static LOCKED_FOR_FORK: AtomicBool = AtomicBool::new(false);

pub fn before_fork() {
    LOCKED_FOR_FORK.store(REGISTRY.hold_for_fork(), Ordering::Relaxed);
}

pub fn after_fork_in_parent() {
    if LOCKED_FOR_FORK.load(Ordering::Relaxed) {
        REGISTRY.release_after_fork();
    }
}

pub fn after_fork_in_child() {
    crate::lock::forget_tid_after_fork();
    REGISTRY.reset_after_fork();
}

/// epoll_wait with the held registrations of `epfd` answered here.
unsafe fn wait(
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    real_wait: impl Fn(*mut epoll_event, c_int, bool) -> c_int,
) -> c_int {
    if events.is_null() || max <= 0 {
        return real_wait(events, max, false);
    }
    let saved = Saved::take();
    // Leave the kernel at least one slot, so that held level-triggered
    // registrations cannot starve the program's other fds; with a single
    // slot, take turns, the kernel's turn without waiting.
    if max == 1 && KERNEL_TURN.fetch_xor(true, Ordering::Relaxed) {
        let r = real_wait(events, 1, true);
        if r != 0 {
            return r;
        }
        saved.restore(());
    }
    let limit = if max > 1 { max as usize - 1 } else { 1 };
    let mut ready = 0usize;
    if let Some(mut registry) = REGISTRY.lock() {
        let mut reported_now = Vec::new();
        for (i, reg) in registry.iter_mut().enumerate() {
            if reg.epfd != epfd || !reg.held {
                continue;
            }
            let mask = match synthesized(reg) {
                Held::Report(mask) => mask,
                Held::Release => {
                    reg.release();
                    continue;
                }
                Held::Drop => {
                    reg.socket = 0; // removed below
                    continue;
                }
            };
            let once = reg.event.events & (EPOLLET | EPOLLONESHOT) as u32 != 0;
            if mask == 0 || (once && reg.reported) || ready == limit {
                continue;
            }
            reg.reported = true;
            *events.add(ready) = epoll_event { events: mask, u64: reg.event.u64 };
            ready += 1;
            reported_now.push(i);
        }
        // Round robin: those reported by this call go to the back of the line.
        if ready == limit {
            for (moved, i) in reported_now.into_iter().enumerate() {
                let reg = registry.remove(i - moved);
                registry.push(reg);
            }
        }
        retain(&mut registry, |r| r.socket != 0);
    }
    saved.restore(());
    let room = max - ready as c_int;
    if room == 0 {
        return ready as c_int;
    }
    let r = real_wait(events.add(ready), room, ready > 0);
    match r {
        // Only the held registrations are known ready: report just them.
        -1 if ready > 0 => saved.restore(ready as c_int),
        -1 => r,
        _ => r + ready as c_int,
    }
}

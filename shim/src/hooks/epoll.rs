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
//! instances holding one are tracked too, so closing them is seen. When no
//! registration is held anywhere, epoll_wait costs one load on top of the
//! real call.

use super::still_unsent;
use crate::deferred::Socket;
use crate::errno::{self, Saved};
use crate::{fdtable, real};
use libc::{c_int, epoll_event, sigset_t, timespec, EPOLLET, EPOLLONESHOT, EPOLLOUT, EPOLLWRNORM};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Registration {
    epfd: c_int,
    fd: c_int,
    event: epoll_event,
    /// Removed from the kernel's instance while the SYN has not left.
    held: bool,
    /// Edge-triggered or one-shot: EPOLLOUT already reported since held.
    reported: bool,
}

// SAFETY: plain data (epoll_event holds a u64 the kernel never dereferences).
unsafe impl Send for Registration {}

static REGISTRY: Mutex<Vec<Registration>> = Mutex::new(Vec::new());
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

unsafe fn control(epfd: c_int, op: c_int, fd: c_int, event: *mut epoll_event, socket: &Socket) -> c_int {
    let saved = Saved::take();
    let mut registry = REGISTRY.lock();
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
                real::epoll_ctl(reg.epfd, libc::EPOLL_CTL_ADD, reg.fd, &mut reg.event);
                reg.held = false;
                HELD.fetch_sub(1, Ordering::Relaxed);
            }
            saved.restore(0)
        }
        (libc::EPOLL_CTL_DEL, Some(i)) => {
            registry.remove(i);
            HELD.fetch_sub(1, Ordering::Relaxed);
            RECORDED.fetch_sub(1, Ordering::Relaxed);
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
                    registry.push(Registration { epfd, fd, event: *event, held: false, reported: false });
                    RECORDED.fetch_add(1, Ordering::Relaxed);
                    if socket.phase().before_syn() && still_unsent(fd, socket) {
                        let last = registry.len() - 1;
                        hold_one(&mut registry[last]);
                    }
                }
                (libc::EPOLL_CTL_MOD, Some(i)) => registry[i].event = *event,
                (libc::EPOLL_CTL_DEL, Some(i)) => {
                    registry.remove(i);
                    RECORDED.fetch_sub(1, Ordering::Relaxed);
                }
                _ => {}
            }
            saved.restore(0)
        }
    }
}

/// The kernel must not see this registration while the SYN has not left.
fn hold_one(reg: &mut Registration) {
    if !reg.held {
        // SAFETY: DEL takes no event.
        unsafe { real::epoll_ctl(reg.epfd, libc::EPOLL_CTL_DEL, reg.fd, std::ptr::null_mut()) };
        reg.held = true;
        reg.reported = false;
        HELD.fetch_add(1, Ordering::Relaxed);
    }
}

/// `fd` was just deferred: hold its registrations.
pub fn hold(fd: c_int) {
    if RECORDED.load(Ordering::Relaxed) == 0 {
        return;
    }
    let saved = Saved::take();
    REGISTRY.lock().iter_mut().filter(|r| r.fd == fd).for_each(hold_one);
    saved.restore(())
}

/// `fd`'s SYN left: give its registrations back to the kernel, with the
/// program's events and data.
pub fn release(fd: c_int) {
    if HELD.load(Ordering::Relaxed) == 0 {
        return;
    }
    let saved = Saved::take();
    for reg in REGISTRY.lock().iter_mut().filter(|r| r.fd == fd && r.held && !disarmed(r)) {
        // SAFETY: the event is a valid epoll_event owned by the record.
        unsafe { real::epoll_ctl(reg.epfd, libc::EPOLL_CTL_ADD, reg.fd, &mut reg.event) };
        reg.held = false;
        HELD.fetch_sub(1, Ordering::Relaxed);
    }
    saved.restore(())
}

/// `fd` (a socket or an epoll instance) is being closed: drop its records.
pub fn forget(fd: c_int) {
    if RECORDED.load(Ordering::Relaxed) == 0 {
        return;
    }
    // close() may run in a signal handler that interrupted a thread holding
    // the lock: then leave the records; epoll_wait drops stale ones.
    let Some(mut registry) = REGISTRY.try_lock() else { return };
    registry.retain(|r| {
        let gone = r.fd == fd || r.epfd == fd;
        if gone {
            RECORDED.fetch_sub(1, Ordering::Relaxed);
            if r.held {
                HELD.fetch_sub(1, Ordering::Relaxed);
            }
        }
        !gone
    });
}

/// What becomes of a held registration at this epoll_wait.
enum Held {
    /// Still hidden from the kernel: report this mask (may be 0).
    Report(u32),
    /// Nothing left to hide (the SYN left, perhaps from another process, or
    /// the pending error was read): give it back to the kernel.
    Release,
    /// The fd is no longer a socket libtfo tracks (closed behind our back):
    /// the record is stale and is dropped.
    Drop,
}

/// Before the SYN: EPOLLOUT only (and EPOLLERR while a disconnect's error
/// is unread). After a disconnect, until the error is read: what the kernel
/// reports for CLOSE with sk_err set.
fn synthesized(reg: &Registration) -> Held {
    let Some(socket) = fdtable::lookup(reg.fd) else { return Held::Drop };
    let wanted = reg.event.events & REPORTED_MASK;
    let error = if socket.pending_error() != 0 { libc::EPOLLERR as u32 } else { 0 };
    if still_unsent(reg.fd, socket) {
        Held::Report(wanted | error)
    } else if error != 0 {
        Held::Report(wanted | (libc::EPOLLERR | libc::EPOLLHUP) as u32)
    } else if disarmed(reg) {
        // A one-shot registration that fired stays quiet until EPOLL_CTL_MOD.
        Held::Report(0)
    } else {
        Held::Release
    }
}

/// A one-shot registration that already reported its event.
fn disarmed(reg: &Registration) -> bool {
    reg.reported && reg.event.events & EPOLLONESHOT as u32 != 0
}

/// `fd` was disconnected before its SYN left: the kernel would wake its
/// watchers with the new state, so edge-triggered ones report again.
pub fn rearm(fd: c_int) {
    if HELD.load(Ordering::Relaxed) == 0 {
        return;
    }
    REGISTRY.lock().iter_mut().filter(|r| r.fd == fd && r.held).for_each(|r| r.reported = false);
}

/// fork() handlers: the registry must not be copied while another thread
/// holds its lock, or the child could never take it.
pub fn before_fork() {
    std::mem::forget(REGISTRY.lock());
}

pub fn after_fork() {
    // SAFETY: before_fork took the lock in this thread and leaked the guard.
    unsafe { REGISTRY.force_unlock() }
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
    let mut ready = 0usize;
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
    {
        let mut registry = REGISTRY.lock();
        for reg in registry.iter_mut().filter(|r| r.epfd == epfd && r.held) {
            if ready == limit {
                break;
            }
            let mask = match synthesized(reg) {
                Held::Report(mask) => mask,
                Held::Release => {
                    real::epoll_ctl(reg.epfd, libc::EPOLL_CTL_ADD, reg.fd, &mut reg.event);
                    reg.held = false;
                    HELD.fetch_sub(1, Ordering::Relaxed);
                    continue;
                }
                Held::Drop => {
                    reg.held = false;
                    reg.fd = -1; // removed below
                    HELD.fetch_sub(1, Ordering::Relaxed);
                    continue;
                }
            };
            let once = reg.event.events & (EPOLLET | EPOLLONESHOT) as u32 != 0;
            if mask == 0 || (once && reg.reported) {
                continue;
            }
            reg.reported = true;
            *events.add(ready) = epoll_event { events: mask, u64: reg.event.u64 };
            ready += 1;
        }
        let before = registry.len();
        registry.retain(|r| r.fd >= 0);
        RECORDED.fetch_sub(before - registry.len(), Ordering::Relaxed);
        // Round robin: those just reported go to the back of the line.
        let mut reported: Vec<Registration> = Vec::new();
        if ready > 0 && ready == limit {
            let mut i = 0;
            while i < registry.len() {
                if registry[i].epfd == epfd && registry[i].held && registry[i].reported {
                    reported.push(registry.remove(i));
                } else {
                    i += 1;
                }
            }
            registry.extend(reported);
        }
    }
    saved.restore(());
    let room = max - ready as c_int;
    if room == 0 {
        return ready as c_int;
    }
    let saved = Saved::take();
    let r = real_wait(events.add(ready), room, ready > 0);
    match r {
        // Only the held registrations are known ready: report just them.
        -1 if ready > 0 => saved.restore(ready as c_int),
        -1 => r,
        _ => r + ready as c_int,
    }
}

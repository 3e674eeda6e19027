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
use std::sync::atomic::{AtomicUsize, Ordering};

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
            registry[i].event = *event;
            registry[i].reported = false;
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
    for reg in REGISTRY.lock().iter_mut().filter(|r| r.fd == fd && r.held) {
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
    REGISTRY.lock().retain(|r| {
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

/// What a held registration reports now, or `None` when it need not be held
/// any longer. Before the SYN: EPOLLOUT only. After a disconnect, until the
/// error is read: what the kernel reports for CLOSE with sk_err set.
fn synthesized(reg: &Registration) -> Option<u32> {
    let socket = fdtable::lookup(reg.fd)?;
    let wanted = reg.event.events & REPORTED_MASK;
    if still_unsent(reg.fd, socket) {
        Some(wanted)
    } else if socket.pending_error() != 0 {
        Some(wanted | (libc::EPOLLERR | libc::EPOLLHUP) as u32)
    } else {
        None
    }
}

/// `fd` was disconnected before its SYN left: the kernel would wake its
/// watchers with the new state, so edge-triggered ones report again.
pub fn rearm(fd: c_int) {
    if HELD.load(Ordering::Relaxed) == 0 {
        return;
    }
    REGISTRY.lock().iter_mut().filter(|r| r.fd == fd && r.held).for_each(|r| r.reported = false);
}

/// epoll_wait with the held registrations of `epfd` answered here.
unsafe fn wait(
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    real_wait: impl FnOnce(*mut epoll_event, c_int, bool) -> c_int,
) -> c_int {
    if events.is_null() || max <= 0 {
        return real_wait(events, max, false);
    }
    let saved = Saved::take();
    let mut ready = 0usize;
    {
        let mut registry = REGISTRY.lock();
        for reg in registry.iter_mut().filter(|r| r.epfd == epfd && r.held) {
            if ready == max as usize {
                break;
            }
            let Some(mask) = synthesized(reg) else {
                // Nothing left to hide (the SYN left, perhaps from another
                // process, or the pending error was read): give it back.
                real::epoll_ctl(reg.epfd, libc::EPOLL_CTL_ADD, reg.fd, &mut reg.event);
                reg.held = false;
                HELD.fetch_sub(1, Ordering::Relaxed);
                continue;
            };
            let once = reg.event.events & (EPOLLET | EPOLLONESHOT) as u32 != 0;
            if mask == 0 || (once && reg.reported) {
                continue;
            }
            reg.reported = true;
            *events.add(ready) = epoll_event { events: mask, u64: reg.event.u64 };
            ready += 1;
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

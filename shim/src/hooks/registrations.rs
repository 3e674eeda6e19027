//! The epoll registrations of sockets whose state changes: held from the
//! kernel while an emulated socket's SYN has not left (its unconnected
//! socket would report EPOLLHUP), given back when it leaves. Used by the
//! hooks that change a socket's state (`syn.rs`, `connect.rs`) and by
//! `epoll.rs`, which records the registrations in each instance's list.

use crate::fdtable::{self, Entry};
use crate::real;
use crate::watch::Watch;
use libc::c_int;
use std::sync::atomic::Ordering;

/// Still the registration of the file the fd number names now.
pub fn current(watch: &Watch) -> bool {
    fdtable::generation(watch.fd) == watch.generation
}

/// The socket's list of instances holding its registrations (emulated).
pub fn add_watcher(entry: &Entry, epfd: c_int) {
    let want = epfd as u32 + 1;
    let slots = &entry.conn.watchers;
    if slots.iter().any(|w| w.load(Ordering::Relaxed) == want) {
        return;
    }
    for slot in slots {
        if slot.compare_exchange(0, want, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            return;
        }
    }
}

pub fn remove_watcher(entry: &Entry, epfd: c_int) {
    for slot in &entry.conn.watchers {
        let _ = slot.compare_exchange(epfd as u32 + 1, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// The kernel must not see this registration while the SYN has not left.
pub fn hold_watch(epfd: c_int, watch: &mut Watch) {
    if !watch.held {
        // A one-shot registration that fired stays disabled while held, as
        // the kernel keeps it until EPOLL_CTL_MOD.
        let fired = watch.event.events & libc::EPOLLONESHOT as u32 != 0 && crate::kernel::oneshot_fired(epfd, watch.fd) == Some(true);
        // SAFETY: DEL takes no event.
        unsafe { real::epoll_ctl(epfd, libc::EPOLL_CTL_DEL, watch.fd, std::ptr::null_mut()) };
        watch.held = true;
        watch.reported = fired;
    }
}

/// Back to the kernel, with the program's events and data. True when the
/// kernel had it already (EEXIST): a process sharing the instance since a
/// fork gave it back first, with the events it knew.
pub fn give_back(epfd: c_int, watch: &mut Watch) -> bool {
    if !watch.held {
        return false;
    }
    watch.held = false;
    // SAFETY: the event is a valid epoll_event owned by the record.
    let added = unsafe { real::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, watch.fd, &mut watch.event) };
    added != 0 && crate::errno::get() == libc::EEXIST
}

/// Back to the kernel as the program's EPOLL_CTL_MOD left it: where another
/// process gave it back already, the program's MOD is the last word.
pub fn give_back_modified(epfd: c_int, watch: &mut Watch) {
    if give_back(epfd, watch) {
        // SAFETY: the event is a valid epoll_event owned by the record.
        unsafe { real::epoll_ctl(epfd, libc::EPOLL_CTL_MOD, watch.fd, &mut watch.event) };
    }
}

/// Runs `f` on the current registrations of the socket in every instance
/// that holds one (the socket's watcher list), whichever of its numbers
/// (dups) each was made through: the SYN leaving through a dup changes
/// them all at once, as the kernel's socket wakes every one of its
/// registrations together. Registrations made before the socket had an
/// entry are found once by looking through the instances.
fn each_watch(fd: c_int, entry: &Entry, f: impl Fn(c_int, &mut Watch)) {
    adopt(fd, entry);
    for slot in &entry.conn.watchers {
        let Some(epfd) = slot.load(Ordering::Acquire).checked_sub(1).map(|e| e as c_int) else { continue };
        let Some(instance) = fdtable::lookup(epfd) else { continue };
        instance.watches.with(|list| {
            list.iter_mut().filter(|w| names(w, entry)).for_each(|w| f(epfd, w));
        });
    }
}

/// A current registration of the socket behind `entry`.
fn names(watch: &Watch, entry: &Entry) -> bool {
    current(watch) && fdtable::lookup(watch.fd).is_some_and(|e| std::ptr::eq(e, entry))
}


/// `fd`'s SYN left: give its registrations back to the kernel (a one-shot
/// registration that fired stays quiet until EPOLL_CTL_MOD).
pub fn release(fd: c_int, entry: &Entry) {
    each_watch(fd, entry, |epfd, w| {
        if !w.disarmed() {
            give_back(epfd, w);
        }
    });
}

/// `fd` was disconnected before its SYN left: the kernel would wake its
/// watchers with the new state, so edge-triggered ones report again.
pub fn rearm(fd: c_int, entry: &Entry) {
    each_watch(fd, entry, |_, w| {
        if w.held && !w.disarmed() {
            w.reported = false;
        }
    });
}

/// `fd` is being closed while a dup keeps its socket open: the kernel
/// keeps an epoll registration of the file, so one libtfo holds moves to
/// another number naming the same socket (the events and data stay).
pub fn before_close(fd: c_int, entry: &'static Entry) {
    if !entry.shared() || !entry.conn.has_watchers() {
        return;
    }
    let Some(other) = (0..=fdtable::highest()).find(|&n| n != fd && fdtable::lookup(n).is_some_and(|e| std::ptr::eq(e, entry))) else {
        return;
    };
    each_watch(fd, entry, |_, w| {
        if w.held && w.fd == fd {
            w.fd = other;
            w.generation = fdtable::generation(other);
            w.moved = true;
        }
    });
}

/// `fd` has an entry now: the registrations made through it before (while
/// it had none) become the entry's, once.
pub fn adopt(fd: c_int, entry: &Entry) {
    if fdtable::was_watched(fd) {
        fdtable::clear_watched(fd);
        adopt_early_watches(fd, entry);
    }
}

/// Adds to `entry`'s watcher list every instance holding a registration of
/// `fd` (made while `fd` had no entry).
fn adopt_early_watches(fd: c_int, entry: &Entry) {
    for epfd in 0..=fdtable::highest() {
        let Some(instance) = fdtable::lookup(epfd).filter(|i| !i.watches.is_empty()) else { continue };
        if instance.watches.with(|list| list.iter().any(|w| w.fd == fd && current(w))) == Some(true) {
            add_watcher(entry, epfd);
        }
    }
}

/// `fd` was just deferred (explicit): hold its registrations.
pub fn hold(fd: c_int, entry: &Entry) {
    each_watch(fd, entry, hold_watch);
}


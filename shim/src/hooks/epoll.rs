//! epoll (spec §9), with the registrations libtfo must know about kept per
//! epoll instance (`watch.rs`): no process-wide lock, no global list.
//!
//! * Emulated sockets whose SYN has not left: the unconnected socket under
//!   them would add EPOLLHUP, which epoll always reports and no mask can
//!   hide. So their registrations are *held*: removed from the kernel's
//!   instance, and epoll_wait reports EPOLLOUT for them itself
//!   (level-triggered every time, edge-triggered once per registration).
//!   When the SYN leaves (or, after a disconnect, once the pending error has
//!   been read), each held registration is added back with the program's own
//!   events and data, and from then on the kernel reports everything.
//! * Auto mode: an epoll_wait that would wait, on an instance where a
//!   deferred socket is registered for input, starts that connection first
//!   (as poll.rs does); a socket whose SYN carried data has its outcome
//!   looked at after the wait, and events of a reset retried meanwhile are
//!   dropped (the program never sees the reset).
//!
//! Recorded: registrations of sockets libtfo tracks, and of TCP sockets
//! registered before they connected (they may defer later). An instance
//! with nothing recorded costs epoll_wait one load on top of the real call.

use super::still_unsent;
use super::readiness;
use crate::errno::{check, Errno, SysResult};
use crate::export::{Answer, Done, Real};
use crate::fdtable::{self, Entry};
use crate::real;
use crate::state::{Engine, Phase};
use crate::watch::Watch;
use super::registrations::{add_watcher, current, give_back, give_back_modified, hold_watch, remove_watcher};
use libc::{c_int, epoll_event, sigset_t, timespec, EPOLLOUT, EPOLLWRNORM};

const REPORTED_MASK: u32 = (EPOLLOUT | EPOLLWRNORM) as u32;

/// Sockets acted on after one scan (more wait for the next epoll_wait).
const BATCH: usize = 64;

/// Worth recording: a socket that may defer some day (a candidate for auto
/// mode, one whose option was set, even to 0) or any tracked one: its
/// deferral must hold the registrations made before (an epoll instance
/// nested in another is recorded too, harmlessly: it never defers).
#[inline(always)]
fn recordable(fd: c_int) -> Option<()> {
    match fdtable::lookup(fd) {
        Some(_) => Some(()),
        None => fdtable::may_defer(fd).then_some(()),
    }
}

export_fd! {
    fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut epoll_event) -> c_int,
    if let Some(_recordable: ()) = recordable(fd) => {
        // SAFETY: epoll_ctl's contract for `event`.
        unsafe { control(epfd, op, fd, event) }
    }
}

/// The instance behind `epfd`, when it has recorded registrations.
#[inline(always)]
fn watched_instance(epfd: c_int) -> Option<&'static Entry> {
    fdtable::lookup(epfd).filter(|e| !e.watches.is_empty())
}

const NOW: timespec = timespec { tv_sec: 0, tv_nsec: 0 };

export_tracked! {
    fn epoll_wait(epfd: c_int, events: *mut epoll_event, max: c_int, timeout: c_int) -> c_int,
    if let Some(instance) = watched_instance(epfd) => {
        // SAFETY: epoll_wait's contract: `events` has room for `max`.
        unsafe { wait(instance, epfd, events, max, timeout != 0, |events, max, now| real::epoll_wait(epfd, events, max, if now { 0 } else { timeout })) }
    }

    fn epoll_pwait(epfd: c_int, events: *mut epoll_event, max: c_int, timeout: c_int, mask: *const sigset_t) -> c_int,
    if let Some(instance) = watched_instance(epfd) => {
        // SAFETY: as for epoll_wait.
        unsafe { wait(instance, epfd, events, max, timeout != 0, |events, max, now| real::epoll_pwait(epfd, events, max, if now { 0 } else { timeout }, mask)) }
    }

    fn epoll_pwait2(epfd: c_int, events: *mut epoll_event, max: c_int, timeout: *const timespec, mask: *const sigset_t) -> c_int,
    if let Some(instance) = watched_instance(epfd) => {
        // SAFETY: as for epoll_wait.
        unsafe { wait(instance, epfd, events, max, super::waits(timeout), |events, max, now| real::epoll_pwait2(epfd, events, max, if now { &NOW } else { timeout }, mask)) }
    }
}

/// # Safety
/// epoll_ctl's contract for `event`.
unsafe fn control(epfd: c_int, op: c_int, fd: c_int, event: *mut epoll_event) -> Answer<c_int> {
    let Some(instance) = super::mark(epfd) else { return Real };
    let entry = fdtable::lookup(fd);
    if entry.is_none() {
        fdtable::note_watched(fd);
    }
    let generation = fdtable::generation(fd);
    // Re-entered from a signal handler: leave the bookkeeping alone.
    instance
        .watches
        .with(|list| {
            list.retain(current);
            // A registration moved off its number when that was closed is
            // named by it again once it names the same file again.
            for w in list.iter_mut().filter(|w| w.moved && w.key == fd) {
                if entry.is_some_and(|e| fdtable::lookup(w.fd).is_some_and(|o| std::ptr::eq(e, o))) {
                    (w.fd, w.generation, w.moved) = (fd, generation, false);
                }
            }
            let position = list.iter().position(|w| w.fd == fd && !w.moved);
            match (op, position.filter(|&i| list[i].held)) {
                // Held registrations exist only here; answer as the kernel would.
                (libc::EPOLL_CTL_ADD, Some(_)) => Done(Err(Errno(libc::EEXIST))),
                (libc::EPOLL_CTL_MOD, Some(_)) if event.is_null() => Done(Err(Errno(libc::EFAULT))),
                (libc::EPOLL_CTL_MOD, Some(i)) => {
                    // SAFETY: checked non-null; epoll_ctl's contract.
                    list[i].event = unsafe { *event };
                    list[i].reported = false;
                    if matches!(synthesized(&list[i]), Held::Release) {
                        give_back_modified(epfd, &mut list[i]);
                    }
                    Done(Ok(0))
                }
                (libc::EPOLL_CTL_DEL, Some(i)) => {
                    // A process sharing the instance since a fork may have
                    // given the registration back to the kernel already.
                    // SAFETY: DEL takes no event.
                    unsafe { real::epoll_ctl(epfd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
                    list.remove(i);
                    if let Some(entry) = entry {
                        remove_watcher(entry, epfd);
                    }
                    Done(Ok(0))
                }
                _ => {
                    // The kernel validates and applies it; the record follows.
                    // SAFETY: the caller's arguments.
                    let mut result = check(unsafe { real::epoll_ctl(epfd, op, fd, event) });
                    // A process sharing the socket and the instance since a
                    // fork may hold the registration (its deferral took it
                    // from the kernel): it is there all the same.
                    if op == libc::EPOLL_CTL_DEL && result == Err(Errno(libc::ENOENT)) && position.is_some() && entry.is_some_and(|e| e.conn.is_shared()) {
                        result = Ok(0);
                    }
                    if result.is_ok() {
                        // SAFETY: a successful ADD/MOD had a valid event.
                        record(list, epfd, op, fd, generation, position, entry, || unsafe { *event });
                    }
                    Done(result)
                }
            }
        })
        .unwrap_or(Real)
}

/// Keeps the record in step with a registration the kernel accepted.
#[allow(clippy::too_many_arguments)]
fn record(
    list: &mut Vec<Watch>,
    epfd: c_int,
    op: c_int,
    fd: c_int,
    generation: u32,
    position: Option<usize>,
    entry: Option<&Entry>,
    event: impl Fn() -> epoll_event,
) {
    match (op, position) {
        (libc::EPOLL_CTL_ADD, _) => {
            // The kernel took the ADD, so any record left for this number
            // is of a file closed behind libtfo's back.
            list.retain(|w| w.fd != fd);
            let mut watch = Watch { fd, generation, event: event(), held: false, reported: false, epoch: entry.map_or(0, |e| e.conn.epoch()), moved: false, key: fd };
            if let Some(entry) = entry {
                add_watcher(entry, epfd);
                // Unsent, or disconnected with its error unread: the kernel's
                // unconnected socket would report neither right.
                let disconnected = entry.conn.phase() == Phase::Armed && entry.conn.pending_error() != 0;
                if entry.conn.engine() == Engine::Emulated && ((entry.conn.is_unsent() && still_unsent(fd, entry)) || disconnected) {
                    hold_watch(epfd, &mut watch);
                }
            }
            list.push(watch);
        }
        (libc::EPOLL_CTL_MOD, Some(i)) => list[i].event = event(),
        (libc::EPOLL_CTL_DEL, Some(i)) => {
            list.remove(i);
            if let Some(entry) = entry {
                remove_watcher(entry, epfd);
            }
        }
        _ => {}
    }
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
fn synthesized(watch: &Watch) -> Held {
    let Some(entry) = fdtable::lookup(watch.fd).filter(|_| current(watch)) else { return Held::Drop };
    let unsent = still_unsent(watch.fd, entry);
    if fdtable::lookup(watch.fd).is_none() {
        return Held::Drop; // still_unsent found the number reused and forgot it
    }
    let mask = super::readiness::deferred_mask(entry) as u16 as u32;
    // EPOLLHUP is reported unasked.
    let wanted = (watch.event.events | libc::EPOLLHUP as u32) & (REPORTED_MASK | mask);
    let error = if entry.conn.pending_error() != 0 { libc::EPOLLERR as u32 } else { 0 };
    if unsent {
        Held::Report(wanted | error)
    } else if error != 0 {
        // Disconnected: the socket underneath went through the same
        // tcp_disconnect() and answers for itself, but for the error libtfo
        // holds (TCP_NOTSENT_LOWAT may leave it unwritable).
        let all = libc::POLLIN | libc::POLLPRI | libc::POLLOUT | libc::POLLRDNORM | libc::POLLRDBAND | libc::POLLWRNORM | libc::POLLWRBAND | libc::POLLRDHUP;
        let now = crate::kernel::poll_now(watch.fd, all) as u16 as u32 | error;
        Held::Report((watch.event.events | libc::EPOLLHUP as u32 | error) & now)
    } else if watch.disarmed() {
        Held::Report(0)
    } else if watch.edge_collected() && crate::kernel::tcp_state(watch.fd) == Some(crate::kernel::TCP_CLOSE) {
        // Its error read, a disconnected socket wakes nobody: an edge the
        // program has collected stays collected. Given back now, a new ADD
        // would report the unconnected socket's EPOLLHUP as a new edge; it
        // goes back once the socket moves (a connect, another wake-up).
        Held::Report(0)
    } else {
        Held::Release
    }
}

/// A socket shared with another process since a fork, in an instance they
/// share: that process may have taken the registration from the kernel (at
/// its deferral) or given it back. When the socket's state moved since this
/// record last looked, the record follows: held while the SYN has not left
/// (an emulated explicit socket), otherwise in the kernel again (ADD; one
/// there already says EEXIST).
fn follow_other_process(epfd: c_int, watch: &mut Watch, entry: &Entry) {
    let conn = &entry.conn;
    let epoch = conn.epoch();
    if !conn.is_shared() || watch.epoch == epoch || conn.is_auto() || conn.engine() != Engine::Emulated {
        return;
    }
    watch.epoch = epoch;
    if conn.is_unsent() {
        hold_watch(epfd, watch);
    } else if !watch.held {
        // SAFETY: the event is a valid epoll_event owned by the record.
        unsafe { real::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, watch.fd, &mut watch.event) };
    }
}

/// Still worth keeping: held, or a socket that may yet defer or is still
/// waiting for its outcome.
fn worth_keeping(watch: &Watch) -> bool {
    if watch.held {
        return true;
    }
    match fdtable::lookup(watch.fd) {
        Some(entry) => entry.conn.option() == 1 || (entry.conn.is_auto() && entry.conn.needs_attention()) || fdtable::is_candidate(watch.fd),
        None => fdtable::is_candidate(watch.fd),
    }
}

/// A small stack list of fds (and their registration data).
struct Batch {
    items: [(c_int, u64); BATCH],
    len: usize,
}

impl Batch {
    fn new() -> Self {
        Batch { items: [(0, 0); BATCH], len: 0 }
    }

    fn push(&mut self, fd: c_int, data: u64) {
        if self.len < BATCH {
            self.items[self.len] = (fd, data);
            self.len += 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = &(c_int, u64)> {
        self.items[..self.len].iter()
    }
}

/// epoll_wait with libtfo's registrations of this instance answered.
///
/// # Safety
/// epoll_wait's contract: `events` has room for `max` entries.
unsafe fn wait(
    instance: &Entry,
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    caller_waits: bool,
    real_wait: impl Fn(*mut epoll_event, c_int, bool) -> c_int,
) -> Answer<c_int> {
    if events.is_null() || max <= 0 || max as usize > i32::MAX as usize / std::mem::size_of::<epoll_event>() {
        return Real;
    }
    // The kernel copies each event out, and fails with EFAULT there.
    if !crate::kernel::readable(events.cast(), max as usize * std::mem::size_of::<epoll_event>()) {
        return Done(Err(crate::errno::Errno(libc::EFAULT)));
    }
    loop {
        // SAFETY: the caller's contract.
        let (result, retried) = unsafe { wait_once(instance, epfd, events, max, caller_waits, &real_wait) };
        match result {
            Ok(0) if retried => continue,
            other => return Done(other),
        }
    }
}

/// # Safety
/// As for `wait`.
unsafe fn wait_once(
    instance: &Entry,
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    caller_waits: bool,
    real_wait: &impl Fn(*mut epoll_event, c_int, bool) -> c_int,
) -> (SysResult<c_int>, bool) {
    // Leave the kernel at least one slot, so that held level-triggered
    // registrations cannot starve the program's other fds.
    let limit = if max > 1 { max as usize - 1 } else { 1 };
    let mut ready = 0usize;
    let mut kicks = Batch::new();
    let mut confirming = Batch::new();
    instance.watches.with(|list| {
        list.retain(|w| current(w) && worth_keeping(w));
        let mut reported_now = Batch::new();
        for (i, watch) in list.iter_mut().enumerate() {
            let entry = fdtable::lookup(watch.fd);
            if let Some(entry) = entry.filter(|e| e.conn.is_auto()) {
                match entry.conn.phase() {
                    Phase::Deferred if readiness::kicks(entry, watch.wanted(), caller_waits) => kicks.push(watch.fd, watch.event.u64),
                    Phase::Confirming => confirming.push(watch.fd, watch.event.u64),
                    _ => {}
                }
            }
            if let Some(entry) = entry {
                follow_other_process(epfd, watch, entry);
            }
            if !watch.held {
                continue;
            }
            let mask = match synthesized(watch) {
                Held::Report(mask) => mask,
                Held::Release => {
                    give_back(epfd, watch);
                    continue;
                }
                Held::Drop => {
                    watch.generation = watch.generation.wrapping_add(1); // removed below
                    continue;
                }
            };
            if mask == 0 || (watch.once() && watch.reported) || ready == limit {
                continue;
            }
            watch.reported = true;
            // SAFETY: ready < limit <= max.
            unsafe { *events.add(ready) = epoll_event { events: mask, u64: watch.event.u64 } };
            ready += 1;
            reported_now.push(i as c_int, 0);
        }
        // Round robin: those reported by this call go to the back of the line.
        if ready == limit {
            for (moved, &(i, _)) in reported_now.iter().enumerate() {
                let watch = list.remove(i as usize - moved);
                list.push(watch);
            }
        }
        list.retain(current);
    });
    let room = max - ready as c_int;
    // SAFETY: the rest of the caller's array.
    let rest = unsafe { events.add(ready) };
    let result = if room == 0 {
        Ok(0)
    } else {
        readiness::wait_phase(
            &mut (),
            ready > 0,
            kicks.len > 0,
            |_, now| check(real_wait(rest, room, now)),
            |_| kicks.iter().for_each(|&(fd, _)| readiness::kick(fd)),
        )
    };
    // Outcomes of SYNs with data: a reset retried now must not be reported.
    let mut got = result.unwrap_or(0).max(0) as usize;
    let mut retried = false;
    for &(fd, data) in confirming.iter() {
        let Some(entry) = fdtable::lookup(fd) else { continue };
        if readiness::retried(fd, entry) {
            retried = true;
            // SAFETY: `got` events were written by the real wait.
            let delivered = unsafe { std::slice::from_raw_parts_mut(rest, got) };
            let mut kept = 0;
            for i in 0..got {
                if delivered[i].u64 != data {
                    delivered[kept] = delivered[i];
                    kept += 1;
                }
            }
            got = kept;
        }
    }
    let total = match result {
        // Only the held registrations are known ready: report just them.
        ref r if readiness::gives_way(r, ready > 0) => Ok(ready as c_int),
        Err(e) => Err(e),
        Ok(_) => Ok((ready + got) as c_int),
    };
    (total, retried)
}

/// fork() handlers: the child must not inherit a list lock held by a
/// thread that does not exist there.
pub fn before_fork() {
    for fd in 0..=fdtable::highest() {
        if let Some(entry) = fdtable::lookup(fd) {
            entry.watches.hold_for_fork();
        }
    }
}

pub fn after_fork_in_parent() {
    for fd in 0..=fdtable::highest() {
        if let Some(entry) = fdtable::lookup(fd) {
            entry.watches.release_after_fork();
        }
    }
}

pub fn after_fork_in_child() {
    crate::lock::forget_tid_after_fork();
    for fd in 0..=fdtable::highest() {
        if let Some(entry) = fdtable::lookup(fd) {
            entry.watches.reset_after_fork();
        }
    }
}

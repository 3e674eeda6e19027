//! Which fds libtfo tracks, and the state they point to.
//!
//! `SLOTS[fd]` holds the index of an [`Entry`] in the pool, or 0 for "not
//! ours". A lookup on an untracked fd is one bounds check and one relaxed
//! load: no lock, no allocation, no syscall. dup'ed fds point to the same
//! pool entry, counted in `Entry::refs`, because the deferred state belongs
//! to the open socket, not to a number.
//!
//! `NUMBERS[fd]` says what libtfo knows of an fd number it does not (yet)
//! track: a generation, bumped whenever the number is handed out anew (so
//! an epoll watch recorded for an earlier file is recognised as stale), and
//! whether the number holds a TCP socket created through `socket()` that
//! has not connected yet (a candidate for auto mode, checked without a
//! system call at `connect()`).
//!
//! Pool entries live in chunks that are never returned to the allocator, and
//! freed entries are recycled through a lock-free stack. A thread that races
//! a `close()` of the same fd therefore reads a valid (if recycled) entry,
//! never freed memory. Releasing an entry is async-signal-safe; only
//! creating one (at `setsockopt`) may allocate.

use crate::freestack::FreeStack;
use crate::state::Connection;
use crate::watch::WatchList;
use libc::c_int;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// A pool entry: the bookkeeping of the pool, and what the fd is to libtfo.
#[derive(Default)]
pub struct Entry {
    refs: AtomicU32,
    next_free: AtomicU32,
    /// The deferred-connect state, when the fd is a tracked socket.
    pub conn: Connection,
    /// The watched registrations, when the fd is an epoll instance.
    pub watches: WatchList,
}

impl Entry {
    /// Named by more than one fd number (a dup).
    pub fn shared(&self) -> bool {
        self.refs.load(Ordering::Acquire) > 1
    }

    /// Back to a fresh entry with one reference.
    fn reset(&self) {
        self.conn.reset();
        self.watches.reset();
        self.refs.store(1, Ordering::Release);
    }
}

/// Fds at or above this number are never tracked (they pass through; the
/// kernel backend still works for them). Linux's default fs.nr_open.
pub const MAX_FDS: usize = 1 << 20;

static SLOTS: [AtomicU32; MAX_FDS] = [const { AtomicU32::new(0) }; MAX_FDS];
static NUMBERS: [AtomicU32; MAX_FDS] = [const { AtomicU32::new(0) }; MAX_FDS];
/// NUMBERS bits: a TCP socket not yet connected; registered with epoll
/// while a candidate; a socket whose program set TCP_FASTOPEN_CONNECT (to
/// any value: it may defer later); the rest is the generation.
const CANDIDATE: u32 = 1;
const WATCHED: u32 = 2;
const OPTION_SET: u32 = 4;
/// ...and one that listened while libtfo did not track it.
const LISTENED: u32 = 8;
/// ...and an epoll instance made by `epoll_create` (its dups must share
/// its recorded registrations).
const EPOLL: u32 = 16;
const FLAGS: u32 = CANDIDATE | WATCHED | OPTION_SET | LISTENED | EPOLL;

const CHUNK_LEN: usize = 1024;
const MAX_CHUNKS: usize = MAX_FDS / CHUNK_LEN;

static CHUNKS: [AtomicPtr<Entry>; MAX_CHUNKS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_CHUNKS];
/// One above the highest fd ever tracked: scans (before exec) stop there.
/// In .data, beside what loading writes anyway: the destructor reads it in
/// every process, and in .bss that read would fault a page in at exit.
#[link_section = ".data.tfo_fd_limit"]
static FD_LIMIT: AtomicU32 = AtomicU32::new(0);
/// How many fd numbers point to an entry now: while none does, calls that
/// take arrays of fds (poll, select) need not look at them.
static IN_USE: AtomicU32 = AtomicU32::new(0);

/// Whether any fd is tracked now.
#[inline(always)]
pub fn any_tracked() -> bool {
    IN_USE.load(Ordering::Relaxed) != 0
}

/// A slot went from `old` to `new` (0 = none): keeps IN_USE counting.
#[inline(always)]
fn count_slot(old: u32, new: u32) {
    match (old == 0, new == 0) {
        (true, false) => {
            IN_USE.fetch_add(1, Ordering::Relaxed);
        }
        (false, true) => {
            IN_USE.fetch_sub(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// The highest fd that may be tracked (-1 when none ever was).
pub fn highest() -> c_int {
    FD_LIMIT.load(Ordering::Relaxed) as c_int - 1
}

fn note_fd(fd: c_int) {
    FD_LIMIT.fetch_max(fd as u32 + 1, Ordering::Relaxed);
}

/// Next never-used index; 0 is reserved to mean "none".
static NEXT_FRESH: AtomicU32 = AtomicU32::new(1);
/// Entries released, for reuse.
static FREE: FreeStack = FreeStack::new();

/// `fd` was just handed out by the kernel (socket, accept, dup): a new
/// generation, and a candidate for auto mode when it is a new TCP socket.
#[inline]
pub fn renumber(fd: c_int, tcp_candidate: bool) {
    if let Some(number) = NUMBERS.get(fd as usize) {
        let generation = (number.load(Ordering::Relaxed) | FLAGS).wrapping_add(1);
        number.store(generation | tcp_candidate as u32, Ordering::Relaxed);
    }
}

/// The generation of `fd`'s number (see `renumber`).
#[inline]
pub fn generation(fd: c_int) -> u32 {
    NUMBERS.get(fd as usize).map_or(0, |n| n.load(Ordering::Relaxed) & !FLAGS)
}

/// A socket that may defer was registered with an epoll instance before it
/// had an entry.
#[inline]
pub fn note_watched(fd: c_int) {
    if let Some(number) = NUMBERS.get(fd as usize) {
        number.fetch_or(WATCHED, Ordering::Relaxed);
    }
}

/// The early registrations were adopted by the socket's entry.
#[inline]
pub fn clear_watched(fd: c_int) {
    if let Some(number) = NUMBERS.get(fd as usize) {
        number.fetch_and(!WATCHED, Ordering::Relaxed);
    }
}

/// See `note_watched`.
#[inline]
pub fn was_watched(fd: c_int) -> bool {
    NUMBERS.get(fd as usize).is_some_and(|n| n.load(Ordering::Relaxed) & WATCHED != 0)
}

/// True when `fd` is a TCP socket made by `socket()` that has not connected.
#[inline]
pub fn is_candidate(fd: c_int) -> bool {
    NUMBERS.get(fd as usize).is_some_and(|n| n.load(Ordering::Relaxed) & CANDIDATE != 0)
}

/// The program set TCP_FASTOPEN_CONNECT on `fd` (no longer a candidate
/// for auto mode, but it may defer once the option is 1).
#[inline]
pub fn note_option_set(fd: c_int) {
    if let Some(number) = NUMBERS.get(fd as usize) {
        let old = number.load(Ordering::Relaxed);
        number.store((old & !CANDIDATE) | OPTION_SET, Ordering::Relaxed);
    }
}

/// `fd` listened before libtfo tracked it (Linux 6.18 then refuses its
/// every connect(): the kernel's to answer, whatever libtfo learns later).
#[inline]
pub fn note_listened(fd: c_int) {
    if let Some(number) = NUMBERS.get(fd as usize) {
        number.fetch_or(LISTENED, Ordering::Relaxed);
    }
}

/// See `note_listened`.
#[inline]
pub fn listened(fd: c_int) -> bool {
    NUMBERS.get(fd as usize).is_some_and(|n| n.load(Ordering::Relaxed) & LISTENED != 0)
}

/// A TCP socket that may defer its connect some day: a candidate for auto
/// mode, or one whose program set the option.
#[inline]
pub fn may_defer(fd: c_int) -> bool {
    NUMBERS.get(fd as usize).is_some_and(|n| n.load(Ordering::Relaxed) & (CANDIDATE | OPTION_SET) != 0)
}

/// `fd` is an epoll instance the program just made.
#[inline]
pub fn note_epoll(fd: c_int) {
    if let Some(number) = NUMBERS.get(fd as usize) {
        number.fetch_or(EPOLL, Ordering::Relaxed);
    }
}

/// An epoll instance made by `epoll_create` that has no entry yet.
#[inline]
pub fn is_epoll(fd: c_int) -> bool {
    NUMBERS.get(fd as usize).is_some_and(|n| n.load(Ordering::Relaxed) & EPOLL != 0)
}

/// A dup of `fd` must be followed: a socket that may defer, or an epoll
/// instance (one load, as `may_defer`).
#[inline]
pub fn followed_by_dups(fd: c_int) -> bool {
    NUMBERS.get(fd as usize).is_some_and(|n| n.load(Ordering::Relaxed) & (CANDIDATE | OPTION_SET | EPOLL) != 0)
}

/// `fd` connected (or tried to): no longer a candidate.
#[inline]
pub fn clear_candidate(fd: c_int) {
    if let Some(number) = NUMBERS.get(fd as usize) {
        number.fetch_and(!CANDIDATE, Ordering::Relaxed);
    }
}

/// The tracked entry behind `fd`, if any.
#[inline(always)]
pub fn lookup(fd: c_int) -> Option<&'static Entry> {
    let index = SLOTS.get(fd as usize)?.load(Ordering::Acquire);
    if index == 0 {
        None
    } else {
        Some(entry(index))
    }
}

/// A reference to an fd's entry, taken by a thread that acts on the socket
/// while the program may be closing it (the timer): the entry is not
/// recycled while this is held, and `still_names` tells whether the number
/// still names it.
pub struct Pinned(u32);

impl Pinned {
    pub fn entry(&self) -> &'static Entry {
        entry(self.0)
    }

    /// `fd` still refers to the pinned entry (it was not closed or reused).
    pub fn still_names(&self, fd: c_int) -> bool {
        SLOTS.get(fd as usize).is_some_and(|s| s.load(Ordering::Acquire) == self.0)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        release(self.0);
    }
}

/// Pins the entry `fd` names, if any (see `Pinned`).
pub fn pin(fd: c_int) -> Option<Pinned> {
    let slot = SLOTS.get(fd as usize)?;
    let index = slot.load(Ordering::Acquire);
    if index == 0 {
        return None;
    }
    // As share() does: a reference only while the entry is alive.
    entry(index).refs.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n > 0).then_some(n + 1)).ok()?;
    let pinned = Pinned(index);
    pinned.still_names(fd).then_some(pinned)
}

/// Starts tracking `fd` with a fresh entry (one reference). `None` when the
/// fd is out of range or the pool is exhausted: the caller then lets the
/// kernel handle the socket.
pub fn track(fd: c_int) -> Option<&'static Entry> {
    let slot = SLOTS.get(fd as usize)?;
    let index = allocate()?;
    let fresh = entry(index);
    fresh.reset();
    note_fd(fd);
    let old = slot.swap(index, Ordering::AcqRel);
    count_slot(old, index);
    release(old);
    Some(fresh)
}

/// The entry of `fd`, tracking it first if it is not yet: an epoll
/// instance with watched registrations, whose close must be seen.
pub fn mark(fd: c_int) -> Option<&'static Entry> {
    lookup(fd).or_else(|| track(fd))
}

/// `to` now refers to the same socket as `from` (dup, dup2, F_DUPFD). Any
/// state `to` had is dropped, as the kernel closed that file.
pub fn share(from: c_int, to: c_int) {
    let Some(slot) = SLOTS.get(to as usize) else { return };
    let source = SLOTS.get(from as usize);
    let mut index = source.map_or(0, |s| s.load(Ordering::Acquire));
    if index != 0 {
        // Take a reference only while the entry is alive: a close racing
        // this dup may just have released it to the free stack.
        let refs = &entry(index).refs;
        let taken = refs.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n > 0).then_some(n + 1)).is_ok();
        if taken && source.is_some_and(|s| s.load(Ordering::Acquire) == index) {
            note_fd(to);
        } else {
            if taken {
                release(index);
            }
            index = 0;
        }
    }
    let old = slot.swap(index, Ordering::AcqRel);
    count_slot(old, index);
    release(old);
}

/// Forgets `fd` (close, or a new fd handed out under a stale number).
#[inline(always)]
pub fn forget(fd: c_int) {
    if let Some(slot) = SLOTS.get(fd as usize) {
        // Load first so untracked fds cost no write to a shared cache line.
        if slot.load(Ordering::Relaxed) != 0 {
            let old = slot.swap(0, Ordering::AcqRel);
            count_slot(old, 0);
            release(old);
        }
    }
    // The number no longer names that socket: none of its bits hold (a file
    // opened on it later, which libtfo does not see, is nothing to record).
    if let Some(number) = NUMBERS.get(fd as usize) {
        if number.load(Ordering::Relaxed) & FLAGS != 0 {
            number.fetch_and(!FLAGS, Ordering::Relaxed);
        }
    }
}

fn entry(index: u32) -> &'static Entry {
    let index = index as usize;
    // Every index handed out is below MAX_FDS, so the mask changes nothing;
    // it replaces a bounds check whose panic path would give every export
    // a stack frame (the fast path is frameless without it).
    let chunk = CHUNKS[(index / CHUNK_LEN) % MAX_CHUNKS].load(Ordering::Acquire);
    // SAFETY: an index is only ever handed out after its chunk was published
    // (allocate), chunks are never freed, and CHUNK_LEN entries follow `chunk`.
    unsafe { &*chunk.add(index % CHUNK_LEN) }
}

fn allocate() -> Option<u32> {
    if let Some(index) = pop_free() {
        return Some(index);
    }
    let index = NEXT_FRESH.fetch_add(1, Ordering::Relaxed);
    let chunk = CHUNKS.get(index as usize / CHUNK_LEN)?;
    if chunk.load(Ordering::Acquire).is_null() {
        if index as usize / CHUNK_LEN == 0 {
            extern "C" {
                fn tfo_lazy_resolve_all();
            }
            // The first socket tracked: every libc function libtfo calls is
            // looked up now (lazy_imports.c), not in a hook's later path.
            // SAFETY: a C function without arguments or preconditions.
            unsafe { tfo_lazy_resolve_all() };
        }
        let fresh: Box<[Entry]> = (0..CHUNK_LEN).map(|_| Entry::default()).collect();
        let fresh = Box::into_raw(fresh) as *mut Entry;
        if chunk
            .compare_exchange(std::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another thread published this chunk first.
            // SAFETY: `fresh` came from Box::into_raw above and was never shared.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(fresh, CHUNK_LEN)) });
        }
    }
    Some(index)
}

/// At exit: every entry lets go of the state it shares with other
/// processes.
pub fn unshare_all() {
    for fd in 0..=highest() {
        if let Some(entry) = lookup(fd) {
            entry.conn.unshare();
        }
    }
}

/// Drops one reference; the last one returns the entry to the free stack.
fn release(index: u32) {
    if index == 0 {
        return;
    }
    let freed = entry(index);
    if freed.refs.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    freed.conn.unshare();
    FREE.push(index, &freed.next_free);
}

fn pop_free() -> Option<u32> {
    FREE.pop(|index| &entry(index).next_free)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untracked_fds_and_out_of_range_fds_are_not_found() {
        assert!(lookup(900_001).is_none());
        assert!(lookup(-1).is_none());
        assert!(lookup(MAX_FDS as c_int).is_none());
        assert!(track(-5).is_none());
    }

    #[test]
    fn dup_shares_state_until_the_last_close() {
        let a = track(900_010).unwrap();
        share(900_010, 900_011);
        assert!(std::ptr::eq(a, lookup(900_011).unwrap()));
        forget(900_010);
        assert!(lookup(900_010).is_none());
        assert!(std::ptr::eq(a, lookup(900_011).unwrap()));
        assert_eq!(a.refs.load(Ordering::Relaxed), 1);
        forget(900_011);
        assert!(lookup(900_011).is_none());
    }

    #[test]
    fn freed_entries_are_recycled_fresh() {
        let first = track(900_020).unwrap();
        first.conn.set_option(1);
        forget(900_020);
        // The free stack hands the same entry back, reset.
        let again = track(900_021).unwrap();
        assert!(std::ptr::eq(first, again));
        assert_eq!(again.refs.load(Ordering::Relaxed), 1);
        assert_eq!(again.conn.option(), 0);
        forget(900_021);
    }

    #[test]
    fn tracking_a_reused_number_drops_the_old_state() {
        let first = track(900_030).unwrap();
        share(900_030, 900_031); // a dup keeps the old socket alive
        let second = track(900_030).unwrap();
        assert!(!std::ptr::eq(first, second));
        assert_eq!(first.refs.load(Ordering::Relaxed), 1);
        assert!(std::ptr::eq(lookup(900_031).unwrap(), first));
        forget(900_030);
        forget(900_031);
    }

    #[test]
    fn numbers_get_new_generations_and_lose_candidacy_at_connect() {
        let before = generation(900_040);
        renumber(900_040, true);
        assert!(is_candidate(900_040));
        assert_ne!(generation(900_040), before);
        let g = generation(900_040);
        clear_candidate(900_040);
        assert!(!is_candidate(900_040));
        assert_eq!(generation(900_040), g, "connecting keeps the generation");
        renumber(900_040, false);
        assert!(!is_candidate(900_040) && generation(900_040) != g);
        assert_eq!(generation(-1), 0);
        assert!(!is_candidate(MAX_FDS as c_int));
    }

    #[test]
    fn a_pinned_entry_outlives_its_close_and_is_not_recycled() {
        let first = track(900_050).unwrap();
        let pinned = pin(900_050).unwrap();
        assert!(pinned.still_names(900_050));
        forget(900_050);
        assert!(!pinned.still_names(900_050));
        let second = track(900_050).unwrap();
        assert!(!std::ptr::eq(first, second), "a pinned entry is not handed out again");
        assert!(std::ptr::eq(pinned.entry(), first));
        drop(pinned);
        assert_eq!(first.refs.load(Ordering::Relaxed), 0, "released by the pin's drop");
        forget(900_050);
        assert!(pin(900_050).is_none());
    }

    #[test]
    fn many_threads_track_and_forget() {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let fd = 800_000 + t * 100 + (i % 100);
                        let e = track(fd).unwrap();
                        share(fd, fd + 50_000);
                        assert!(std::ptr::eq(e, lookup(fd + 50_000).unwrap()));
                        forget(fd);
                        forget(fd + 50_000);
                        assert!(lookup(fd).is_none() && lookup(fd + 50_000).is_none());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}

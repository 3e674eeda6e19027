//! Which fds libtfo tracks, and the state they point to.
//!
//! `SLOTS[fd]` holds the index of a [`Socket`] in the pool, or 0 for "not
//! ours". A lookup on an untracked fd is one bounds check and one relaxed
//! load: no lock, no allocation, no syscall. dup'ed fds point to the same
//! pool entry, counted in `Socket::refs`, because the deferred state belongs
//! to the open socket, not to a number.
//!
//! Pool entries live in chunks that are never returned to the allocator, and
//! freed entries are recycled through a lock-free stack. A thread that races
//! a `close()` of the same fd therefore reads a valid (if recycled) entry,
//! never freed memory. Releasing an entry is async-signal-safe; only
//! creating one (at `setsockopt`) may allocate.

use crate::deferred::Socket;
use libc::c_int;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Fds at or above this number are never tracked (they pass through; the
/// kernel backend still works for them). Linux's default fs.nr_open.
pub const MAX_FDS: usize = 1 << 20;

static SLOTS: [AtomicU32; MAX_FDS] = [const { AtomicU32::new(0) }; MAX_FDS];

const CHUNK_LEN: usize = 1024;
const MAX_CHUNKS: usize = MAX_FDS / CHUNK_LEN;

static CHUNKS: [AtomicPtr<Socket>; MAX_CHUNKS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_CHUNKS];
/// One above the highest fd ever tracked: scans (before exec) stop there.
static FD_LIMIT: AtomicU32 = AtomicU32::new(0);

/// The highest fd that may be tracked (-1 when none ever was).
pub fn highest() -> c_int {
    FD_LIMIT.load(Ordering::Relaxed) as c_int - 1
}

fn note_fd(fd: c_int) {
    FD_LIMIT.fetch_max(fd as u32 + 1, Ordering::Relaxed);
}

/// Next never-used index; 0 is reserved to mean "none".
static NEXT_FRESH: AtomicU32 = AtomicU32::new(1);
/// Top of the free stack: (ABA tag << 32) | index.
static FREE_TOP: AtomicU64 = AtomicU64::new(0);

/// The tracked socket behind `fd`, if any.
#[inline(always)]
pub fn lookup(fd: c_int) -> Option<&'static Socket> {
    let index = SLOTS.get(fd as usize)?.load(Ordering::Acquire);
    if index == 0 {
        None
    } else {
        Some(entry(index))
    }
}

/// Starts tracking `fd` with a fresh entry (one reference). `None` when the
/// fd is out of range or the pool is exhausted: the caller then lets the
/// kernel handle the socket.
pub fn track(fd: c_int) -> Option<&'static Socket> {
    let slot = SLOTS.get(fd as usize)?;
    let index = allocate()?;
    let socket = entry(index);
    socket.reset();
    note_fd(fd);
    let old = slot.swap(index, Ordering::AcqRel);
    release(old);
    Some(socket)
}

/// Tracks `fd` if it is not yet, with an entry that never needs attention:
/// an epoll instance holding a tracked socket, whose close must be seen.
pub fn mark(fd: c_int) {
    if lookup(fd).is_none() {
        track(fd);
    }
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
    release(slot.swap(index, Ordering::AcqRel));
}

/// Forgets `fd` (close, or a new fd handed out under a stale number).
#[inline(always)]
pub fn forget(fd: c_int) {
    if let Some(slot) = SLOTS.get(fd as usize) {
        // Load first so untracked fds cost no write to a shared cache line.
        if slot.load(Ordering::Relaxed) != 0 {
            release(slot.swap(0, Ordering::AcqRel));
        }
    }
}

fn entry(index: u32) -> &'static Socket {
    let index = index as usize;
    let chunk = CHUNKS[index / CHUNK_LEN].load(Ordering::Acquire);
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
        let fresh: Box<[Socket]> = (0..CHUNK_LEN).map(|_| Socket::default()).collect();
        let fresh = Box::into_raw(fresh) as *mut Socket;
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

/// Drops one reference; the last one returns the entry to the free stack.
fn release(index: u32) {
    if index == 0 {
        return;
    }
    let socket = entry(index);
    if socket.refs.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    let mut top = FREE_TOP.load(Ordering::Acquire);
    loop {
        socket.next_free.store(top as u32, Ordering::Relaxed);
        let new = ((top >> 32).wrapping_add(1) << 32) | index as u64;
        match FREE_TOP.compare_exchange_weak(top, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(current) => top = current,
        }
    }
}

fn pop_free() -> Option<u32> {
    let mut top = FREE_TOP.load(Ordering::Acquire);
    loop {
        let index = top as u32;
        if index == 0 {
            return None;
        }
        let next = entry(index).next_free.load(Ordering::Relaxed);
        let new = ((top >> 32).wrapping_add(1) << 32) | next as u64;
        match FREE_TOP.compare_exchange_weak(top, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(index),
            Err(current) => top = current,
        }
    }
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
        first.set_option(1);
        forget(900_020);
        // The free stack hands the same entry back, reset.
        let again = track(900_021).unwrap();
        assert_eq!(again.refs.load(Ordering::Relaxed), 1);
        assert_eq!(again.option(), 0);
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
    fn many_threads_track_and_forget() {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let fd = 800_000 + t * 100 + (i % 100);
                        track(fd).unwrap();
                        share(fd, fd + 50_000);
                        forget(fd);
                        forget(fd + 50_000);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}

//! Memory shared with fork children, for the state of sockets they share.
//!
//! After fork() both processes hold the same kernel socket, and the kernel's
//! deferred socket is one object: a connect(), a disconnect or an error one
//! process consumes is what the other sees next. So when a process forks,
//! each socket libtfo tracks moves its state (`state::SocketState`) into a
//! slot of this arena, a MAP_SHARED anonymous mapping that the child
//! inherits at the same address; both processes then read and write the
//! slot. A slot counts the processes that hold it and returns to the free
//! stack when the last one lets it go (its last fd closed, or its exit).
//!
//! Everything here is atomics in the shared mapping: no lock, no
//! allocation, safe in an atfork handler and a signal handler. The arena is
//! mapped at the first fork that has a socket to share, before the fork.
//! When it is full, sockets stay per process (the state before this module:
//! a fork child's connect or consumed error is then not seen by the parent).

use crate::state::SocketState;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// How many sockets may be shared at once. A process that leaves with
/// _exit() (as fork children often do) never lets its slots go: they are
/// lost, and 4096 such sockets fill the arena.
const SLOTS: usize = 4096;

/// One shared socket's state, and how many processes hold it.
pub struct Slot {
    pub state: SocketState,
    processes: AtomicU32,
    next_free: AtomicU32,
}

struct Arena {
    /// Index + 1 of the top free slot (0: none), with an ABA tag above.
    free_top: AtomicU64,
    /// Slots never handed out start here.
    unused: AtomicU32,
    slots: [Slot; SLOTS],
}

static ARENA: AtomicPtr<Arena> = AtomicPtr::new(std::ptr::null_mut());

/// The arena, mapped on first use.
fn arena() -> Option<&'static Arena> {
    let current = ARENA.load(Ordering::Acquire);
    if !current.is_null() {
        // SAFETY: a mapping published below, never unmapped.
        return Some(unsafe { &*current });
    }
    let size = std::mem::size_of::<Arena>();
    // SAFETY: a fresh anonymous mapping; zeroed memory is a valid Arena
    // (atomics at 0; a zeroed SocketState is never read before a copy).
    let mapped = unsafe {
        libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
    };
    if mapped == libc::MAP_FAILED {
        return None;
    }
    let mapped = mapped.cast::<Arena>();
    match ARENA.compare_exchange(std::ptr::null_mut(), mapped, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: just published; never unmapped.
        Ok(_) => Some(unsafe { &*mapped }),
        Err(other) => {
            // Another thread mapped it first.
            // SAFETY: our own mapping, never published.
            unsafe { libc::munmap(mapped.cast(), size) };
            // SAFETY: published by the other thread, never unmapped.
            Some(unsafe { &*other })
        }
    }
}

/// A free slot held by `processes` processes, or `None` when the arena is
/// full or cannot be mapped.
pub fn allocate(processes: u32) -> Option<&'static Slot> {
    let arena = arena()?;
    let index = pop_free(arena).or_else(|| {
        let index = arena.unused.fetch_add(1, Ordering::Relaxed);
        (index < SLOTS as u32).then_some(index)
    })?;
    let slot = &arena.slots[index as usize];
    slot.processes.store(processes, Ordering::Release);
    Some(slot)
}

impl Slot {
    /// One more process holds the slot (a fork is about to copy it).
    pub fn add_process(&self) {
        self.processes.fetch_add(1, Ordering::AcqRel);
    }

    /// This process lets the slot go; the last one frees it.
    pub fn release(&'static self) {
        if self.processes.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let Some(arena) = arena() else { return };
        // SAFETY: `self` is one of the arena's slots.
        let index = unsafe { (self as *const Slot).offset_from(arena.slots.as_ptr()) } as u32;
        let mut top = arena.free_top.load(Ordering::Acquire);
        loop {
            self.next_free.store(top as u32, Ordering::Relaxed);
            let new = ((top >> 32).wrapping_add(1) << 32) | (index + 1) as u64;
            match arena.free_top.compare_exchange_weak(top, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(current) => top = current,
            }
        }
    }
}

fn pop_free(arena: &Arena) -> Option<u32> {
    let mut top = arena.free_top.load(Ordering::Acquire);
    loop {
        let index = (top as u32).checked_sub(1)?;
        let next = arena.slots[index as usize].next_free.load(Ordering::Relaxed);
        let new = ((top >> 32).wrapping_add(1) << 32) | next as u64;
        match arena.free_top.compare_exchange_weak(top, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(index),
            Err(current) => top = current,
        }
    }
}
